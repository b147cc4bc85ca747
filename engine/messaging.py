"""Messages between instances: what each instance waits for, and to whom a message goes.

A message carries a name, a payload and correlation values (property name -> value). SpiffWorkflow computes
a sent message's values with the sender's retrieval expressions and keeps a receiver's expected values in
its workflow's correlations; here both are flattened to property -> value, so a sender and a receiver drawn
in different files (with different correlation key names) still meet on the property they share.

Routing is strict: a receiver that expects values gets only messages carrying the same values; a receiver
that expects none takes any message of its name; more than one receiver, or none, is an error that says so.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from pmoflow.engine import forms
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import MessageWait, ProcessInstance

ACTIVE = ("running", "waiting")
KEY_LENGTH = 500  # the length of message_waits.correlation (engine/models.py)
DIGEST = "sha256:"
MAX_HOPS = 50  # messages answering messages within one command: more than this is a loop


class MessageRefused(InvalidInput):
    """A message that cannot be delivered: sent from outside, it is refused; sent by an instance, that
    instance goes into error at the task that sent it."""


class MessageUnmatched(MessageRefused):
    """A message that no waiting instance and no message start event takes (or more than one would)."""


@dataclass
class Message:
    """A message on its way: what was sent, its correlation values, and who sent it."""

    name: str
    payload: Any
    correlation: dict[str, Any]
    actor: str
    sender_instance: int | None = None
    sender_task: str | None = None  # the SpiffWorkflow task id of the send task or throw event
    sender_bpmn_id: str | None = None
    delivered_to: list[int] = field(default_factory=list)

    @classmethod
    def thrown(cls, event: BpmnEvent, task: Task, instance_id: int, actor: str) -> Message:
        return cls(event.event_definition.name, event.payload, flat(event.correlations), actor,
                   instance_id, str(task.id), getattr(task.task_spec, "bpmn_id", None))

    def describe(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in sorted(self.correlation.items()))
        return f"message '{self.name}'" + (f" ({values})" if values else "")

    def record(self) -> dict[str, Any]:
        return {"message": self.name, "payload": self.payload, "correlation": self.correlation}


@dataclass
class Wait:
    """One message a workflow waits for (in any of its subprocesses)."""

    message_name: str
    bpmn_id: str
    properties: tuple[str, ...]
    expected: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.message_name, self.bpmn_id, ",".join(self.properties), canonical(self.expected)


def flat(correlations: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """SpiffWorkflow's {correlation key: {property: value}} as {property: value}."""
    return {prop: value for props in (correlations or {}).values() for prop, value in (props or {}).items()}


def canonical(values: dict[str, Any]) -> str:
    """The values as the key a wait is stored and found by. Longer than the column, they become a digest of that
    JSON: PostgreSQL refuses a longer string (SQLite would keep it), and the sender's side (`receivers`) digests
    its values the same way, so matching stays exact."""
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    if len(text) <= KEY_LENGTH:
        return text
    return DIGEST + hashlib.sha256(text.encode()).hexdigest()


def shown(key: str) -> dict[str, Any]:
    """A stored key as `pmoflow messages` shows what a wait expects: the values, or the digest that stands for them."""
    return {"digest": key} if key.startswith(DIGEST) else json.loads(key)


def definitions(spec) -> list:
    """The event definitions a task spec catches or throws. SpiffWorkflow folds an event-based gateway's
    events, and a start or catch event with several event definitions, into one MultipleEventDefinition:
    the messages and timers it waits for are inside it, not on the task spec itself."""
    definition = getattr(spec, "event_definition", None)
    if isinstance(definition, MultipleEventDefinition):
        return list(definition.event_definitions)
    return [definition] if definition is not None else []


def message_definitions(spec) -> list[MessageEventDefinition]:
    return [d for d in definitions(spec) if isinstance(d, MessageEventDefinition)]


def awaited(task: Task) -> list[MessageEventDefinition]:
    """The messages a waiting task still waits for: a parallel-multiple event waits for each of its messages
    once, so those it has already caught are left out."""
    seen = {e.event_definition.name for e in task.internal_data.get("seen_events", [])
            if isinstance(e.event_definition, MessageEventDefinition)}
    return [d for d in message_definitions(task.task_spec) if d.name not in seen]


def waiting_message_tasks(workflow: BpmnWorkflow) -> list[Task]:
    return [t for t in workflow.get_tasks(state=TaskState.WAITING) if message_definitions(t.task_spec)]


def expected(task: Task, definition: MessageEventDefinition | None = None) -> tuple[tuple[str, ...], dict[str, Any]]:
    """A waiting task's correlation properties (for one of its messages), and the values of them its
    (sub)process already holds."""
    definition = definition or message_definitions(task.task_spec)[0]
    props = tuple(sorted({p.name for p in definition.correlation_properties}))
    known = flat(task.workflow.correlations)
    return props, {p: known[p] for p in props if p in known}


def waits_of(workflow: BpmnWorkflow) -> list[Wait]:
    """Every message the workflow (and its subprocesses) waits for, with the values each expects."""
    return [Wait(definition.name, task.task_spec.bpmn_id, *expected(task, definition))
            for task in waiting_message_tasks(workflow) for definition in awaited(task)]


def sync_waits(session, instance: ProcessInstance, waits: Iterable[Wait]) -> None:
    """Bring the instance's rows in `message_waits` in step with what its workflow waits for."""
    rows = {(r.message_name, r.bpmn_id, r.properties, r.correlation): r for r in session.scalars(
        select(MessageWait).where(MessageWait.instance_id == instance.id))}
    wanted = {w.key for w in waits}
    for key, row in rows.items():
        if key not in wanted:
            session.delete(row)
    for name, bpmn_id, props, correlation in wanted - set(rows):
        session.add(MessageWait(instance_id=instance.id, message_name=name, bpmn_id=bpmn_id, properties=props,
                                correlation=correlation))


def receivers(session, message: Message) -> tuple[list[int], list[int]]:
    """Instances that take the message, and instances that wait for it but cannot take it now (suspended or
    in error). Receivers expecting exactly the message's values come first; open receivers only without."""
    prop_sets = set(session.scalars(select(MessageWait.properties).where(MessageWait.message_name == message.name)))
    exact_keys = set()
    for props in prop_sets:
        names = [p for p in props.split(",") if p]
        if names and all(n in message.correlation for n in names):
            exact_keys.add(canonical({n: message.correlation[n] for n in names}))
    rows = session.execute(
        select(MessageWait.instance_id, MessageWait.correlation, ProcessInstance.status)
        .join(ProcessInstance, ProcessInstance.id == MessageWait.instance_id)
        .where(MessageWait.message_name == message.name,
               MessageWait.correlation.in_(exact_keys | {canonical({})}))).all()
    exact = sorted({i for i, c, s in rows if c != "{}" and s in ACTIVE})
    open_ = sorted({i for i, c, s in rows if c == "{}" and s in ACTIVE})
    idle = sorted({i for i, c, s in rows if s not in ACTIVE})
    return (exact or open_), idle


def expected_properties(session, name: str) -> set[str]:
    """The correlation properties that instances waiting for `name` expect values of."""
    rows = session.scalars(select(MessageWait.properties).where(MessageWait.message_name == name,
                                                                MessageWait.correlation != canonical({})))
    return {p for props in rows for p in props.split(",") if p}


def check_payload(spec, message: Message, sources: dict[str, str]) -> None:
    """A catch event with a form (`formJsonSchemaFilename`) takes only payloads that fit it, as a task's form
    takes only fitting submissions: a bad message is refused at the door, not found broken later."""
    props = (getattr(spec, "extensions", None) or {}).get("properties", {})
    name = props.get("formJsonSchemaFilename")
    if not name:
        return
    schema = forms.load_schema(sources[f"forms/{name}"], name)
    try:
        forms.validate(schema, message.payload if isinstance(message.payload, dict) else {}, name)
    except InvalidInput as exc:
        raise MessageRefused(f"{message.describe()}: the payload does not fit form {name} of "
                             f"{spec.bpmn_id}: {'; '.join(exc.details)}", exc.details) from None


def event_for(task: Task, message: Message, evaluate) -> BpmnEvent:
    """The event the receiving task catches: its own definition (so SpiffWorkflow matches it), the payload,
    and the values keyed the way the receiver's correlation properties read them.

    SpiffWorkflow re-reads each property from the payload when it catches, and a payload without the
    variable raises a bare NameError: check first, and fill a plain-name property from the message's
    values (given with `--correlate`) when the payload lacks it."""
    definition = next(d for d in awaited(task) if d.name == message.name)
    payload, correlations = correlated_payload(definition, message, evaluate)
    # aimed at the receiving task's (sub)process, so a sibling waiting for the same name does not take it too
    return BpmnEvent(definition, payload=payload, correlations=correlations, target=task.workflow)


def landed(task: Task, event: BpmnEvent) -> dict[str, Any]:
    """The task's data once the caught payload lands in it, the way SpiffWorkflow puts it there when the task runs:
    the spiff variant of a message definition (the one pmoflow's parser makes) keeps it under messageVariable,
    and drops it without one; the plain BPMN variant merges an object payload in."""
    definition = event.event_definition
    if hasattr(definition, "message_var"):
        variable = definition.message_var
        return {**task.data, variable: event.payload} if variable else dict(task.data)
    return {**task.data, **event.payload} if isinstance(event.payload, dict) else dict(task.data)


def correlated_payload(definition, message: Message, evaluate) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The payload (completed from `--correlate` values where the receiver reads a plain name) and the
    receiver's correlation values read from it, or MessageUnmatched naming a value the payload lacks."""
    payload = deepcopy(message.payload)
    correlations: dict[str, dict[str, Any]] = {}
    for prop in definition.correlation_properties:
        expression = (prop.retrieval_expression or "").strip()
        try:
            value = evaluate(expression, payload if isinstance(payload, dict) else {})
        except Exception:
            if prop.name in message.correlation and re.fullmatch(r"[A-Za-z_]\w*", expression) \
                    and isinstance(payload, dict):
                payload[expression] = value = message.correlation[prop.name]
            else:
                raise MessageUnmatched(
                    f"{message.describe()}: the payload has no value for correlation property '{prop.name}' "
                    f"(read with `{expression}`); add it to the data or pass --correlate {prop.name}=VALUE"
                ) from None
        for key in prop.correlation_keys:
            correlations.setdefault(key, {})[prop.name] = value
    return payload, correlations


def waiting_task(workflow: BpmnWorkflow, message: Message) -> Task:
    """The task that takes the message: one expecting exactly its values, else one expecting none (several
    subprocesses of one instance may wait for the same name, each with its own values)."""
    exact, open_ = [], []
    for task in waiting_message_tasks(workflow):
        for definition in awaited(task):
            if definition.name != message.name:
                continue
            _, values = expected(task, definition)
            if not values:
                open_.append(task)
            elif all(message.correlation.get(p) == v for p, v in values.items()):
                exact.append(task)
    if not exact and not open_:
        raise NotFound(f"{message.describe()}: the receiver no longer waits for it")
    return (exact or open_)[0]


def unmatched(message: Message, idle: list[int], starts: list[str], missing: Iterable[str] = ()) -> MessageUnmatched:
    missing = sorted(missing)
    if missing:
        return MessageUnmatched(f"{message.describe()} lacks the correlation value(s) {', '.join(missing)} that "
                                f"waiting instances are matched on: pass --correlate "
                                f"{' --correlate '.join(m + '=VALUE' for m in missing)}")
    if idle:
        where = ", ".join(map(str, idle))
        return MessageUnmatched(f"{message.describe()} cannot be delivered: instance {where} waits for it but is "
                                f"suspended or in error")
    if len(starts) > 1:
        return MessageUnmatched(f"{message.describe()} would start more than one process ({', '.join(starts)}); "
                                f"give each start event its own message name")
    hint = " with these correlation values" if message.correlation else ""
    return MessageUnmatched(f"{message.describe()} matches no instance waiting for it{hint} and starts no "
                            f"process (see 'pmoflow messages' for what instances wait for)")


def ambiguous(message: Message, targets: list[int]) -> MessageUnmatched:
    return MessageUnmatched(f"{message.describe()} matches more than one waiting instance "
                            f"({', '.join(map(str, targets))}); add correlation values (--correlate KEY=VALUE) "
                            f"so it reaches only one")
