"""Operator ids of earlier releases, kept so that the process versions they deployed still run. Deprecated.

A deployed version keeps the BPMN it was deployed with, and so the operator ids and parameters its service
tasks named; its running instances call them until they end. Before the handler kit, each process had its own
notification operator with its own parameters; the processes now call ``notifications.notify``. Each function
here answers to one old id with its old parameters and builds the same record through the kit. Do not name
these ids in new BPMN; delete one when no deployed version that names it has a running instance left.
"""

from __future__ import annotations

from typing import Any

from pmoflow.engine.handlers import handler, notify


@handler("initiation.notify")
def initiation_notify(recipients_role: str | list[str], subject: str, task: str,
                      users: list[str] | None = None) -> dict[str, Any]:
    """Deprecated: ``notifications.notify``. Project initiation's notice to roles (and named users)."""
    return notify(subject, users=users, roles=recipients_role, task=task)


@handler("audit.notify")
def audit_notify(subject: str, task: str, users: list[str] | None = None,
                 recipients_role: str | list[str] | None = None) -> dict[str, Any]:
    """Deprecated: ``notifications.notify``. The internal audit's notice to named users (and roles)."""
    return notify(subject, users=users, roles=recipients_role, task=task)


@handler("closure.notify")
def closure_notify(level: str, project_id: str, subject: str, task: str, users: list[str] | None = None,
                   roles: list[str] | None = None) -> dict[str, Any]:
    """Deprecated: ``notifications.notify``. Project closure's reminder or escalation."""
    return notify(subject, users=users, roles=roles, task=task, level=level, about={"projectId": project_id})


@handler("pip.notify")
def pip_notify(level: str, pip_id: str, subject: str, task: str = "", users: list[str] | None = None,
               roles: list[str] | None = None) -> dict[str, Any]:
    """Deprecated: ``notifications.notify``. Process improvement's notice about a proposal."""
    return notify(subject, users=users, roles=roles, task=task, level=level, about={"pipId": pip_id})


@handler("capa.escalate")
def capa_escalate(level: str, capa_id: str, subject: str, users: list[str] | None = None,
                  roles: list[str] | None = None) -> dict[str, Any]:
    """Deprecated: ``notifications.notify``. A corrective action's reminder or escalation; the
    ``management-review`` level also flags it for the next management review."""
    return notify(subject, users=users, roles=roles, level=level,
                  about={"capaId": capa_id, "flaggedForManagementReview": level == "management-review"})
