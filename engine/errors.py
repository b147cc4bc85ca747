"""The errors users see. Each carries the CLI exit code it maps to, so the CLI stays a thin layer."""

from __future__ import annotations


class PmoflowError(Exception):
    """A failure to report to the user in plain words; nothing was changed."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(PmoflowError):
    """An id or name that does not exist."""


class InvalidInput(PmoflowError):
    """Malformed or unacceptable input: bad JSON, a form that fails its schema, a reserved key."""


class InvalidProcess(PmoflowError):
    """BPMN or DMN that does not parse or validate; `details` lists `file:line: element-id: message`."""


class InstanceError(PmoflowError):
    """An instance is (or went) into the error state; its task, line and message are stored."""


class Conflict(PmoflowError):
    """Someone else changed the same thing first: a taken task, a concurrent update."""

    exit_code = 3


class PermissionDenied(PmoflowError):
    """The acting user may not do this: wrong role, segregation of duties, unknown user."""

    exit_code = 4


class DatabaseUnavailable(PmoflowError):
    """The database cannot be reached or is not initialised."""


class InvalidForm(InvalidInput):
    """Submitted data that does not fit its form; `details` lists `field: what is wrong` for every field."""


class PreconditionFailed(Conflict):
    """The caller's copy is stale: an `If-Match` version that is no longer the current one."""
