"""The notification outbox: every reminder, escalation and notice a handler queues, one row per recipient.

A service task's handler returns a record built by `pmoflow.engine.handlers.notify` (a dict carrying a
`notificationId`, or a list of such dicts). The engine writes it here in the run's own transaction: named users
(`recipientsUsers`) and every user holding one of the roles (`recipientsRole`) at that moment, each once, with the
role that brought them in. The record's `task` (a BPMN id) says which task it is about; the open human task of
that id is linked when there is exactly one. A `notification_queued` event puts it in the audit record, with
the named users nobody knows and the roles nobody holds (those reach no one).

Delivery, for the `inbox` channel: a notification is delivered when its recipient lists their own notifications
(`pmoflow --user U notifications`); it then gets `delivered_at`. Listing someone else's or everyone's (an
auditor, `--for U` or `--all`) delivers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pmoflow.engine import clock
from pmoflow.engine.audit import InstanceLog
from pmoflow.engine.models import HumanTask, Notification, ProcessInstance, User, UserRole

RECORD_KEY = "notificationId"
MAX_ID = 40  # the notification_id column; the engine's own ids are NTF- and 12 hex digits


def records_in(result: Any) -> list[dict[str, Any]]:
    """The notification records among a service task's result: itself when it is one, or those in a list."""
    items = [result] if isinstance(result, dict) else result if isinstance(result, list) else []
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        key = item.get(RECORD_KEY) if isinstance(item, dict) else None
        if isinstance(key, str) and key.strip() and len(key.strip()) <= MAX_ID:
            found.setdefault(key.strip(), item)
    return list(found.values())


def _names(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else []
    return list(dict.fromkeys(v.strip() for v in values if isinstance(v, str) and v.strip()))


def _text(value: Any, size: int) -> str | None:
    return (value.strip()[:size] or None) if isinstance(value, str) else None


def recipients(session: Session, users: list[str], roles: list[str]) -> tuple[dict[str, str | None], list[str],
                                                                              list[str]]:
    """Who receives: {user: the role that brought them in, None when named}, the named users the organisation
    does not know, and the roles nobody holds now. A user named and holding a role is there once, as named."""
    with session.no_autoflush:
        known = set(session.scalars(select(User.name).where(User.name.in_(users)))) if users else set()
        holders = session.execute(select(UserRole.role, UserRole.user_name).where(UserRole.role.in_(roles))
                                  .order_by(UserRole.user_name)).all() if roles else []
    chosen: dict[str, str | None] = {u: None for u in users if u in known}
    held = set()
    for role in roles:
        for holder_role, user in holders:
            if holder_role == role:
                held.add(role)
                chosen.setdefault(user, role)
    return chosen, [u for u in users if u not in known], [r for r in roles if r not in held]


def _about(session: Session, instance: ProcessInstance, record: dict[str, Any],
           specs: Mapping[str, Any] | None) -> tuple[str | None, str | None, int | None]:
    """The task the record is about: (BPMN id, name, the open human task's row id when exactly one is open)."""
    bpmn_id = _text(record.get("task"), 200)
    if bpmn_id is None:
        return None, None, None
    with session.no_autoflush:
        rows = session.execute(select(HumanTask.id, HumanTask.name).where(
            HumanTask.instance_id == instance.id, HumanTask.bpmn_id == bpmn_id, HumanTask.state == "ready")
            .limit(2)).all()
    if len(rows) == 1:
        return bpmn_id, rows[0].name, rows[0].id
    spec = (specs or {}).get(bpmn_id)
    return bpmn_id, getattr(spec, "bpmn_name", None) or (bpmn_id if spec is not None else None), None


def record(session: Session, instance: ProcessInstance, source: Any, result: Any, log: InstanceLog | None = None,
           specs: Mapping[str, Any] | None = None) -> list[Notification]:
    """Write the outbox rows of the notification records in a service task's `result` (see the module's
    docstring) and, with a `log`, one `notification_queued` event each. `source` is the service task (its
    `bpmn_id` and `name`); `specs` the task specs of its process, by BPMN id, to name the task a record is about.
    A record already in the outbox (the same id) is not written again."""
    rows: list[Notification] = []
    seen = session.info.setdefault("pmoflow_notifications", set())
    for item in records_in(result):
        notification_id = item[RECORD_KEY].strip()
        if notification_id in seen or _stored(session, notification_id):
            continue
        seen.add(notification_id)
        chosen, unknown, unreached = recipients(session, _names(item.get("recipientsUsers")),
                                                _names(item.get("recipientsRole")))
        bpmn_id, name, human_task_id = _about(session, instance, item, specs)
        kind = _text(item.get("kind"), 40) or _text(item.get("level"), 40) or "notice"
        subject = str(item.get("subject") or "")
        channel = _text(item.get("channel"), 20) or "inbox"
        now = clock.db_now()
        for user, role in chosen.items():
            row = Notification(notification_id=notification_id, instance_id=instance.id,
                               process_id=instance.process_id, task_bpmn_id=bpmn_id, task_name=name,
                               human_task_id=human_task_id, kind=kind, subject=subject, channel=channel,
                               recipient_user=user, via_role=role, created_at=now)
            session.add(row)
            rows.append(row)
        if log is not None:
            log.add("notification_queued", task=source, notification_id=notification_id, kind=kind,
                    subject=subject, channel=channel, about_task=bpmn_id, human_task_id=human_task_id,
                    recipients=[{"user": u, "via_role": r} for u, r in chosen.items()],
                    unknown_users=unknown, unreached_roles=unreached)
    return rows


def _stored(session: Session, notification_id: str) -> bool:
    with session.no_autoflush:
        return session.scalar(select(Notification.id).where(Notification.notification_id == notification_id)
                              .limit(1)) is not None


# -- listing ---------------------------------------------------------------------------------------------------

def is_recipient(session: Session, name: str) -> bool:
    """A user of the organisation, or someone the outbox holds notifications for (who may have left since)."""
    return session.get(User, name) is not None or session.scalar(
        select(Notification.id).where(Notification.recipient_user == name).limit(1)) is not None


def listing(session: Session, recipient: str | None = None, instance_id: int | None = None,
            undelivered_only: bool = False) -> list[Notification]:
    """Outbox rows, oldest first: of one recipient and/or instance, or all of them."""
    query = select(Notification).order_by(Notification.id)
    if recipient is not None:
        query = query.where(Notification.recipient_user == recipient)
    if instance_id is not None:
        query = query.where(Notification.instance_id == instance_id)
    if undelivered_only:
        query = query.where(Notification.delivered_at.is_(None))
    return list(session.scalars(query))


def undelivered_count(session: Session, recipient: str) -> int:
    """The recipient's notifications not delivered yet (the index on recipient and delivered_at answers it)."""
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.recipient_user == recipient, Notification.delivered_at.is_(None))) or 0


def deliver(session: Session, rows: list[Notification], recipient: str, now: datetime) -> set[int]:
    """Mark the recipient's undelivered rows among `rows` delivered at `now`; the ids this call delivered (a row
    another listing delivered a moment earlier keeps its time)."""
    ids = [r.id for r in rows if r.recipient_user == recipient and r.delivered_at is None]
    if not ids:
        return set()
    delivered = session.scalars(update(Notification).where(
        Notification.id.in_(ids), Notification.delivered_at.is_(None)).values(delivered_at=now)
        .returning(Notification.id).execution_options(synchronize_session=False))
    return set(delivered)


def view(row: Notification, delivered_now: datetime | None = None) -> dict[str, Any]:
    """What the API returns and `--json` prints; `new` is true for what this very listing delivered."""
    delivered = delivered_now or row.delivered_at
    return {"id": row.id, "notification_id": row.notification_id, "instance_id": row.instance_id,
            "process_id": row.process_id, "kind": row.kind, "subject": row.subject, "channel": row.channel,
            "recipient": row.recipient_user, "via_role": row.via_role, "task": row.task_bpmn_id,
            "task_name": row.task_name, "human_task_id": row.human_task_id,
            "created_at": clock.as_utc(row.created_at).isoformat(),
            "delivered_at": clock.as_utc(delivered).isoformat() if delivered else None,
            "new": delivered_now is not None}
