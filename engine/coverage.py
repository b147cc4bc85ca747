"""What `audit verify` checks beyond the hash links: that what decides behaviour still follows from the record.

The hash chains (engine/audit.py) vouch for the events. The tables the engine acts on are kept beside them and
could be edited without touching an event, so each is re-derived from the events (or the deployed spec) and
compared, in the same single pass over the chains:

* the facts index (`event_facts`): every event's facts again, as `audit.facts_of` wrote them; `@role` facts from
  the organisation chain's state when the event was written (events older than that chain are not checked for
  their roles);
* the task projection (`human_tasks`, `task_candidates`): each task's candidates, lane, due time, assignee,
  state and performer from its events (task_ready, claimed, unclaimed, delegated, completed, cancelled), and its
  form from the deployed spec;
* users and roles: the organisation chain replayed must give today's `users` and `user_roles`;
* a checkpoint an auditor kept: every stream in it must still extend it;
* with the audit key, the seals (`engine/anchor.py`): heads, instance states, specs, deleted streams.

Problems are (stream, seq, problem); `audit.check` keeps the first per stream, after the chain's own.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmoflow.engine import anchor, audit, clock
from pmoflow.engine.models import Event, EventFact, HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate

Problem = tuple[str, int | None, str]


@dataclass
class _Task:
    """A human task as its events describe it."""

    instance_id: int
    bpmn_id: str | None
    lane: str | None
    candidates: set[str]
    excluded: set[str]
    due: str | None
    assignee: str | None = None
    state: str = "ready"
    completed_by: str | None = None
    seq: int = 0


@dataclass
class _Organisation:
    """The organisation chain replayed: its state after each event, by event id."""

    ids: list[int] = field(default_factory=list)
    roles: list[dict[str, frozenset[str]]] = field(default_factory=list)
    people: dict[str, dict[str, Any]] | None = None

    def roles_at(self, event_id: int, actor: str) -> frozenset[str] | None:
        """The actor's roles when event `event_id` was written; None before the chain began."""
        at = bisect.bisect_right(self.ids, event_id) - 1
        return None if at < 0 else self.roles[at].get(actor, frozenset())


def replay(session: Session) -> _Organisation:
    org = _Organisation()
    people: dict[str, dict[str, Any]] = {}
    rows = session.execute(select(Event.id, Event.type, Event.payload)
                           .where(Event.stream == audit.ORGANISATION_STREAM).order_by(Event.seq))
    for event_id, type_, payload in rows:
        people = audit.organisation_after(people, type_, payload or {})
        org.ids.append(event_id)
        org.roles.append({name: frozenset(p.get("roles") or []) for name, p in people.items()})
        org.people = people
    return org


class Coverage:
    """One verification pass: `chain` is called for each stream in order, `finish` once at the end."""

    def __init__(self, session: Session, where: Any, instance_id: int | None = None, process_id: str | None = None,
                 checkpoint: dict[str, Any] | None = None) -> None:
        self.session, self.checkpoint = session, checkpoint
        self.whole = instance_id is None and process_id is None
        self.seals = anchor.SealCheck(session, instance_id, process_id)
        self.org = replay(session)
        instances = select(ProcessInstance.id, ProcessInstance.started_by, ProcessInstance.definition_id)
        if instance_id is not None:
            instances = instances.where(ProcessInstance.id == instance_id)
        elif process_id is not None:
            instances = instances.where(ProcessInstance.process_id == process_id)
        self.instances = {i: (starter, definition) for i, starter, definition in session.execute(instances)}
        self.scope = (instance_id, process_id)
        self.tasks: dict[int | None, _Task] = {}  # by payload task_id: None if a task_ready lost it
        self.intact: set[int] = set()
        self.archived: dict[int, tuple[int, str]] = {}
        self.seen: set[str] = set()
        self.problems: list[Problem] = []
        facts = select(Event.stream, Event.seq, EventFact.key, EventFact.value).join(
            Event, Event.id == EventFact.event_id)
        if where is not None:
            facts = facts.where(where)
        cursor = session.connection().execute(facts.order_by(Event.stream, Event.seq).execution_options(yield_per=5000))
        self._facts: Iterator[Any] = itertools.chain.from_iterable(cursor.partitions())
        self._next = next(self._facts, None)

    # -- the pass ---------------------------------------------------------------------------------------------

    def _facts_at(self, stream: str, seq: int) -> set[tuple[str, str]]:
        """The stored facts of one event: the facts rows come in the events' order, so a merge suffices."""
        found = set()
        row = self._next
        while row is not None and row[1] == seq and row[0] == stream:
            found.add((row[2], row[3]))
            row = next(self._facts, None)
        self._next = row
        return found

    def chain(self, stream: str, events: list[Any], intact: bool) -> None:
        self.seen.add(stream)
        kind, _, name = stream.partition("/")
        instance_id = int(name) if kind == "instance" and name.isdigit() else None
        check = intact and (instance_id is None or instance_id in self.instances)
        dues: dict[Any, str | None] = {}
        problem = None
        for e in events:
            stored = self._facts_at(stream, e.seq)
            if not check or problem:
                continue
            if e.type == "task_ready":
                dues[(e.payload or {}).get("task_id")] = (e.payload or {}).get("due")
            problem = self._facts_problem(e, stored, instance_id, dues)
        if not check:
            return
        if problem:
            self.problems.append((stream, problem[0], problem[1]))
        if events:
            self.seals.head(stream, events[-1].seq, events[-1].hash)
        self._against_checkpoint(stream, events)
        if instance_id is not None:
            self.intact.add(instance_id)
            self._follow_tasks(instance_id, events)
        if stream == audit.ARCHIVE_STREAM:
            for e in events:
                for head in (e.payload or {}).get("heads") or []:
                    self.archived[head.get("instance_id")] = (head.get("last_seq"), head.get("last_hash"))

    def _facts_problem(self, e: Any, stored: set[tuple[str, str]], instance_id: int | None,
                       dues: dict[Any, str | None]) -> tuple[int, str] | None:
        roles = self.org.roles_at(e.id, e.actor)
        late = by_starter = False
        if instance_id is not None and e.type == "task_completed":
            due = dues.get((e.payload or {}).get("task_id"))
            late = bool(due and clock.as_db(e.at) > audit.parse_moment(due, "due"))
            by_starter = e.actor == self.instances[instance_id][0]
        full = audit.facts_of(e, roles or (), late=late, by_starter=by_starter, limit=None)
        if roles is None:  # written before the organisation chain began: its roles cannot be re-derived
            stored = {f for f in stored if f[0] != "@role"}
        expected = set(full)
        if stored == expected or (len(full) > audit.MAX_FACTS and stored <= expected):
            return None
        changed = sorted({k for k, _ in stored ^ expected})
        return e.seq, (f"the facts index of event {e.seq} differs from its payload ({', '.join(changed[:5])}): "
                       "event_facts was changed outside pmoflow")

    def _against_checkpoint(self, stream: str, events: list[Any]) -> None:
        checkpoint = self.checkpoint or {}
        head = checkpoint.get("heads", {}).get(stream)
        if head is None:
            return
        seq, hash_ = head
        when = checkpoint.get("created_at")
        if len(events) < seq:
            self.problems.append((stream, len(events) + 1, f"the chain has {len(events)} events, the checkpoint "
                                                           f"of {when} saw {seq}: it was truncated since"))
        elif events[seq - 1].hash != hash_:
            self.problems.append((stream, seq, f"event {seq} is not the one the checkpoint of {when} saw: the "
                                               "history was re-written since"))

    def _follow_tasks(self, instance_id: int, events: list[Any]) -> None:
        for e in events:
            payload: dict[str, Any] = e.payload or {}
            task_id = payload.get("task_id")
            if e.type == "task_ready":
                candidates = set(payload.get("candidates") or [])
                self.tasks[task_id] = _Task(instance_id, e.task_bpmn_id, payload.get("lane"), candidates,
                                            set(payload.get("excluded_by_duties") or []), payload.get("due"),
                                            seq=e.seq)
                continue
            task = self.tasks.get(task_id)
            if task is None or task.instance_id != instance_id:
                continue
            if e.type == "task_claimed":
                task.assignee = e.actor
            elif e.type == "task_unclaimed":
                task.assignee = None
            elif e.type == "task_delegated":
                task.assignee = payload.get("to_user")
            elif e.type == "task_completed":
                task.assignee = task.completed_by = e.actor
                task.state = "completed"
            elif e.type == "task_cancelled":
                task.state = "cancelled"

    # -- after the pass -------------------------------------------------------------------------------------

    def finish(self) -> list[Problem]:
        """Every problem, the seals' first: a stream re-written without the key explains the rest of it."""
        self._check_instances()
        sealing = self.seals.finish(self.archived if self.whole else {}, self.seen)
        self._check_tasks()
        if self.whole:
            self._check_people()
            self._checkpoint_gone()
        return sealing + self.problems

    def _scoped(self, query: Any, instance_column: Any) -> Any:
        instance_id, process_id = self.scope
        if instance_id is not None:
            return query.where(instance_column == instance_id)
        if process_id is not None:
            return query.where(instance_column.in_(select(ProcessInstance.id)
                                                   .where(ProcessInstance.process_id == process_id)))
        return query

    def _check_instances(self) -> None:
        if not self.seals.active:
            return
        columns = (ProcessInstance.id, ProcessInstance.last_seq, ProcessInstance.definition_id,
                   ProcessInstance.process_id, ProcessInstance.version, ProcessInstance.status,
                   ProcessInstance.business_key, ProcessInstance.started_by, ProcessInstance.state)
        rows = self.session.execute(self._scoped(select(*columns), ProcessInstance.id)
                                    .execution_options(yield_per=500))
        for row in rows:
            if row.id in self.intact:
                self.seals.instance(row)

    def _check_tasks(self) -> None:
        candidates: dict[int, list[tuple[str, str]]] = {}
        for task_id, kind, name in self.session.execute(self._scoped(
                select(TaskCandidate.task_id, TaskCandidate.kind, TaskCandidate.name).join(HumanTask),
                HumanTask.instance_id)):
            candidates.setdefault(task_id, []).append((kind, name))
        columns = (HumanTask.id, HumanTask.instance_id, HumanTask.bpmn_id, HumanTask.lane, HumanTask.form,
                   HumanTask.due, HumanTask.assignee, HumanTask.state, HumanTask.completed_by)
        rows = self.session.connection().execute(self._scoped(select(*columns), HumanTask.instance_id)
                                                 .execution_options(yield_per=5000))
        forms = _Forms(self.session)
        seen = set()
        for row in rows:
            if row.instance_id not in self.intact:
                continue
            seen.add(row.id)
            problem = _task_problem(row, self.tasks.get(row.id), candidates.get(row.id, []),
                                    forms.of(self.instances[row.instance_id][1]))
            if problem:
                self.problems.append((f"instance/{row.instance_id}", None, f"task {row.id}: {problem}"))
        for task_id, task in self.tasks.items():
            if task_id not in seen and task.instance_id in self.intact:
                self.problems.append((f"instance/{task.instance_id}", task.seq, f"task {task_id} was offered "
                                      f"(event {task.seq}) but its row is gone: deleted outside pmoflow"))

    def _check_people(self) -> None:
        if self.org.people is None:
            return
        now = audit.people_of(self.session)
        for name in sorted(set(now) | set(self.org.people)):
            was, has = self.org.people.get(name), now.get(name)
            if was == has:
                continue
            if was is None:
                problem = f"user {name} is in the database but was never loaded from an organisation file"
            elif has is None:
                problem = f"user {name} of the organisation record is missing from the database"
            else:
                fields = ", ".join(k for k in sorted(set(was) | set(has)) if was.get(k) != has.get(k))
                problem = f"user {name}: {fields} in the database differ from the organisation record"
            self.problems.append((audit.ORGANISATION_STREAM, None, problem + " (changed outside pmoflow)"))
            return

    def _checkpoint_gone(self) -> None:
        if self.checkpoint is None:
            return
        if anchor.checkpoint_signed(self.session, self.checkpoint) is False:
            self.problems.append(("checkpoint", None, "the checkpoint's signature does not match: the file was "
                                                      "edited, or it was signed with another key"))
        for stream, (seq, _) in sorted(self.checkpoint["heads"].items()):
            if stream in self.seen:
                continue
            kind, _, name = stream.partition("/")
            archived = self.archived.get(int(name)) if kind == "instance" and name.isdigit() else None
            if archived is not None and (archived[0] > seq or archived == (seq, self.checkpoint["heads"][stream][1])):
                continue
            self.problems.append((stream, seq, f"the checkpoint of {self.checkpoint.get('created_at')} saw it at "
                                               f"event {seq}; its events are gone: deleted from the database"))


def _task_problem(row: Any, task: _Task | None, candidates: list[tuple[str, str]],
                  forms: dict[str, set[str | None]]) -> str | None:
    if task is None:
        return "it has no task_ready event: the row was added outside pmoflow"
    offered = {f"{kind}:{name}" for kind, name in candidates if kind != "excluded"}
    excluded = {name for kind, name in candidates if kind == "excluded"}
    due = clock.as_utc(row.due).isoformat() if row.due else None
    differences = [what for what, same in (
        ("its element", row.bpmn_id == task.bpmn_id), ("its lane", row.lane == task.lane),
        ("its candidates", offered == task.candidates), ("who is excluded by duties", excluded == task.excluded),
        ("its due time", due == task.due), ("its state", row.state == task.state),
        ("its assignee", row.assignee == task.assignee), ("who completed it", row.completed_by == task.completed_by),
        ("its form", row.bpmn_id in forms and row.form in forms[row.bpmn_id]),
    ) if not same]
    if differences:
        return f"{', '.join(differences)} differ from its events and spec: the inbox was changed outside pmoflow"
    return None


class _Forms:
    """The form each task of a deployed spec uses, read from the stored spec (as the task rows were made)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.cache: dict[int, dict[str, set[str | None]]] = {}

    def of(self, definition_id: int) -> dict[str, set[str | None]]:
        if definition_id not in self.cache:
            spec = self.session.scalar(select(ProcessDefinition.spec).where(ProcessDefinition.id == definition_id))
            forms: dict[str, set[str | None]] = {}
            try:
                stored = json.loads(spec or "{}")
                specs = [stored.get("spec") or {}, *(stored.get("subprocess_specs") or {}).values()]
            except (ValueError, AttributeError):
                specs = []
            for process in specs:
                for task in (process.get("task_specs") or {}).values():
                    if task.get("bpmn_id"):
                        props = (task.get("extensions") or {}).get("properties") or {}
                        forms.setdefault(task["bpmn_id"], set()).add(props.get("formJsonSchemaFilename"))
            self.cache[definition_id] = forms
        return self.cache[definition_id]

