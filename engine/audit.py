"""The audit log: every change as an event, each stream a hash chain an auditor can re-compute."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pmoflow.engine import clock
from pmoflow.engine.models import Event, ProcessInstance


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return repr(value)


def to_json_data(payload: Any) -> Any:
    """Task data can hold dates and Decimals; the log keeps their plain text."""
    return json.loads(json.dumps(payload, default=_plain))


def event_hash(event: Event) -> str:
    """What the chain covers: every field of the event and the previous event's hash."""
    content = {
        "stream": event.stream, "seq": event.seq, "instance_id": event.instance_id,
        "process_id": event.process_id, "process_version": event.process_version,
        "at": clock.as_db(event.at).isoformat(timespec="microseconds"), "actor": event.actor, "type": event.type,
        "task_bpmn_id": event.task_bpmn_id, "task_name": event.task_name, "payload": event.payload,
        "prev_hash": event.prev_hash,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _append(session: Session, event: Event) -> Event:
    event.at = clock.as_db(event.at)
    event.hash = event_hash(event)
    session.add(event)
    return event


class InstanceLog:
    """Appends events to one instance's chain; the instance row carries the chain's head."""

    def __init__(self, session: Session, instance: ProcessInstance, actor: str) -> None:
        self.session, self.instance, self.actor = session, instance, actor

    def add(self, type_: str, task: Any = None, actor: str | None = None, **payload: Any) -> Event:
        inst = self.instance
        event = Event(
            stream=f"instance/{inst.id}", seq=inst.last_seq + 1, instance_id=inst.id, process_id=inst.process_id,
            process_version=inst.version, at=clock.db_now(), actor=actor or self.actor, type=type_,
            task_bpmn_id=getattr(task, "bpmn_id", None), task_name=getattr(task, "name", None),
            payload=to_json_data(payload), prev_hash=inst.last_hash,
        )
        _append(self.session, event)
        inst.last_seq, inst.last_hash = event.seq, event.hash
        return event


def add_definition_event(session: Session, process_id: str, version: int, actor: str, type_: str,
                         **payload: Any) -> Event:
    """Deployments of one process form their own chain."""
    stream = f"definition/{process_id}"
    last = session.execute(
        select(Event.seq, Event.hash).where(Event.stream == stream).order_by(Event.seq.desc()).limit(1)
    ).first()
    event = Event(stream=stream, seq=(last.seq + 1) if last else 1, instance_id=None, process_id=process_id,
                  process_version=version, at=clock.db_now(), actor=actor, type=type_,
                  payload=to_json_data(payload), prev_hash=last.hash if last else "")
    return _append(session, event)


def history(session: Session, instance_id: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.instance_id == instance_id).order_by(Event.seq)))


def verify_stream(events: list[Event], head: tuple[int, str] | None = None) -> str | None:
    """The first problem in one chain, or None when every link holds. `head` is the (seq, hash) the chain's
    owner recorded last, which catches events removed from the end."""
    prev = ""
    for expected_seq, event in enumerate(events, 1):
        if event.seq != expected_seq:
            return f"event {expected_seq} is missing or out of order (found seq {event.seq})"
        if event_hash(event) != event.hash:
            return f"event {event.seq} was altered after it was written"
        if event.prev_hash != prev:
            return f"event {event.seq} does not follow the event before it (inserted, removed or reordered)"
        prev = event.hash
    if head is not None and head != ((events[-1].seq, events[-1].hash) if events else (0, "")):
        return f"the chain ends at event {len(events)} but the instance recorded {head[0]} events"
    return None


def verify(session: Session, instance_id: int | None = None) -> list[dict[str, Any]]:
    """Re-compute every chain (or one instance's); one finding per broken chain."""
    query = select(Event).order_by(Event.stream, Event.seq)
    if instance_id is not None:
        query = query.where(Event.instance_id == instance_id)
    streams: dict[str, list[Event]] = {}
    for event in session.scalars(query):
        streams.setdefault(event.stream, []).append(event)
    instances = select(ProcessInstance.id, ProcessInstance.last_seq, ProcessInstance.last_hash)
    if instance_id is not None:
        instances = instances.where(ProcessInstance.id == instance_id)
    heads = {f"instance/{i}": (seq, digest) for i, seq, digest in session.execute(instances)}
    for stream in heads:
        streams.setdefault(stream, [])
    findings = []
    for stream, events in sorted(streams.items()):
        problem = verify_stream(events, heads.get(stream))
        if problem:
            findings.append({"stream": stream, "problem": problem})
    return findings


def count(session: Session, instance_id: int | None = None) -> int:
    query = select(func.count(Event.id))
    if instance_id is not None:
        query = query.where(Event.instance_id == instance_id)
    return session.scalar(query) or 0
