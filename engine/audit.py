"""The audit log: every change as an event, each stream a hash chain an auditor can re-compute.

Streams: `instance/<id>` (one per instance; the instance row keeps the chain's head), `definition/<process>` (the
deployments of one process; each stored definition row must match its `deployed` event), `archive` (every
`pmoflow audit archive` that moved history out to a file), `organisation` (every change of users and roles) and
`identity` (web sign-ins and their refusals, passwords set, API tokens made or revoked: services/identity.py).
Each stream's head is also sealed with the audit key when one is configured (engine/anchor.py), and `check`
re-derives the tables the engine acts on from the events (engine/coverage.py).

Queries across instances answer from indexes, not from payloads read in Python: the event columns (process,
version, instance, actor, type, task, time) are indexed, and what auditors filter on inside a payload is copied,
as the event is written, into `event_facts` rows (key, value) with an index on (key, value). See `facts_of` for
which keys exist; `query` refuses a filter on any other key and lists the valid ones.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Row, Table, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from pmoflow.engine import anchor, clock
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import (
    Event,
    EventFact,
    HumanTask,
    ProcessDefinition,
    ProcessInstance,
    User,
    UserRole,
)

# What each event type records (its payload keys). Types not listed here can still be written (other modules may
# add their own); `query` accepts any type the record holds.
EVENT_TYPES: dict[str, str] = {
    "instance_started": "an instance started: data (the start form), version, business_key; by_message and "
                        "from_instance, or by_timer, due and occurrence, when a message or a timer started it",
    "task_ready": "a human task was offered: task_id, lane, candidates, excluded_by_duties, due; within (the "
                  "call activities it runs inside: called_at, process, item)",
    "task_claimed": "a task was taken: task_id",
    "task_unclaimed": "a task was given back: task_id",
    "task_delegated": "a task was handed over: task_id, from_user, to_user",
    "task_completed": "a task's form was submitted: task_id, data, duty_checks (rule, result)",
    "task_cancelled": "an open task was withdrawn (timer, terminate, error): task_id",
    "duty_refused": "segregation of duties refused someone: task_id, rule, message",
    "decision": "a DMN table decided: decision, hit_policy, inputs, outputs, matched_rules (id, row, description)",
    "gateway": "a gateway chose its way: taken (the names of the elements it led to)",
    "service_called": "a service task ran: operator, result_variable, result",
    "notification_queued": "a handler queued a notification: notification_id, kind, subject, channel, about_task, "
                           "human_task_id, recipients (user, via_role), unknown_users, unreached_roles",
    "timer_fired": "a timer fired: due",
    "message_sent": "a message was sent: message, payload, correlation (property values), to_instance",
    "message_received": "a message was received: message, payload, correlation, from_instance, from_task",
    "error": "the instance went into error: message, type, task_id, bpmn_id, task_name, line, line_text",
    "retry": "an administrator re-ran the failed task: previous_error, data, before, after",
    "skip": "an administrator marked the failed task done without running it: reason, before, after",
    "suspend": "an administrator suspended the instance: reason, before, after",
    "resume": "an administrator resumed the instance: reason, before, after",
    "terminate": "an administrator ended the instance: reason, before, after",
    "data_edit": "an administrator changed the instance's current data: reason, tasks, before, after",
    "migrated": "the instance moved to another version of its process",
    "instance_completed": "the instance reached its end: data (the final data)",
    "deployed": "a process version was deployed: content_hash, files, spec_hash (of the serialized spec that runs)",
    "archived": "completed instances' history was moved to a file: file, archive_id, digest, instances, events, "
                "heads, signed (with the audit key)",
    "organisation_loaded": "an organisation file changed users or roles: source, added, removed (name: roles, "
                           "full_name, email, department), changed (name: before, after)",
    "organisation_recorded": "the users and roles a database held when its organisation chain began: users",
    "signed_in": "someone signed in to the web workspace: user, client (their address)",
    "sign_in_failed": "a sign-in was refused: user (the name given), reason (unknown user, no password, wrong "
                      "password), client; never the password",
    "sign_in_throttled": "a sign-in was refused unchecked after too many failures: user, client, retry_after",
    "signed_out": "a web session was ended by its user: user",
    "password_set": "a user's web password was set (never the password itself): user",
    "token_created": "a personal API token was made (never the token itself): token_id, name, user",
    "token_revoked": "a personal API token was revoked: token_id, user",
}
ADMIN_TYPES = ("retry", "skip", "suspend", "resume", "terminate", "data_edit", "migrated")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return repr(value)


def to_json_data(payload: Any) -> Any:
    """Task data can hold dates and Decimals; the log keeps their plain text."""
    return json.loads(json.dumps(payload, default=_plain))


def event_hash(event: Any) -> str:
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


# -- the facts index ---------------------------------------------------------------------------------------------

FACT_DEPTH = 2  # payload paths of one or two names: `decision`, `data.gateDecision`, `matched_rules.id`
MAX_FACT_KEY, MAX_FACT_VALUE, MAX_FACTS = 120, 200, 300
DERIVED_FACTS = {
    "@role": "a role the actor held when the event was written (from the organisation file)",
    "@late": "'true' on a task_completed event that came after the task's due time",
    "@by_starter": "'true' on a task_completed event by the person who started the instance",
}


def fact_value(value: Any) -> str | None:
    """How a payload value is indexed and compared: strings as they are, everything else as JSON text
    (`true`, `false`, `null`, `12`, `2.5`). Strings over 200 characters, objects and lists are not indexed."""
    if isinstance(value, str):
        return value if len(value) <= MAX_FACT_VALUE else None
    if value is None or isinstance(value, bool):
        return _LITERALS[value]
    if isinstance(value, int):
        return str(int(value))  # what json.dumps writes, without its cost (verify re-derives every fact)
    if isinstance(value, float):
        return json.dumps(value)
    return None


_LITERALS = {None: "null", True: "true", False: "false"}


def payload_facts(payload: Any) -> list[tuple[str, str]]:
    """The (path, value) pairs of a payload that get indexed: every scalar at a path of one or two names
    (`decision`, `data.gateDecision`, `outputs.recommendation`); a list of scalars gives one pair per item
    (`taken`, `candidates`); a list of objects indexes its items' scalar members (`matched_rules.id`,
    `duty_checks.rule`). Deeper values stay in the payload, readable but not filterable."""
    found: list[tuple[str, str]] = []
    _walk(found, "", payload, 0)
    return found


def _add(found: list[tuple[str, str]], path: str, value: Any) -> None:
    text = value if isinstance(value, str) and len(value) <= MAX_FACT_VALUE else fact_value(value)
    if path and text is not None and len(path) <= MAX_FACT_KEY:
        found.append((path, text))


def _walk(found: list[tuple[str, str]], path: str, value: Any, depth: int) -> None:
    # One call per value, not per fact (`audit verify` re-derives the facts of every event).
    if isinstance(value, dict):
        if depth < FACT_DEPTH:
            for key, item in value.items():
                _walk(found, f"{path}.{key}" if path else str(key), item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                if depth < FACT_DEPTH:
                    for key, member in item.items():
                        _add(found, f"{path}.{key}", member)
            elif not isinstance(item, list):
                _add(found, path, item)
    else:
        _add(found, path, value)


def facts_of(event: Event | Row[Any], roles: Iterable[str] = (), limit: int | None = MAX_FACTS,
             **derived: bool) -> list[tuple[str, str]]:
    """Everything indexed for one event: its payload facts, the actor's roles and the derived flags that are
    true (`late`, `by_starter`). Written once, with the event, in the same transaction."""
    facts = payload_facts(event.payload) + [("@role", r) for r in roles]
    facts += [(f"@{name}", "true") for name, flag in derived.items() if flag]
    return list(dict.fromkeys(facts))[:limit]


def _roles(session: Session, actor: str) -> list[str]:
    cache = session.info.setdefault("pmoflow_roles", {})
    if actor not in cache:
        with session.no_autoflush:
            cache[actor] = list(session.scalars(select(UserRole.role).where(UserRole.user_name == actor)))
    return cache[actor]


def _index(session: Session, event: Event, **derived: bool) -> None:
    for key, value in facts_of(event, _roles(session, event.actor), **derived):
        session.add(EventFact(event=event, key=key, value=value))


def _late(type_: str, task: Any, at: datetime) -> bool:
    due = getattr(task, "due", None)
    return type_ == "task_completed" and isinstance(due, datetime) and clock.as_db(at) > clock.as_db(due)


class InstanceLog:
    """Appends events to one instance's chain; the instance row carries the chain's head."""

    def __init__(self, session: Session, instance: ProcessInstance, actor: str) -> None:
        self.session, self.instance, self.actor = session, instance, actor
        anchor.track(session, instance=instance)

    def add(self, type_: str, task: Any = None, actor: str | None = None, **payload: Any) -> Event:
        inst = self.instance
        if (as_of := clock.simulated()) is not None:  # worker --now: evaluated as of then, recorded at the real time
            payload["as_of"] = as_of.isoformat()
        event = Event(
            stream=f"instance/{inst.id}", seq=inst.last_seq + 1, instance_id=inst.id, process_id=inst.process_id,
            process_version=inst.version, at=clock.db_now(), actor=actor or self.actor, type=type_,
            task_bpmn_id=getattr(task, "bpmn_id", None), task_name=getattr(task, "name", None),
            payload=to_json_data(payload), prev_hash=inst.last_hash,
        )
        _append(self.session, event)
        inst.last_seq, inst.last_hash = event.seq, event.hash
        _index(self.session, event, late=_late(type_, task, event.at),
               by_starter=type_ == "task_completed" and event.actor == inst.started_by)
        return event


def add_definition_event(session: Session, process_id: str, version: int, actor: str, type_: str,
                         **payload: Any) -> Event:
    """Deployments of one process form their own chain. A `deployed` event also holds the hash of the stored,
    serialized spec (what actually runs), so a spec edited in the database shows against it."""
    if type_ == "deployed":
        spec = session.scalar(select(ProcessDefinition.spec).where(ProcessDefinition.process_id == process_id,
                                                                    ProcessDefinition.version == version))
        payload["spec_hash"] = anchor.spec_hash(spec or "")
    return _add_stream_event(session, f"definition/{process_id}", process_id, version, actor, type_, **payload)


def _add_stream_event(session: Session, stream: str, process_id: str, version: int, actor: str, type_: str,
                      **payload: Any) -> Event:
    last = session.execute(
        select(Event.seq, Event.hash).where(Event.stream == stream).order_by(Event.seq.desc()).limit(1)
    ).first()
    event = Event(stream=stream, seq=(last.seq + 1) if last else 1, instance_id=None, process_id=process_id,
                  process_version=version, at=clock.db_now(), actor=actor, type=type_,
                  payload=to_json_data(payload), prev_hash=last.hash if last else "")
    _append(session, event)
    _index(session, event)
    anchor.track(session, stream=stream)
    return event


ARCHIVE_STREAM = "archive"


def add_archive_event(session: Session, actor: str, **payload: Any) -> Event:
    """Moving history out of the database is itself recorded, in the `archive` chain."""
    return _add_stream_event(session, ARCHIVE_STREAM, "", 0, actor, "archived", **payload)


IDENTITY_STREAM = "identity"


def add_identity_event(session: Session, actor: str, type_: str, **payload: Any) -> Event:
    """Sign-ins, failed sign-ins, passwords set and API tokens made or revoked: the `identity` chain."""
    return _add_stream_event(session, IDENTITY_STREAM, "", 0, actor, type_, **payload)


ORGANISATION_STREAM = "organisation"


def people_of(session: Session) -> dict[str, dict[str, Any]]:
    """Today's users, as the organisation chain records them."""
    return {u.name: {"roles": u.role_names, "full_name": u.full_name, "email": u.email, "department": u.department}
            for u in session.scalars(select(User))}


@contextmanager
def organisation_change(session: Session, actor: str, source: str) -> Iterator[None]:
    """Record what the body changes in users and roles as an `organisation_loaded` event (before and after of
    each user) in the `organisation` chain; nothing when nothing changed. A database whose chain is empty but
    that holds users (made before the chain existed) first records them as they were."""
    before = people_of(session)
    if before and session.scalar(select(Event.id).where(Event.stream == ORGANISATION_STREAM).limit(1)) is None:
        _add_stream_event(session, ORGANISATION_STREAM, "", 0, actor, "organisation_recorded", users=before)
    yield
    session.flush()
    session.info.pop("pmoflow_roles", None)  # the roles facts of later events are the new roles
    after = people_of(session)
    change = {"added": {n: p for n, p in after.items() if n not in before},
              "removed": {n: p for n, p in before.items() if n not in after},
              "changed": {n: {"before": before[n], "after": p} for n, p in after.items()
                          if n in before and before[n] != p}}
    if any(change.values()):
        _add_stream_event(session, ORGANISATION_STREAM, "", 0, actor, "organisation_loaded", source=source, **change)


def organisation_after(people: dict[str, Any], type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The users after one event of the organisation chain (replaying the chain gives today's users)."""
    if type_ == "organisation_recorded":
        return dict(payload.get("users") or {})
    people = dict(people)
    for name in payload.get("removed") or {}:
        people.pop(name, None)
    people.update(payload.get("added") or {})
    people.update({name: change.get("after") for name, change in (payload.get("changed") or {}).items()})
    return people


def history(session: Session, instance_id: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.instance_id == instance_id).order_by(Event.seq)))


# -- verification ----------------------------------------------------------------------------------------------

def check_stream(events: Iterable[Any], head: tuple[int, str] | None = None) -> tuple[int, str] | None:
    """The first problem in one chain as (seq, message), or None when every link holds. `head` is the
    (seq, hash) the chain's owner recorded last, which catches events removed from the end."""
    prev, count, last = "", 0, None
    for expected_seq, event in enumerate(events, 1):
        if event.seq != expected_seq:
            return expected_seq, f"event {expected_seq} is missing or out of order (found seq {event.seq})"
        if event_hash(event) != event.hash:
            return event.seq, f"event {event.seq} was altered after it was written"
        if event.prev_hash != prev:
            return event.seq, f"event {event.seq} does not follow the event before it (inserted, removed or reordered)"
        prev, count, last = event.hash, expected_seq, event
    if head is not None and head != ((last.seq, last.hash) if last is not None else (0, "")):
        return min(count, head[0]) + 1, f"the chain ends at event {count} but the instance recorded {head[0]} events"
    return None


def verify_stream(events: list[Event], head: tuple[int, str] | None = None) -> str | None:
    """The first problem in one chain, or None when every link holds. `head` is the (seq, hash) the chain's
    owner recorded last, which catches events removed from the end."""
    problem = check_stream(events, head)
    return problem[1] if problem else None


def definition_content_hash(sources: dict[str, str]) -> str:
    """The content hash of a deployed version's files, computed as the parser computes it at deployment
    (`ParsedProcess.content_hash`): a stored file changed afterwards no longer matches."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()


def finding(stream: str, seq: int | None, problem: str) -> dict[str, Any]:
    kind, _, rest = stream.partition("/")
    return {"stream": stream, "kind": kind, "instance_id": int(rest) if kind == "instance" else None,
            "process_id": rest if kind == "definition" else None, "seq": seq, "problem": problem}


_EVENT_COLUMNS = (Event.id, Event.stream, Event.seq, Event.instance_id, Event.process_id, Event.process_version,
                  Event.at, Event.actor, Event.type, Event.task_bpmn_id, Event.task_name, Event.payload,
                  Event.prev_hash, Event.hash)


def check(session: Session, instance_id: int | None = None, process_id: str | None = None,
          checkpoint: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Re-compute the hash chains: every instance's (or one instance's, or one process's instances'), the
    deployment chains of the processes concerned, and the archive and organisation chains; then what
    `coverage.Coverage` re-derives from them (facts, tasks, users and roles, seals, a `checkpoint` from
    `anchor.read_checkpoint`). One finding per stream, with its stream, kind (instance, definition, archive,
    organisation, anchor, checkpoint), instance id or process id, the first bad seq, and the problem. Rows are
    streamed in chain order, one chain in memory at a time."""
    from pmoflow.engine.coverage import Coverage  # it builds on this module

    where = None
    instances = select(ProcessInstance.id, ProcessInstance.last_seq, ProcessInstance.last_hash,
                       ProcessInstance.process_id)
    definitions = select(ProcessDefinition.process_id, ProcessDefinition.version, ProcessDefinition.content_hash,
                         ProcessDefinition.sources, ProcessDefinition.spec)
    if instance_id is not None:
        process_id = session.scalar(select(ProcessInstance.process_id).where(ProcessInstance.id == instance_id))
        where = or_(Event.instance_id == instance_id, Event.stream == f"definition/{process_id}")
        instances = instances.where(ProcessInstance.id == instance_id)
        definitions = definitions.where(ProcessDefinition.process_id == process_id)
    elif process_id is not None:
        where = Event.process_id == process_id
        instances = instances.where(ProcessInstance.process_id == process_id)
        definitions = definitions.where(ProcessDefinition.process_id == process_id)
    heads = {f"instance/{i}": (seq, digest) for i, seq, digest, _ in session.execute(instances)}
    deployed: dict[str, dict[int, tuple[str, dict[str, str], str]]] = {}
    for pid, version, content_hash, sources, spec in session.execute(definitions):
        deployed.setdefault(f"definition/{pid}", {})[version] = (content_hash, sources, spec)
    cover = Coverage(session, where, instance_id, process_id, checkpoint)
    query = select(*_EVENT_COLUMNS).order_by(Event.stream, Event.seq)
    findings, seen = [], set()
    rows = session.connection().execute((query if where is None else query.where(where))
                                        .execution_options(yield_per=5000))
    for stream, chain in itertools.groupby(rows, key=lambda row: row.stream):
        events = list(chain)
        seen.add(stream)
        found = _check_chain(stream, events, heads, deployed.get(stream))
        findings += found
        cover.chain(stream, events, intact=not found)
    for stream in sorted((set(heads) | set(deployed)) - seen):
        findings += _check_chain(stream, [], heads, deployed.get(stream))
    broken = {f["stream"] for f in findings}
    for stream, seq, problem in cover.finish():
        if stream not in broken:
            broken.add(stream)
            findings.append(finding(stream, seq, problem))
    return sorted(findings, key=lambda f: (f["kind"], f["instance_id"] or 0, f["process_id"] or "", f["stream"]))


def _check_chain(stream: str, events: list[Any], heads: dict[str, tuple[int, str]],
                 versions: dict[int, tuple[str, dict[str, str], str]] | None) -> list[dict[str, Any]]:
    kind = stream.partition("/")[0]
    if kind == "instance" and stream not in heads:
        return [finding(stream, None, "events remain for an instance that is no longer in the database "
                                       "(its row was deleted outside pmoflow)")]
    problem = check_stream(events, heads.get(stream) if kind == "instance" else None)
    if problem:
        return [finding(stream, *problem)]
    if kind != "definition":
        return []
    found = []
    recorded = {e.process_version: (e.seq, (e.payload or {}).get("content_hash"), (e.payload or {}).get("spec_hash"))
                for e in events if e.type == "deployed"}
    for version, (content_hash, sources, spec) in sorted((versions or {}).items()):
        if definition_content_hash(sources) != content_hash:
            found.append(finding(stream, recorded.get(version, (None,))[0],
                                  f"the stored files of version {version} were changed after deployment"))
        elif version not in recorded:
            found.append(finding(stream, None, f"version {version} has no deployment event (removed?)"))
        elif recorded[version][1] != content_hash:
            found.append(finding(stream, recorded[version][0],
                                  f"version {version} does not match its deployment event (content hash differs)"))
        elif recorded[version][2] not in (None, anchor.spec_hash(spec)):
            found.append(finding(stream, recorded[version][0], f"the stored spec of version {version} (what runs) "
                                  "was changed after deployment: it no longer matches its deployment event"))
    return found[:1]


def verify(session: Session, instance_id: int | None = None) -> list[dict[str, Any]]:
    """Re-compute every chain (or one instance's and its process's deployments); one finding per broken chain,
    as {stream, problem}. `check` gives the same findings with their kind, instance or process, and seq."""
    return [{"stream": f["stream"], "problem": f["problem"]} for f in check(session, instance_id)]


def count(session: Session, instance_id: int | None = None) -> int:
    query = select(func.count(Event.id))
    if instance_id is not None:
        query = query.where(Event.instance_id == instance_id)
    return session.scalar(query) or 0


# -- times -------------------------------------------------------------------------------------------------------

_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


LAST_TIME = datetime(9999, 12, 31, 23, 59, 59)  # a typed time's latest: an inclusive end adds a microsecond


def _day_end(moment: datetime) -> datetime:
    """The start of the next day; the calendar's last day ends at its last moment instead."""
    return moment + timedelta(days=1) if moment.date() < date.max else datetime.max


def parse_moment(text: str | datetime | date, what: str, end: bool = False) -> datetime:
    """A user's time: an ISO date (`2027-03-31`, the start of that day in UTC, or with `end` the start of the
    next day) or an ISO date and time (without a zone: UTC). Returned as the naive UTC the database stores.
    Dates run from 0001-01-01 to 9999-12-31 and times up to 9999-12-31T23:59:59 UTC."""
    if isinstance(text, datetime):
        return clock.as_db(text)
    if isinstance(text, date):
        moment = datetime(text.year, text.month, text.day)
        return _day_end(moment) if end else moment
    raw = str(text).strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day)
            return _day_end(moment) if end else moment
        moment = clock.as_db(datetime.fromisoformat(raw))  # a zone's offset can leave the calendar: OverflowError
    except ValueError:
        raise InvalidInput(f"{what}: {text!r:.80} is not a date like 2027-03-31 or a time like "
                           "2027-03-31T17:00:00+00:00") from None
    except OverflowError:
        raise InvalidInput(f"{what}: {text} is outside the calendar (years 1 to 9999) in UTC") from None
    if moment > LAST_TIME:
        raise InvalidInput(f"{what}: {text} is later than the last time accepted, 9999-12-31T23:59:59 UTC")
    return moment


def parse_period(text: str) -> tuple[datetime, datetime]:
    """`2027` (a year), `2027-Q1` (a quarter), `2027-03` (a month) or `2027-03-31` (a day), as [start, end);
    years 1 to 9999 (the last period of 9999 ends at the calendar's last moment)."""
    raw = str(text).strip()
    if m := _QUARTER.match(raw):
        year, quarter = int(m.group(1)), int(m.group(2))
        first, last = (year, 3 * quarter - 2), (year, 3 * quarter)
    elif (m := _MONTH.match(raw)) and 1 <= int(m.group(2)) <= 12:
        first = last = (int(m.group(1)), int(m.group(2)))
    elif _YEAR.match(raw):
        first, last = (int(raw), 1), (int(raw), 12)
    elif len(raw) == 10:
        return parse_moment(raw, "--period"), parse_moment(raw, "--period", end=True)
    else:
        raise InvalidInput(f"--period: {text!r:.80} is not a period like 2027, 2027-Q1, 2027-03 or 2027-03-31")
    if not 1 <= first[0] <= 9999:
        raise InvalidInput(f"--period: {text}: years run from 1 to 9999")
    after = (last[0] + last[1] // 12, last[1] % 12 + 1)
    return datetime(*first, 1), datetime(*after, 1) if after[0] <= 9999 else datetime.max


# -- queries across instances --------------------------------------------------------------------------------------

@dataclass
class Filters:
    """What `pmoflow audit events` can filter on. Every filter is answered from an index; see `query`."""

    process: str | None = None
    version: int | None = None
    instance: int | None = None
    actor: str | None = None
    role: str | None = None
    types: tuple[str, ...] = ()
    task: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    where: tuple[str, ...] = ()  # "path=value" or "path!=value"
    late: bool = False
    by_starter: bool = False
    override: str | None = None  # "SUBMITTED=RECOMMENDED", two payload paths
    limit: int | None = None


_CONDITION = re.compile(r"^\s*(?:payload\.)?(?P<path>[^=!]+?)\s*(?P<op>!=|=)(?P<value>.*)$", re.S)


def _field_path(text: str) -> str:
    path = text.strip()
    return path[len("payload."):] if path.startswith("payload.") else path


def parse_condition(text: str) -> tuple[str, str, str]:
    """`data.gateDecision=Stop` (or `payload.data.gateDecision=Stop`, or `!=`) as (path, op, value)."""
    match = _CONDITION.match(text)
    if not match or not match.group("path").strip():
        raise InvalidInput(f"--where: '{text}' is not a condition like data.gateDecision=Stop or "
                           "outputs.recommendation!=Go")
    return match.group("path").strip(), match.group("op"), match.group("value")


def parse_override(text: str) -> tuple[str, str]:
    """`data.gateDecision=outputs.recommendation`: the submitted field, and the recommendation it is compared
    with (the latest earlier value of that path in the same instance)."""
    submitted, sep, recommended = text.partition("=")
    submitted, recommended = _field_path(submitted), _field_path(recommended)
    if not sep or not submitted or not recommended:
        raise InvalidInput(f"--override: '{text}' is not SUBMITTED=RECOMMENDED, like "
                           "data.gateDecision=outputs.recommendation")
    return submitted, recommended


def fact_keys(session: Session) -> list[str]:
    """Every payload path the record holds facts for (what `--where` accepts)."""
    return list(session.scalars(select(EventFact.key).where(~EventFact.key.startswith("@")).distinct()
                                .order_by(EventFact.key)))


def _known_key(session: Session, key: str) -> bool:
    return session.scalar(select(exists().where(EventFact.key == key))) or False


def _listing(values: Iterable[Any], limit: int = 40) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f" ... ({len(values) - limit} more)" if len(values) > limit else "") if values else "none"


def check_filters(session: Session, f: Filters) -> None:
    """Refuse, in plain words, a filter that names something the record does not know: an unknown process,
    instance, actor, role, event type, task or payload field would otherwise give a silently empty answer."""
    def known(condition) -> bool:
        return bool(session.scalar(select(exists().where(condition))))

    if f.process is not None and not (known(Event.process_id == f.process)
                                      or known(ProcessDefinition.process_id == f.process)):
        names = session.scalars(select(ProcessDefinition.process_id).distinct().order_by(ProcessDefinition.process_id))
        raise NotFound(f"no process '{f.process}' in the record (processes: {_listing(names)})")
    if f.version is not None:
        if f.process is None:
            raise InvalidInput("--version goes with --process: versions are numbered per process")
        if not (known(and_(ProcessDefinition.process_id == f.process, ProcessDefinition.version == f.version))
                or known(and_(Event.process_id == f.process, Event.process_version == f.version))):
            raise NotFound(f"no version {f.version} of {f.process} in the record")
    if f.instance is not None and not (known(ProcessInstance.id == f.instance)
                                       or known(Event.instance_id == f.instance)):
        raise NotFound(archived_message(session, f.instance) or
                       f"no instance {f.instance} (neither in the database nor in its record)")
    if f.actor is not None and not (known(Event.actor == f.actor) or known(User.name == f.actor)):
        raise NotFound(f"no user or actor '{f.actor}' in the record (see 'pmoflow users')")
    if f.role is not None and not (known(UserRole.role == f.role)
                                   or known(and_(EventFact.key == "@role", EventFact.value == f.role))):
        roles = session.scalars(select(UserRole.role).distinct().order_by(UserRole.role))
        raise NotFound(f"no role '{f.role}' (roles: {_listing(roles)})")
    for type_ in f.types:
        if type_ not in EVENT_TYPES and not known(Event.type == type_):
            raise InvalidInput(f"no event type '{type_}' (types: {_listing(sorted(EVENT_TYPES))})")
    if f.task is not None and not known(Event.task_bpmn_id == f.task):
        raise NotFound(f"no task '{f.task}' in the record (give the task's BPMN id, as 'pmoflow history' shows it)")
    if f.since is not None and f.until is not None and f.since >= f.until:
        raise InvalidInput(f"the period is empty: it starts {clock.as_utc(f.since).isoformat()} and ends "
                           f"{clock.as_utc(f.until).isoformat()} (--since must come before --until, or now)")
    if f.limit is not None and f.limit < 1:
        raise InvalidInput("--limit must be 1 or more")
    paths = [parse_condition(c)[0] for c in f.where] + (list(parse_override(f.override)) if f.override else [])
    for path in paths:
        if path.startswith("@") or not _known_key(session, path):
            raise InvalidInput(f"'{path}' is not a field the record can be filtered on; fields: "
                               f"{_listing(fact_keys(session), 60)} (and --role, --late, --by-starter)")


def archived_message(session: Session, instance_id: int) -> str | None:
    """Where an instance's history went, when an archive took it out of the database."""
    event = session.scalar(select(Event).where(Event.stream == ARCHIVE_STREAM, Event.type == "archived",
                                               _has_fact("instances", str(instance_id))).limit(1))
    if event is None:
        return None
    return (f"instance {instance_id} was archived to {event.payload.get('file')} on "
            f"{clock.as_utc(event.at).isoformat()} (archive event {event.seq}); its history is in that file: check "
            f"it with 'pmoflow audit verify --file FILE'")


def _has_fact(key: str, value: str, negate: bool = False):
    facts = select(EventFact.event_id).where(EventFact.key == key,
                                             EventFact.value != value if negate else EventFact.value == value)
    return Event.id.in_(facts)


def _join_fact(query, key: str, value: str):
    """Events having the fact (key, value), as a join: the planner can drive it from the facts index (a rare
    value over the whole record) or from an events index probing the facts' primary key (a period, a process),
    whichever it estimates cheaper. (event_id, key, value) is the primary key, so the join adds no duplicates."""
    fact = aliased(EventFact)
    return query.join(fact, and_(fact.event_id == Event.id, fact.key == key, fact.value == value))


def build_query(f: Filters):
    """The SELECT for a set of filters. Columns are compared directly (each has an index); payload fields and
    derived facts are joined from `event_facts` by (key, value) (a `!=` condition is a subquery on the same
    index); an override compares the submitted value with the latest earlier recommendation of the same
    instance, found through (instance_id, seq). No payload is read to decide what matches."""
    query = select(Event)
    if f.process is not None:
        query = query.where(Event.process_id == f.process)
    if f.version is not None:
        query = query.where(Event.process_version == f.version)
    if f.instance is not None:
        query = query.where(Event.instance_id == f.instance)
    if f.actor is not None:
        query = query.where(Event.actor == f.actor)
    if f.types:
        query = query.where(Event.type.in_(f.types))
    if f.task is not None:
        query = query.where(Event.task_bpmn_id == f.task)
    if f.since is not None:
        query = query.where(Event.at >= f.since)
    if f.until is not None:
        query = query.where(Event.at < f.until)
    if f.role is not None:
        query = _join_fact(query, "@role", f.role)
    if f.late:
        query = _join_fact(query, "@late", "true")
    if f.by_starter:
        query = _join_fact(query, "@by_starter", "true")
    for condition in f.where:
        path, op, value = parse_condition(condition)
        query = query.where(_has_fact(path, value, negate=True)) if op == "!=" else _join_fact(query, path, value)
    if f.override:
        submitted_path, recommended_path = parse_override(f.override)
        submitted, earlier, recommended = aliased(EventFact), aliased(Event), aliased(EventFact)
        latest = (select(recommended.value).join(earlier, earlier.id == recommended.event_id)
                  .where(recommended.key == recommended_path, earlier.instance_id == Event.instance_id,
                         earlier.seq < Event.seq)
                  .order_by(earlier.seq.desc()).limit(1).correlate(Event).scalar_subquery())
        query = query.join(submitted, and_(submitted.event_id == Event.id, submitted.key == submitted_path)) \
            .where(Event.instance_id.is_not(None), submitted.value != latest)
        if not f.types:
            query = query.where(Event.type == "task_completed")
    query = query.order_by(Event.at, Event.id)
    if f.limit:
        query = query.limit(f.limit)
    return query


def query(session: Session, f: Filters) -> list[Event]:
    check_filters(session, f)
    return list(session.scalars(build_query(f)))


def export_view(e: Event) -> dict[str, Any]:
    """One event as `audit events --format json` prints it: every field the hash covers, and the hash."""
    return {"instance_id": e.instance_id, "stream": e.stream, "seq": e.seq,
            "at": clock.as_utc(e.at).isoformat(), "actor": e.actor, "type": e.type, "process_id": e.process_id,
            "process_version": e.process_version, "task": e.task_bpmn_id, "task_name": e.task_name,
            "payload": e.payload, "prev_hash": e.prev_hash, "hash": e.hash}


CSV_COLUMNS = ["instance_id", "stream", "seq", "at", "actor", "type", "process_id", "process_version", "task",
               "task_name", "payload", "prev_hash", "hash"]


def csv_row(view: dict[str, Any]) -> list[Any]:
    return [json.dumps(view[c], sort_keys=True) if c == "payload" else view[c] for c in CSV_COLUMNS]


# -- rebuilding the index ----------------------------------------------------------------------------------------

def _table(model: type[EventFact]) -> Table:
    """The model's table: SQLAlchemy types a mapped class's `__table__` as any FromClause, without insert/delete."""
    return cast(Table, model.__table__)


def rebuild_facts(session: Session, batch: int = 2000) -> int:
    """(Re)write the facts of every event from its payload: for records written before the index existed (the
    0002 migration calls it). Roles are today's roles; `late` and `by_starter` are re-derived from the
    instance's own events (task_ready's due, instance_started's actor). Returns the number of events indexed."""
    session.execute(_table(EventFact).delete())
    starters = {instance_id: actor for instance_id, actor in session.execute(
        select(Event.instance_id, Event.actor).where(Event.type == "instance_started"))}
    due: dict[tuple[int, Any], datetime] = {}
    for instance_id, payload in session.execute(select(Event.instance_id, Event.payload)
                                                .where(Event.type == "task_ready")):
        if (payload or {}).get("due"):
            due[(instance_id, payload.get("task_id"))] = parse_moment(payload["due"], "due")
    done, last_id = 0, 0
    columns = (Event.id, Event.instance_id, Event.type, Event.actor, Event.payload, Event.at)
    while True:
        events = session.execute(select(*columns).where(Event.id > last_id).order_by(Event.id).limit(batch)).all()
        if not events:
            return done
        rows = []
        for event in events:
            task_due = due.get((event.instance_id, (event.payload or {}).get("task_id")))
            late = event.type == "task_completed" and task_due is not None and event.at > task_due
            by_starter = event.type == "task_completed" and starters.get(event.instance_id) == event.actor
            rows += [{"event_id": event.id, "key": key, "value": value} for key, value in
                     facts_of(event, _roles(session, event.actor), late=late, by_starter=by_starter)]
        if rows:
            session.execute(_table(EventFact).insert(), rows)
        done, last_id = done + len(events), events[-1].id


def iter_streams(session: Session, instance_ids: list[int]) -> Iterator[tuple[int, list[Event]]]:
    """Each instance's events in chain order, one instance at a time."""
    for instance_id in instance_ids:
        yield instance_id, history(session, instance_id)


def open_tasks_overdue(session: Session, now: datetime, process_id: str | None = None) -> list[HumanTask]:
    query = select(HumanTask).where(HumanTask.state == "ready", HumanTask.due.is_not(None), HumanTask.due < now)
    if process_id is not None:
        query = query.where(HumanTask.process_id == process_id)
    return list(session.scalars(query.order_by(HumanTask.due)))
