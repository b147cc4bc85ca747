"""Errors as RFC 9457 problem details (`application/problem+json`), or as a page for a browser.

Each `PmoflowError` subclass maps to one status: 400 usage or invalid input, 401 not signed in, 403 a role or a
duty (a segregation-of-duties refusal names its rule), 404, 409 conflict, 412 a stale `If-Match`, 422 form data
that does not fit its form (every field's error under `errors`), 429 throttled sign-ins, 503 no database. The
body always carries `type`, `title`, `status`, `detail` (the CLI's message) and `exit_code` (the CLI's).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from pmoflow.engine.errors import (
    Conflict,
    DatabaseUnavailable,
    InstanceError,
    InvalidForm,
    InvalidInput,
    InvalidProcess,
    NotFound,
    PermissionDenied,
    PmoflowError,
    PreconditionFailed,
)
from pmoflow.engine.services.identity import SignInRefused, Throttled
from pmoflow.engine.web.security import HEADERS, NO_STORE

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:pmoflow:problem:"

# (error class, status, type slug, title), most specific first
MAPPING: list[tuple[type[PmoflowError], int, str, str]] = [
    (Throttled, 429, "throttled", "Too many failed sign-ins"),
    (SignInRefused, 401, "not-signed-in", "Not signed in"),
    (PermissionDenied, 403, "permission-denied", "Not permitted"),
    (NotFound, 404, "not-found", "Not found"),
    (PreconditionFailed, 412, "stale", "Changed since you read it"),
    (Conflict, 409, "conflict", "Conflict"),
    (InvalidForm, 422, "invalid-form", "The data does not fit the form"),
    (InvalidProcess, 422, "invalid-process", "The process does not validate"),
    (InvalidInput, 400, "invalid-input", "Invalid input"),
    (InstanceError, 409, "instance-error", "The instance went into error"),
    (DatabaseUnavailable, 503, "database-unavailable", "The database is unavailable"),
    (PmoflowError, 400, "error", "Error"),
]


def classify(exc: PmoflowError) -> tuple[int, str, str]:
    """The status, type slug and title of an engine error."""
    for cls, status, slug, title in MAPPING:
        if isinstance(exc, cls):
            return status, slug, title
    raise AssertionError("PmoflowError is in the mapping")


def field_errors(details: list[str]) -> list[dict[str, str]]:
    """`field: message` lines (as forms.validate writes them) as [{field, message}]."""
    found = []
    for line in details:
        field, sep, message = line.partition(": ")
        found.append({"field": field, "message": message} if sep else {"field": "", "message": line})
    return found


def body(exc: PmoflowError) -> dict[str, Any]:
    status, slug, title = classify(exc)
    problem: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": exc.message,
                               "exit_code": exc.exit_code}
    if exc.details:
        problem["details"] = exc.details
    if isinstance(exc, InvalidForm):
        problem["errors"] = field_errors(exc.details)
    rule = getattr(exc, "rule", None)  # a segregation-of-duties refusal (services.tasks.DutyRefused)
    if rule is not None:
        problem["rule"] = rule
    if isinstance(exc, Throttled):
        problem["retry_after"] = exc.retry_after
    return problem


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not the API, not a client asking for JSON)."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def problem_response(request: Request, problem: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    if wants_html(request):
        from pmoflow.engine.web.templates import page  # pages need the templates; the API does not

        return page(request, "problem.html", {"problem": problem}, status_code=problem["status"], headers=headers)
    return JSONResponse(problem, status_code=problem["status"], media_type=MEDIA_TYPE, headers=headers)


async def pmoflow_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PmoflowError)
    if isinstance(exc, SignInRefused) and not isinstance(exc, Throttled):
        from pmoflow.engine.web.auth import refused_response  # a browser gets the sign-in form

        return refused_response(request, exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
    return problem_response(request, body(exc), headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    problem = {"type": "about:blank", "title": _phrase(exc.status_code), "status": exc.status_code,
               "detail": exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)}
    return problem_response(request, problem, dict(exc.headers or {}))


async def validation_error(request: Request, exc: Exception) -> Response:
    """A request whose parameters do not parse (a word for a number, a missing field): 400, each one named."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")),
               "message": e.get("msg", "")} for e in exc.errors()]
    problem = {"type": TYPE_BASE + "invalid-input", "title": "Invalid input", "status": 400, "exit_code": 2,
               "detail": "; ".join(f"{e['field']}: {e['message']}" for e in errors), "errors": errors}
    return problem_response(request, problem)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug: 500 with no detail of it (the server's log has the traceback), in the same shape as any problem."""
    problem = {"type": TYPE_BASE + "unexpected", "title": "Unexpected failure", "status": 500,
               "detail": "an unexpected failure; it was logged for the administrator"}
    # Starlette answers a 500 outside every middleware: the security headers are added here.
    headers = {name.decode(): value.decode() for name, value in [*HEADERS, NO_STORE]}
    return problem_response(request, problem, headers)


def _phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(app: FastAPI) -> None:
    app.add_exception_handler(PmoflowError, pmoflow_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected_error)
