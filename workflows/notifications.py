"""The one notification operator of every PMO process: ``notifications.notify``.

A reminder, escalation or notice in BPMN is a service task::

    <spiffworkflow:serviceTaskOperator id="notifications.notify" resultVariable="approvalReminder">
      parameters: subject, users, roles, task, level, about

The record it returns is built by :func:`pmoflow.engine.handlers.notify`, which the engine's outbox reads (one row
per named user and per holder of a role when it is queued). Handlers that notify as part of other work call
that function directly.
"""

from __future__ import annotations

from typing import Any

from pmoflow.engine import handlers as kit
from pmoflow.engine.handlers import handler


@handler
def notify(subject: str, users: list[str] | None = None, roles: list[str] | str | None = None, task: str = "",
           level: str = "notice", about: dict[str, Any] | None = None) -> dict[str, Any]:
    """Notify the named ``users`` and everyone holding one of ``roles`` (at least one recipient) about ``task``
    (a BPMN id, or empty); ``level`` is the kind (notice, reminder, escalation ...), ``about`` the keys of the
    process's own to keep on the record (e.g. ``{"capaId": ...}``)."""
    return kit.notify(subject, users=users, roles=roles, task=task, level=level, about=about)
