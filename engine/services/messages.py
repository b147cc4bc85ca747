"""Messages from outside (`pmoflow message`) and what running instances wait for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmoflow.engine import messaging, runtime
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import MessageWait, ProcessDefinition, ProcessInstance
from pmoflow.engine.services.advance import deliver
from pmoflow.engine.services.context import Context
from pmoflow.engine.services.submissions import require_object


def send(ctx: Context, name: str, data: Any = None, correlate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Send a message from outside: to the one instance waiting for it with these correlation values, or
    to the process it starts (which the sender must be allowed to start, as with `start`). A message nobody
    takes is refused, with nothing changed."""
    payload = require_object(data if data is not None else {})
    if not name or not name.strip():
        raise InvalidInput("a message needs a name")
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = ctx.actor(session)
        name = name.strip()
        if name not in _message_names(session):
            raise NotFound(f"no deployed process sends or waits for a message named '{name}'")
        correlation = dict(correlate or {})
        for prop in messaging.expected_properties(session, name) - set(correlation):
            if prop in payload:  # a value the receiver matches on may come in the data under its own name
                correlation[prop] = payload[prop]
        message = messaging.Message(name, payload, correlation, actor.name)
        deliver(ctx, session, message, 0)
        return {"message": message.name, "correlation": message.correlation,
                "delivered_to": message.delivered_to}


def waits(ctx: Context) -> list[dict[str, Any]]:
    """What running instances wait for, with the correlation values each expects."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        rows = session.execute(select(MessageWait, ProcessInstance.process_id, ProcessInstance.status)
                               .join(ProcessInstance, ProcessInstance.id == MessageWait.instance_id)
                               .order_by(MessageWait.message_name, MessageWait.instance_id)).all()
        return [{"message": w.message_name, "instance_id": w.instance_id, "process_id": process_id,
                 "status": status, "waiting_at": w.bpmn_id, "expects": messaging.shown(w.correlation)}
                for w, process_id, status in rows]


def _message_names(session: Session) -> set[str]:
    """Every message name a deployed process (any version) sends or waits for."""
    definitions = session.scalars(select(ProcessDefinition))
    return {name for d in definitions for name in runtime.message_names(session, d)}
