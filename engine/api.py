"""The Python API: everything pmoflow does, one method per command. The CLI is a thin layer over this."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pmoflow.engine import audit, clock, forms, messaging, organisation, parser, runtime, scenario, serialization
from pmoflow.engine import notifications as outbox
from pmoflow.engine import schedules as start_timers
from pmoflow.engine.database import Database
from pmoflow.engine.diagram import render_svg
from pmoflow.engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from pmoflow.engine.models import (
    HumanTask,
    ProcessDefinition,
    ProcessInstance,
    ProcessSchedule,
    TaskCandidate,
    User,
    UserRole,
)
from pmoflow.engine.scripting import SCRIPT_HELPERS, Handler
from pmoflow.engine.views import definition_view, event_view, instance_view, task_view

WORKER = "worker"


def bundled_dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def default_handlers() -> Mapping[str, Handler]:
    from pmoflow.workflows import HANDLERS
    return HANDLERS


class Pmoflow:
    """A pmoflow installation: one database, the acting user, and the registered service handlers."""

    def __init__(self, db: str | None = None, user: str | None = None,
                 handlers: Mapping[str, Handler] | None = None) -> None:
        self.db = Database(db)
        self.user = user or os.environ.get("PMOFLOW_USER")
        self.handlers = handlers if handlers is not None else default_handlers()
        self.form_dirs = [bundled_dir("pmoflow.forms")]

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        session_ref: list[Session] = []
        try:
            with self.db.transaction() as session:
                session_ref.append(session)
                yield session
        except BaseException:
            if session_ref:
                runtime.after_rollback(session_ref[0])
            raise
        runtime.after_commit(session_ref[0])

    def close(self) -> None:
        self.db.dispose()

    # -- set-up ---------------------------------------------------------------------------------------

    def init(self, org: str | Path | None = None) -> dict[str, Any]:
        """Create or upgrade the schema, load the organisation, deploy the bundled processes. Idempotent."""
        people = organisation.load(org)  # read it before touching the database
        self.db.upgrade()
        with self._tx() as session:
            self._load_people(session, people)
        deployed = self.deploy([bundled_dir("pmoflow.bpmn")], actor="pmoflow-init")
        return {"database": self.db.safe_url, "users": len(people.people), "organisation": people.source,
                "processes": deployed}

    def _load_people(self, session: Session, org: organisation.Organisation) -> None:
        existing = {u.name: u for u in session.scalars(select(User))}
        for person in org.people:
            user = existing.pop(person.name, None) or User(name=person.name)
            user.full_name, user.email, user.department = person.full_name, person.email, person.department
            user.roles = [UserRole(user_name=person.name, role=r) for r in dict.fromkeys(person.roles)]
            session.add(user)
            session.flush()
        for gone in existing.values():
            session.delete(gone)

    def users(self) -> list[dict[str, Any]]:
        self.db.check_schema()
        with self._tx() as session:
            return [{"name": u.name, "roles": u.role_names, "full_name": u.full_name, "department": u.department}
                    for u in session.scalars(select(User).order_by(User.name))]

    # -- definitions ----------------------------------------------------------------------------------

    def validate(self, paths: list[str | Path]) -> list[dict[str, Any]]:
        """Lint files without storing anything: every finding, errors and warnings, as a dict (file, line, column,
        severity, element_id, message, hint). Raises InvalidProcess (parser.InvalidFiles, whose `findings` hold
        them all) when any is an error. Lanes are checked against the roles of the organisation in the database
        when one is initialised, else against the PMO's standard roles."""
        from pmoflow.engine.errors import DatabaseUnavailable

        roles = None
        try:
            self.db.check_schema()
            with self._tx() as session:
                roles = set(session.scalars(select(UserRole.role).distinct())) or None
        except DatabaseUnavailable:
            pass  # no database (or not initialised): a designer's check needs none
        findings = parser.lint(paths, handlers=set(self.handlers), roles=roles or organisation.PMO_ROLES,
                               form_dirs=self.form_dirs)
        parser.refuse_errors(findings)
        return [finding.as_dict() for finding in findings]

    def deploy(self, paths: list[str | Path], actor: str | None = None) -> list[dict[str, Any]]:
        """Store each process as a new version, unless an identical version exists already."""
        parsed = parser.parse(paths, handlers=set(self.handlers), form_dirs=self.form_dirs)
        for process in parsed:
            for name, text in process.sources.items():
                if name.startswith("forms/"):
                    forms.load_schema(text, name)
        self.db.check_schema()
        actor = actor or self.user or "unknown"
        results = []
        with self._tx() as session:
            for process in parsed:
                results.append(self._deploy_one(session, process, actor))
        return results

    def _deploy_one(self, session: Session, process: parser.ParsedProcess, actor: str) -> dict[str, Any]:
        digest = process.content_hash
        same = session.scalar(select(ProcessDefinition).where(
            ProcessDefinition.process_id == process.process_id, ProcessDefinition.content_hash == digest))
        if same is not None:
            return {**definition_view(same), "created": False}
        latest = session.scalar(select(func.max(ProcessDefinition.version)).where(
            ProcessDefinition.process_id == process.process_id)) or 0
        definition = ProcessDefinition(
            process_id=process.process_id, version=latest + 1, name=process.name, content_hash=digest,
            sources=process.sources, spec=serialization.dump_specs(process.spec, process.subprocess_specs),
            start_form=process.start_form, deployed_by=actor, deployed_at=clock.db_now())
        session.add(definition)
        session.flush()
        timers = [start_timers.view(s, definition.version) for s in self._replace_schedules(session, definition, actor)]
        audit.add_definition_event(session, process.process_id, definition.version, actor, "deployed",
                                   content_hash=digest, files=sorted(process.sources),
                                   **({"schedules": timers} if timers else {}))
        return {**definition_view(definition), "created": True, "schedules": timers}

    @staticmethod
    def _replace_schedules(session: Session, definition: ProcessDefinition, actor: str) -> list[ProcessSchedule]:
        """The new version's timer start events replace the process's schedules. One with the same start event
        and expression as before keeps its next due time and count, so a redeploy does not reset a yearly clock.
        The deploying user owns the schedules: the instances a timer starts belong to whoever put the schedule
        in place, who is accountable for them (and is `process_initiator()` in their scripts)."""
        old = {(s.bpmn_id, s.expression): s for s in session.scalars(
            select(ProcessSchedule).where(ProcessSchedule.process_id == definition.process_id))}
        kept = []
        for bpmn_id, event in runtime.start_events(session, definition, TimerEventDefinition):
            previous = old.pop((bpmn_id, event.expression), None)
            if previous is not None:
                previous.definition_id, previous.owner = definition.id, actor
                kept.append(previous)
                continue
            timing = start_timers.first(definition.process_id, bpmn_id, event.expression, definition.deployed_at)
            kept.append(ProcessSchedule(process_id=definition.process_id, definition_id=definition.id,
                                        bpmn_id=bpmn_id, expression=event.expression, next_due=timing.next_due,
                                        remaining=timing.remaining, owner=actor, fired=0))
        for gone in old.values():
            session.delete(gone)
        session.add_all(kept)
        session.flush()
        return kept

    def test(self, paths: list[str | Path]) -> list[dict[str, Any]]:
        """Run designers' scenario files (test_<name>.json beside the BPMN) without a database."""
        return [asdict(r) for r in scenario.run_tests(paths, handlers=self.handlers)]

    def diagram(self, process_id: str, version: int | None = None) -> str:
        """The deployed process drawn as SVG from its diagram interchange."""
        self.db.check_schema()
        with self._tx() as session:
            definition = self._definition(session, process_id, version)
            return render_svg(bpmn_source(definition, process_id), process_id,
                              title=f"{definition.name} v{definition.version}")

    def _definition(self, session: Session, process_id: str, version: int | None) -> ProcessDefinition:
        query = select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
        query = query.where(ProcessDefinition.version == version) if version else query.order_by(
            ProcessDefinition.version.desc()).limit(1)
        definition = session.scalar(query)
        if definition is None:
            which = f" version {version}" if version else ""
            raise NotFound(f"no process '{process_id}'{which} is deployed (see 'pmoflow processes')")
        return definition

    def processes(self) -> list[dict[str, Any]]:
        self.db.check_schema()
        with self._tx() as session:
            latest = select(ProcessDefinition.process_id, func.max(ProcessDefinition.version).label("v")) \
                .group_by(ProcessDefinition.process_id).subquery()
            rows = session.scalars(select(ProcessDefinition).join(latest, (
                ProcessDefinition.process_id == latest.c.process_id) & (ProcessDefinition.version == latest.c.v))
                .order_by(ProcessDefinition.process_id))
            return [definition_view(d) for d in rows]

    # -- identity -------------------------------------------------------------------------------------

    def _actor(self, session: Session) -> User:
        if not self.user:
            raise PermissionDenied("no user given: pass --user NAME or set PMOFLOW_USER")
        user = session.get(User, self.user)
        if user is None:
            raise PermissionDenied(f"unknown user '{self.user}': not in the organisation file")
        return user

    # -- instances ------------------------------------------------------------------------------------

    def start(self, process_id: str, data: dict[str, Any] | None = None,
              business_key: str | None = None) -> dict[str, Any]:
        """Start the newest version of a process with initial data, and run it to its first wait state."""
        data = _require_object(data or {})
        self.db.check_schema()
        with self._tx() as session:
            actor = self._actor(session)
            definition = session.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                                        .order_by(ProcessDefinition.version.desc()).limit(1))
            if definition is None:
                raise NotFound(f"no process '{process_id}' is deployed (see 'pmoflow processes')")
            lane = runtime.start_lane(session, definition)
            if lane is not None and lane not in actor.role_names:
                raise PermissionDenied(f"{process_id} is started from the {lane} lane; {actor.name} does not "
                                       f"hold the role {lane}")
            self._validate_form(definition, definition.start_form, data)
            instance = self._new_instance(session, definition, actor.name, business_key)
            run = runtime.Run.new(session, instance, definition, actor.name, self.handlers, data)
            run.log.add("instance_started", data=data, version=definition.version, business_key=business_key)
            self._advance(run)
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error,
                    "process_id": process_id, "version": definition.version}

    @staticmethod
    def _new_instance(session: Session, definition: ProcessDefinition, owner: str,
                      business_key: str | None = None) -> ProcessInstance:
        now = clock.db_now()
        instance = ProcessInstance(definition_id=definition.id, process_id=definition.process_id,
                                   version=definition.version, status="running", business_key=business_key,
                                   started_by=owner, started_at=now, updated_at=now, state="")
        session.add(instance)
        session.flush()
        return instance

    def _advance(self, run: runtime.Run, hops: int = 0) -> None:
        run.advance()
        self._finish(run, hops)

    def _finish(self, run: runtime.Run, hops: int = 0) -> None:
        """Project and save the run, then deliver what it sent: in this transaction, so a message and what it
        causes commit together with the command that sent it, or not at all."""
        run.sync_tasks()
        run.save()
        self._dispatch(run, hops)
        if run.instance.status == "completed":
            run.log.add("instance_completed", data=_final_data(run.workflow))
            run.session.flush()

    # -- messages -------------------------------------------------------------------------------------

    def message(self, name: str, data: Any = None, correlate: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send a message from outside: to the one instance waiting for it with these correlation values, or
        to the process it starts. A message nobody takes is refused, with nothing changed."""
        payload = _require_object(data if data is not None else {})
        if not name or not name.strip():
            raise InvalidInput("a message needs a name")
        self.db.check_schema()
        with self._tx() as session:
            actor = self._actor(session)
            name = name.strip()
            if name not in self._message_names(session):
                raise NotFound(f"no deployed process sends or waits for a message named '{name}'")
            correlation = dict(correlate or {})
            for prop in messaging.expected_properties(session, name) - set(correlation):
                if prop in payload:  # a value the receiver matches on may come in the data under its own name
                    correlation[prop] = payload[prop]
            message = messaging.Message(name, payload, correlation, actor.name)
            self._deliver(session, message, 0)
            return {"message": message.name, "correlation": message.correlation,
                    "delivered_to": message.delivered_to}

    def messages(self) -> list[dict[str, Any]]:
        """What running instances wait for, with the correlation values each expects."""
        from pmoflow.engine.models import MessageWait

        self.db.check_schema()
        with self._tx() as session:
            rows = session.execute(select(MessageWait, ProcessInstance.process_id, ProcessInstance.status)
                                   .join(ProcessInstance, ProcessInstance.id == MessageWait.instance_id)
                                   .order_by(MessageWait.message_name, MessageWait.instance_id)).all()
            return [{"message": w.message_name, "instance_id": w.instance_id, "process_id": process_id,
                     "status": status, "waiting_at": w.bpmn_id, "expects": json.loads(w.correlation)}
                    for w, process_id, status in rows]

    def _dispatch(self, run: runtime.Run, hops: int) -> None:
        while run.outbox and run.instance.status != "error":
            message = run.outbox.pop(0)
            try:
                self._deliver(run.session, message, hops + 1, sender=run)
            except messaging.MessageRefused as exc:
                run.outbox.clear()
                run.fail_send(message, exc)
                run.sync_tasks()
                run.save()

    def _deliver(self, session: Session, message: messaging.Message, hops: int,
                 sender: runtime.Run | None = None) -> None:
        if hops > messaging.MAX_HOPS:
            raise messaging.MessageUnmatched(f"{message.describe()}: more than {messaging.MAX_HOPS} messages "
                                             f"answered each other in one command; is there a message loop?")
        targets, idle = messaging.receivers(session, message)
        if len(targets) > 1:
            raise messaging.ambiguous(message, targets)
        if targets:
            instance = session.scalar(select(ProcessInstance).where(ProcessInstance.id == targets[0])
                                      .with_for_update())
            run = runtime.Run.for_instance(session, instance, session.get(ProcessDefinition, instance.definition_id),
                                           message.actor, self.handlers)
            self._log_sent(sender, message, instance.id)
            run.receive(message)
        else:
            starts = self._message_starts(session, message.name)
            if len(starts) != 1 or idle:
                missing = messaging.expected_properties(session, message.name) - set(message.correlation)
                raise messaging.unmatched(message, idle, [d.process_id for d, _ in starts], missing)
            definition, start_event = starts[0]
            runtime.check_message_start(session, definition, start_event, message)
            owner = message.actor if message.actor != WORKER or sender is None else sender.instance.started_by
            instance = self._new_instance(session, definition, owner)
            self._log_sent(sender, message, instance.id)
            run = runtime.Run.new(session, instance, definition, owner, self.handlers, {}, start_event=start_event)
            run.log.add("instance_started", data={}, version=definition.version, business_key=None,
                        by_message=message.name, from_instance=message.sender_instance)
            run.receive(message)
        message.delivered_to.append(instance.id)
        self._finish(run, hops)

    @staticmethod
    def _log_sent(sender: runtime.Run | None, message: messaging.Message, to_instance: int) -> None:
        if sender is not None:
            task = runtime.find_task(sender.workflow, message.sender_task or "")
            ref = runtime._TaskRef(message.sender_bpmn_id, task.task_spec.bpmn_name if task else None)
            sender.log.add("message_sent", task=ref, **message.record(), to_instance=to_instance)

    @staticmethod
    def _newest_definitions(session: Session) -> list[ProcessDefinition]:
        newest = select(ProcessDefinition.process_id, func.max(ProcessDefinition.version).label("v")) \
            .group_by(ProcessDefinition.process_id).subquery()
        return list(session.scalars(select(ProcessDefinition).join(newest, (
            ProcessDefinition.process_id == newest.c.process_id) & (ProcessDefinition.version == newest.c.v))))

    def _message_starts(self, session: Session, name: str) -> list[tuple[ProcessDefinition, str]]:
        """The newest version of each process with a message start event for `name`."""
        from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition

        return [(definition, bpmn_id) for definition in self._newest_definitions(session)
                for bpmn_id, event in runtime.start_events(session, definition, MessageEventDefinition)
                if event.name == name]

    def _message_names(self, session: Session) -> set[str]:
        """Every message name a deployed process (any version) sends or waits for."""
        definitions = session.scalars(select(ProcessDefinition))
        return {name for d in definitions for name in runtime.message_names(session, d)}

    def _validate_form(self, definition: ProcessDefinition, form: str | None, data: dict[str, Any]) -> None:
        if form is None:
            return _only_declared(data, None, None)
        text = definition.sources.get(f"forms/{form}")
        if text is None:
            raise InvalidInput(f"form {form} is missing from {definition.process_id} v{definition.version}")
        schema = forms.load_schema(text, form)
        _only_declared(data, schema, form)
        forms.validate(schema, data, form)

    def instances(self, status: str | None = None, process: str | None = None) -> list[dict[str, Any]]:
        self.db.check_schema()
        with self._tx() as session:
            query = select(ProcessInstance).order_by(ProcessInstance.id)
            if status:
                query = query.where(ProcessInstance.status == status)
            if process:
                query = query.where(ProcessInstance.process_id == process)
            return [instance_view(i) for i in session.scalars(query)]

    def _instance(self, session: Session, instance_id: int | str) -> ProcessInstance:
        instance = session.get(ProcessInstance, _int_id(instance_id, "instance"))
        if instance is None:
            raise NotFound(f"no instance {instance_id}")
        return instance

    def show(self, instance_id: int | str) -> dict[str, Any]:
        self.db.check_schema()
        with self._tx() as session:
            instance = self._instance(session, instance_id)
            run = self._run(session, instance, "viewer")
            tasks = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id)
                                    .order_by(HumanTask.id))
            return {**instance_view(instance), "data": audit.to_json_data(_final_data(run.workflow)),
                    "tasks": [task_view(t) for t in tasks],
                    "calls": audit.to_json_data(runtime.called_processes(run.workflow))}

    def history(self, instance_id: int | str) -> list[dict[str, Any]]:
        self.db.check_schema()
        with self._tx() as session:
            instance = self._instance(session, instance_id)
            return [event_view(e) for e in audit.history(session, instance.id)]

    def verify(self, instance_id: int | str | None = None) -> dict[str, Any]:
        """Re-compute the audit hash chains; every altered, removed, inserted or reordered event shows."""
        self.db.check_schema()
        with self._tx() as session:
            if instance_id is not None:
                instance_id = self._instance(session, instance_id).id
            findings = audit.verify(session, instance_id)
            return {"ok": not findings, "checked_events": audit.count(session, instance_id),
                    "findings": findings}

    def _run(self, session: Session, instance: ProcessInstance, actor: str) -> runtime.Run:
        definition = session.get(ProcessDefinition, instance.definition_id)
        return runtime.Run(session, instance, definition, actor, self.handlers)

    # -- human tasks ----------------------------------------------------------------------------------

    def tasks(self, all_tasks: bool = False) -> list[dict[str, Any]]:
        """Open tasks the user may take (or all open tasks): a query on the projection only."""
        self.db.check_schema()
        with self._tx() as session:
            query = select(HumanTask).where(HumanTask.state == "ready").order_by(HumanTask.id)
            if not all_tasks:
                user = self._actor(session)
                mine = select(TaskCandidate.task_id).where(or_(
                    (TaskCandidate.kind == "user") & (TaskCandidate.name == user.name),
                    (TaskCandidate.kind == "role") & TaskCandidate.name.in_(user.role_names)))
                barred = select(TaskCandidate.task_id).where(
                    (TaskCandidate.kind == "excluded") & (TaskCandidate.name == user.name))
                query = query.where(or_(HumanTask.assignee == user.name,
                                        (HumanTask.assignee.is_(None)) & HumanTask.id.in_(mine)),
                                    HumanTask.id.not_in(barred))
            return [task_view(t) for t in session.scalars(query)]

    def notifications(self, user: str | None = None, undelivered_only: bool = False,
                      instance: int | str | None = None, all_users: bool = False) -> list[dict[str, Any]]:
        """The notification outbox, oldest first: the acting user's own, `user`'s, or everyone's (`all_users`);
        only of one `instance` and only the undelivered ones when asked.

        Inbox delivery: listing your own (no `user`, or `user` is you, and not `all_users`) delivers what it
        shows: each row not delivered before gets `delivered_at` now and `new` true. Listing someone else's or
        everyone's (an auditor) changes nothing. An unknown user or instance is an error, not an empty list.
        """
        if user is not None and all_users:
            raise InvalidInput("give a user or all users, not both")
        self.db.check_schema()
        with self._tx() as session:
            own = not all_users and user in (None, self.user)
            recipient = self._actor(session).name if own else user
            if recipient is not None and not outbox.is_recipient(session, recipient):
                raise NotFound(f"unknown user '{recipient}': not in the organisation file, and no notification "
                               "was ever queued for them")
            instance_id = self._instance(session, instance).id if instance is not None else None
            rows = outbox.listing(session, recipient, instance_id, undelivered_only)
            now = clock.db_now()
            delivered = outbox.deliver(session, rows, recipient, now) if own else set()
            return [outbox.view(r, now if r.id in delivered else None) for r in rows]

    def _task(self, session: Session, task_id: int | str) -> HumanTask:
        task = session.get(HumanTask, _int_id(task_id, "task"))
        if task is None:
            raise NotFound(f"no task {task_id}")
        return task

    def task(self, task_id: int | str) -> dict[str, Any]:
        self.db.check_schema()
        with self._tx() as session:
            row = self._task(session, task_id)
            view = task_view(row)
            if row.state == "ready":
                instance = self._instance(session, row.instance_id)
                run = self._run(session, instance, "viewer")
                spiff_task = runtime.find_task(run.workflow, row.spiff_task_id)
                view["data"] = audit.to_json_data(spiff_task.data) if spiff_task else {}
                if row.form:
                    view["schema"] = forms.load_schema(run.definition.sources[f"forms/{row.form}"], row.form)
            return view

    def _open_task(self, session: Session, task_id: int | str) -> tuple[HumanTask, User, ProcessInstance]:
        row = self._task(session, task_id)
        user = self._actor(session)
        if row.state != "ready":
            raise Conflict(f"task {row.id} is already {row.state}")
        instance = self._instance(session, row.instance_id)
        if instance.status not in ("running", "waiting"):
            raise Conflict(f"instance {instance.id} is {instance.status}; its tasks cannot be worked on")
        return row, user, instance

    def _may_act(self, row: HumanTask, user: User) -> bool:
        for c in row.candidates:
            if c.kind == "excluded":
                continue
            if (c.kind == "user" and c.name == user.name) or (c.kind == "role" and c.name in user.role_names):
                return True
        return False

    def _check_may_take(self, row: HumanTask, user: User) -> None:
        if row.assignee and row.assignee != user.name:
            raise Conflict(f"task {row.id} is claimed by {row.assignee}")
        if row.assignee != user.name and not self._may_act(row, user):
            who = ", ".join(f"{c.kind} {c.name}" for c in row.candidates if c.kind != "excluded")
            raise PermissionDenied(f"task {row.id} ({row.name}) is for {who}; {user.name} is not one of them")

    def _spiff_task(self, session: Session, row: HumanTask, instance: ProcessInstance):
        spiff_task = runtime.find_task(self._run(session, instance, "viewer").workflow, row.spiff_task_id)
        if spiff_task is None:
            raise Conflict(f"task {row.id} is no longer waiting for input")
        return spiff_task

    def claim(self, task_id: int | str) -> dict[str, Any]:
        """Take a task; refused when its duties would keep you from completing it."""
        with self._refusals_recorded(), self._tx() as session:
            row, user, instance = self._open_task(session, task_id)
            self._check_may_take(row, user)
            self._check_duties(session, row, self._spiff_task(session, row, instance), user, instance)
            if row.assignee == user.name:
                return task_view(row)
            row.assignee = user.name
            audit.InstanceLog(session, instance, user.name).add("task_claimed", task=row, task_id=row.id)
            return task_view(row)

    def unclaim(self, task_id: int | str) -> dict[str, Any]:
        with self._tx() as session:
            row, user, instance = self._open_task(session, task_id)
            if row.assignee != user.name:
                raise Conflict(f"task {row.id} is not claimed by {user.name}")
            row.assignee = None
            audit.InstanceLog(session, instance, user.name).add("task_unclaimed", task=row, task_id=row.id)
            return task_view(row)

    def delegate(self, task_id: int | str, to_user: str) -> dict[str, Any]:
        """Hand a task to another person who may also take it; the delegation is recorded."""
        with self._refusals_recorded(), self._tx() as session:
            row, user, instance = self._open_task(session, task_id)
            self._check_may_take(row, user)
            target = session.get(User, to_user)
            if target is None:
                raise NotFound(f"no user '{to_user}'")
            if not self._may_act(row, target):
                raise PermissionDenied(f"{to_user} may not take task {row.id} ({row.name}): not a candidate")
            self._check_duties(session, row, self._spiff_task(session, row, instance), target, instance)
            previous, row.assignee = row.assignee, target.name
            audit.InstanceLog(session, instance, user.name).add(
                "task_delegated", task=row, task_id=row.id, from_user=previous or user.name, to_user=target.name)
            return task_view(row)

    def complete(self, task_id: int | str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate the form data, check duties, complete the task and run the instance on."""
        data = _require_object(data or {})
        self.db.check_schema()
        with self._refusals_recorded():
            return self._complete(task_id, data)

    @contextmanager
    def _refusals_recorded(self) -> Iterator[None]:
        """After the refused command rolled back, the refusal itself becomes part of the record."""
        try:
            yield
        except DutyRefused as refusal:
            self._record_refusal(refusal)
            raise

    def _complete(self, task_id: int | str, data: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as session:
            row, user, instance = self._open_task(session, task_id)
            self._check_may_take(row, user)
            run = self._run(session, instance, user.name)
            self._validate_form(run.definition, row.form, data)
            spiff_task = runtime.find_task(run.workflow, row.spiff_task_id)
            if spiff_task is None or not spiff_task.has_state(runtime.TaskState.READY):
                raise Conflict(f"task {row.id} is no longer waiting for input")
            checks = self._check_duties(session, row, spiff_task, user, instance)
            row.assignee = user.name
            row.completed_by, row.completed_at = user.name, clock.db_now()
            run.log.add("task_completed", task=row, task_id=row.id, data=data, duty_checks=checks)
            run.complete_human_task(spiff_task, data)
            self._finish(run)
            return {"task_id": row.id, "instance_id": instance.id, "status": instance.status,
                    "error": instance.error}

    def _check_duties(self, session: Session, row: HumanTask, spiff_task, user: User,
                      instance: ProcessInstance) -> list[dict[str, Any]]:
        """Segregation of duties declared on the task: its performer must differ from the named others."""
        checks = []
        for rule in runtime.duty_rules(spiff_task):
            others = {instance.started_by} if rule == "starter" else runtime.performers(
                session, instance.id, spiff_task, rule)
            if user.name in others:
                message = (f"segregation of duties: {user.name} may not take '{row.name}' because they "
                           f"{'started this instance' if rule == 'starter' else f'performed task {rule}'}")
                raise DutyRefused(message, instance.id, row.id, user.name, f"performer differs from {rule}")
            checks.append({"rule": f"performer differs from {rule}", "result": "passed"})
        return checks

    def _record_refusal(self, refusal: DutyRefused) -> None:
        with self._tx() as session:
            instance = self._instance(session, refusal.instance_id)
            row = self._task(session, refusal.task_id)
            audit.InstanceLog(session, instance, refusal.actor).add(
                "duty_refused", task=row, task_id=row.id, rule=refusal.rule, message=refusal.message)

    # -- versions and migration (engine/migration.py) --------------------------------------------------

    def diff(self, process_id: str, from_version: int | str, to_version: int | str) -> dict[str, Any]:
        """What changed between two deployed versions of a process: added, removed and changed elements."""
        from pmoflow.engine import migration
        self.db.check_schema()
        with self._tx() as session:
            return migration.diff(session, process_id, from_version, to_version)

    def migrate(self, instance_id: int | str, to_version: int | str, dry_run: bool = False,
                reason: str | None = None) -> dict[str, Any]:
        """Move a running instance to another deployed version of its process when it is safe, recorded as a
        `migrated` event; raises MigrationRefused (exit 1) with every reason when it is not. A dry run
        reports the outcome (`would-migrate` or `refused` with reasons) and changes nothing."""
        from pmoflow.engine import migration
        self.db.check_schema()
        with self._tx() as session:
            actor = "dry-run" if dry_run else self._actor(session).name
            instance = self._instance(session, instance_id)
            return migration.migrate(session, instance, to_version, actor, self.handlers, dry_run=dry_run,
                                     reason=reason)

    def migrate_all(self, process_id: str, from_version: int | str, to_version: int | str, dry_run: bool = False,
                    progress: Callable[[int, int], None] | None = None, reason: str | None = None) -> dict[str, Any]:
        """Move every unfinished instance of one version, each in its own transaction: the safe ones move, each
        refusal is reported with its reasons. `progress(done, total)` is called before and after each one."""
        from pmoflow.engine import migration
        self.db.check_schema()
        with self._tx() as session:
            if not dry_run:
                self._actor(session)
            ids = migration.instances_on(session, process_id, from_version, to_version)
        results = []
        if progress is not None:
            progress(0, len(ids))
        for done, instance_id in enumerate(ids, 1):
            results.append(self._migrate_one(instance_id, int(from_version), int(to_version), dry_run, reason))
            if progress is not None:
                progress(done, len(ids))
        return migration.bulk_result(process_id, from_version, to_version, dry_run, results)

    def _migrate_one(self, instance_id: int, from_version: int, to_version: int, dry_run: bool,
                     reason: str | None) -> dict[str, Any]:
        from pmoflow.engine import migration
        from pmoflow.engine.errors import PmoflowError
        try:
            with self._tx() as session:
                actor = "dry-run" if dry_run else self._actor(session).name
                instance = self._instance(session, instance_id)
                return migration.migrate(session, instance, to_version, actor, self.handlers, dry_run=dry_run,
                                         from_version=from_version, reason=reason)
        except migration.MigrationRefused as refused:
            return refused.result
        except PmoflowError as exc:  # a concurrent update, an instance gone: this one is reported, the rest go on
            return migration.refusal(instance_id, from_version, to_version, exc.message, dry_run)

    # -- audit: queries, verification, reports, archives (engine/audit.py, report.py, archive.py) ------

    def audit_events(self, process: str | None = None, version: int | str | None = None,
                     instance: int | str | None = None, actor: str | None = None, role: str | None = None,
                     types: tuple[str, ...] | list[str] = (), task: str | None = None,
                     since: str | datetime | None = None, until: str | datetime | None = None,
                     period: str | None = None, where: tuple[str, ...] | list[str] = (), late: bool = False,
                     by_starter: bool = False, override: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        """Events across instances, oldest first, filtered on indexed columns and facts (see audit.query).
        `where` conditions are `payload.path=value` (or `!=`); `override` is `SUBMITTED=RECOMMENDED`;
        `period` is 2027, 2027-Q1, 2027-03 or 2027-03-31. A filter naming something the record does not
        know is refused with the valid names."""
        filters = self._audit_filters(process=process, version=version, instance=instance, actor=actor, role=role,
                                      types=types, task=task, since=since, until=until, period=period, where=where,
                                      late=late, by_starter=by_starter, override=override, limit=limit)
        self.db.check_schema()
        with self._tx() as session:
            return [audit.export_view(e) for e in audit.query(session, filters)]

    def _audit_filters(self, since=None, until=None, period=None, version=None, instance=None, types=(), where=(),
                       **rest: Any) -> audit.Filters:
        from datetime import timedelta

        if period is not None:
            if since is not None or until is not None:
                raise InvalidInput("give --period, or --since/--until, not both")
            start, end = audit.parse_period(period)
        else:
            start = audit.parse_moment(since, "--since") if since is not None else None
            end = audit.parse_moment(until, "--until", end=True) if until is not None else None
            if isinstance(until, str) and len(until.strip()) != 10:
                end = end + timedelta(microseconds=1)  # a time given to the microsecond is included
        if version is not None:
            try:
                version = int(version)
            except (TypeError, ValueError):
                raise InvalidInput(f"--version: '{version}' is not a version number") from None
        instance = _int_id(instance, "instance") if instance is not None else None
        return audit.Filters(since=start, until=end, version=version, instance=instance, types=tuple(types),
                             where=tuple(where), **rest)

    def verify_record(self, instance_id: int | str | None = None) -> dict[str, Any]:
        """Re-compute the hash chains of every instance (or one), the deployment chains of the processes
        concerned (each stored version must match its `deployed` event) and the archive chain; findings name
        the stream, kind, instance or process, and the first bad seq."""
        self.db.check_schema()
        with self._tx() as session:
            if instance_id is not None:
                instance_id = self._known_instance(session, instance_id).id
            findings = audit.check(session, instance_id)
            checked = audit.count(session, instance_id)
            return {"ok": not findings, "checked_events": checked, "findings": findings}

    def _known_instance(self, session: Session, instance_id: int | str) -> ProcessInstance:
        """The instance, or NotFound saying which archive took it when one did."""
        try:
            return self._instance(session, instance_id)
        except NotFound:
            archived = audit.archived_message(session, _int_id(instance_id, "instance"))
            if archived:
                raise NotFound(archived) from None
            raise

    def verify_archive(self, path: str | Path) -> dict[str, Any]:
        """Check an archive file on its own (structure, every chain, the digest), then against this database's
        record of writing it when the database is at hand: a file edited and re-hashed shows there."""
        from pmoflow.engine import archive
        from pmoflow.engine.errors import DatabaseUnavailable

        result = archive.verify_file(path)
        result["recorded"] = None
        try:
            self.db.check_schema()
            with self._tx() as session:
                event = archive.recorded(session, result["archive_id"])
                if event is None:
                    result["note"] = "this database has no record of writing this archive"
                else:
                    result["recorded"] = {"seq": event.seq, "at": clock.as_utc(event.at).isoformat(),
                                          "actor": event.actor, "digest": event.payload.get("digest")}
                    if event.payload.get("digest") != result["digest"]:
                        result["findings"].append({
                            "line": None, "instance_id": None, "seq": None,
                            "problem": f"the digest recorded when the archive was written (archive event "
                                       f"{event.seq}) differs from the file's: the file was changed since"})
        except DatabaseUnavailable:
            result["note"] = "no database at hand: the file was checked on its own"
        result["ok"] = not result["findings"]
        return result

    def archive(self, before: str | datetime, path: str | Path) -> dict[str, Any]:
        """Move the history of instances that finished (completed or terminated) before `before` into a new
        archive file, then remove it from the database, recording the act; see engine/archive.py."""
        from pmoflow.engine import archive

        moment = audit.parse_moment(before, "--before")
        target = Path(path)
        if target.exists():
            raise InvalidInput(f"{target} exists already; archives are never overwritten: choose a new file")
        if not target.parent.is_dir():
            raise InvalidInput(f"cannot write {target}: folder {target.parent} does not exist")
        self.db.check_schema()
        with self._tx() as session:
            actor = self._actor(session)
            return archive.write(session, target, moment, actor.name, self.db.safe_url)

    def report(self, instance_id: int | str) -> dict[str, Any]:
        """One instance's audit report as data (see engine/report.py; report.render writes HTML or Markdown)."""
        from pmoflow.engine import report as reporting

        self.db.check_schema()
        with self._tx() as session:
            instance = self._known_instance(session, instance_id)
            definition = session.get(ProcessDefinition, instance.definition_id)
            run = self._run(session, instance, "viewer")
            events = [audit.export_view(e) for e in audit.history(session, instance.id)]
            findings = audit.check(session, instance.id)
            verification = {"ok": not findings, "events": len(events), "head_seq": instance.last_seq,
                            "head_hash": instance.last_hash, "findings": findings}
            summary = {**instance_view(instance), "process_name": definition.name,
                       "content_hash": definition.content_hash, "deployed_by": definition.deployed_by,
                       "deployed_at": clock.as_utc(definition.deployed_at).isoformat()}
            errored = (instance.error or {}).get("bpmn_id") if instance.status == "error" else None
            drawing = reporting.diagram(definition.sources, instance.process_id, run.workflow, errored,
                                        f"{definition.name}: instance {instance.id}")
            data = audit.to_json_data(_final_data(run.workflow))
            return reporting.instance_report(summary, events, verification, drawing, data, clock.db_now())

    def process_report(self, process_id: str, since: str | datetime | None = None,
                       until: str | datetime | None = None, period: str | None = None,
                       override: str | None = None) -> dict[str, Any]:
        """One process over a period: instances started in it, cycle times of those completed, time per step,
        overrides (with `override`), late tasks, duty refusals and administrative acts of the period, and the
        findings open now (instances in error or suspended, overdue tasks, chains that fail verification)."""
        import itertools
        from datetime import timedelta

        from pmoflow.engine import report as reporting
        from pmoflow.engine.models import Event

        if since is None and period is None:
            raise InvalidInput("give the period: --since DATE (and --until DATE), or --period 2027-Q1")
        now = clock.db_now()
        filters = self._audit_filters(process=process_id, since=since, until=until, period=period,
                                      override=override)
        filters.until = filters.until or now + timedelta(microseconds=1)
        self.db.check_schema()
        with self._tx() as session:
            audit.check_filters(session, filters)
            latest = session.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                                    .order_by(ProcessDefinition.version.desc()).limit(1))
            rows = list(session.scalars(select(ProcessInstance).where(
                ProcessInstance.process_id == process_id, ProcessInstance.started_at >= filters.since,
                ProcessInstance.started_at < filters.until).order_by(ProcessInstance.id)))
            ids = [i.id for i in rows]
            completions: dict[int, str] = {}
            steps: list[dict[str, Any]] = []
            for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
                events = list(session.scalars(select(Event).where(
                    Event.instance_id.in_(chunk), Event.type.like("task_%")
                    | (Event.type == "instance_completed")).order_by(Event.instance_id, Event.seq)))
                for instance_id, group in itertools.groupby(events, key=lambda e: e.instance_id):
                    views = [audit.export_view(e) for e in group]
                    for view in views:
                        if view["type"] == "instance_completed":
                            completions[instance_id] = view["at"]
                    steps += reporting.steps_of(views, now)

            def period_events(**extra: Any) -> list[Event]:
                return audit.query(session, audit.Filters(process=process_id, since=filters.since,
                                                          until=filters.until, **extra))

            late = []
            for e in period_events(late=True):
                due = session.scalar(select(Event.payload).where(
                    Event.instance_id == e.instance_id, Event.type == "task_ready",
                    Event.seq < e.seq, Event.task_bpmn_id == e.task_bpmn_id)
                    .order_by(Event.seq.desc()).limit(1)) or {}
                due_at = audit.parse_moment(due["due"], "due") if due.get("due") else None
                late.append({"instance_id": e.instance_id, "name": e.task_name or e.task_bpmn_id,
                             "due": due.get("due"), "completed_at": clock.as_utc(e.at).isoformat(),
                             "completed_by": e.actor,
                             "late_seconds": (e.at - due_at).total_seconds() if due_at else None})
            for row in audit.open_tasks_overdue(session, now, process_id):
                late.append({"instance_id": row.instance_id, "name": row.name,
                             "due": clock.as_utc(row.due).isoformat(), "completed_at": None, "completed_by": None,
                             "late_seconds": (now - row.due).total_seconds()})
            overrides = None
            if override:
                submitted_path, recommended_path = audit.parse_override(override)
                overrides = [{"instance_id": e.instance_id, "seq": e.seq, "at": clock.as_utc(e.at).isoformat(),
                              "actor": e.actor, "task": e.task_name or e.task_bpmn_id,
                              "submitted": f"{submitted_path}={self._at_path(e.payload, submitted_path)}",
                              "recommended": f"{recommended_path}={self._latest_fact(session, e, recommended_path)}"}
                             for e in period_events(override=override)]
            refusals = [{"instance_id": e.instance_id, "seq": e.seq, "at": clock.as_utc(e.at).isoformat(),
                         "actor": e.actor, "task": e.task_name or e.task_bpmn_id, "rule": e.payload.get("rule")}
                        for e in period_events(types=("duty_refused",))]
            admin = [{"instance_id": e.instance_id, "seq": e.seq, "at": clock.as_utc(e.at).isoformat(),
                      "actor": e.actor, "type": e.type, "reason": e.payload.get("reason"),
                      "before": e.payload.get("before"), "after": e.payload.get("after")}
                     for e in period_events(types=audit.ADMIN_TYPES)]
            findings = [{"instance_id": i.id, "kind": i.status,
                         "detail": (i.error or {}).get("message") if i.status == "error" else
                         f"suspended since {clock.as_utc(i.updated_at).isoformat()}"}
                        for i in session.scalars(select(ProcessInstance).where(
                            ProcessInstance.process_id == process_id,
                            ProcessInstance.status.in_(("error", "suspended"))).order_by(ProcessInstance.id))]
            findings += [{"instance_id": t["instance_id"], "kind": "overdue task",
                          "detail": f"{t['name']} was due {t['due']}"} for t in late if t["completed_at"] is None]
            findings += [{"instance_id": f["instance_id"], "kind": "record altered",
                          "detail": f"{f['stream']} (seq {f['seq']}): {f['problem']}"}
                         for f in audit.check(session, process_id=process_id)]
            process = {"process_id": process_id, "name": latest.name if latest else process_id,
                       "latest_version": latest.version if latest else None}
            period_view = {"since": clock.as_utc(filters.since).isoformat(),
                           "until": clock.as_utc(filters.until).isoformat()}
            return reporting.process_report(process, period_view, [instance_view(i) for i in rows], completions,
                                            steps, overrides, override, late, refusals, admin, findings, now)

    @staticmethod
    def _at_path(payload: Any, path: str) -> Any:
        """The value at a payload path like `data.gateDecision` (None when absent)."""
        value = payload
        for name in path.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        return value

    @staticmethod
    def _latest_fact(session: Session, event: Any, path: str) -> str | None:
        """The latest value of an indexed payload path before `event` in its instance (an override's
        recommendation)."""
        from pmoflow.engine.models import Event, EventFact

        return session.scalar(select(EventFact.value).join(Event, Event.id == EventFact.event_id).where(
            EventFact.key == path, Event.instance_id == event.instance_id, Event.seq < event.seq)
            .order_by(Event.seq.desc()).limit(1))

    # -- administrative acts: each recorded with the data before and after ----------------------------

    def _admin_target(self, session: Session, instance_id: int | str, allowed: tuple[str, ...],
                      act: str) -> tuple[User, ProcessInstance]:
        actor = self._actor(session)
        instance = self._instance(session, instance_id)
        if instance.status not in allowed:
            words = ["in error" if s == "error" else s for s in (*allowed, instance.status)]
            kinds = ", ".join(words[:-2]) + (" or " if len(allowed) > 1 else "") + words[-2]
            raise Conflict(f"instance {instance.id} is {words[-1]}; it can be {act} only when {kinds}")
        return actor, instance

    def _open_rows(self, session: Session, instance: ProcessInstance) -> list[dict[str, Any]]:
        return [{"task_id": t.id, "bpmn_id": t.bpmn_id, "name": t.name, "assignee": t.assignee}
                for t in session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                                 HumanTask.state == "ready").order_by(HumanTask.id))]

    def suspend(self, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
        """Hold an instance: its tasks cannot be completed, claimed or delegated and the worker leaves its timers
        until it is resumed (overdue timers then fire on the worker's next pass)."""
        self.db.check_schema()
        with self._tx() as session:
            actor, instance = self._admin_target(session, instance_id, ("running", "waiting", "error"), "suspended")
            before = {"status": instance.status, "open_tasks": self._open_rows(session, instance),
                      "next_due": clock.as_utc(instance.next_due).isoformat() if instance.next_due else None}
            audit.InstanceLog(session, instance, actor.name).add(
                "suspend", reason=reason, before=before, after={"status": "suspended"})
            instance.status, instance.updated_at = "suspended", clock.db_now()
            session.flush()
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error}

    def resume(self, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
        """Release a suspended instance: back to error if it was in error, else running (open tasks) or waiting."""
        self.db.check_schema()
        with self._tx() as session:
            actor, instance = self._admin_target(session, instance_id, ("suspended",), "resumed")
            status = "error" if instance.error else ("running" if self._open_rows(session, instance) else "waiting")
            audit.InstanceLog(session, instance, actor.name).add(
                "resume", reason=reason, before={"status": "suspended"}, after={"status": status})
            instance.status, instance.updated_at = status, clock.db_now()
            session.flush()
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error}

    def terminate(self, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
        """End an unfinished instance for good: the workflow and its open tasks are cancelled."""
        self.db.check_schema()
        with self._tx() as session:
            actor, instance = self._admin_target(session, instance_id, ("running", "waiting", "error", "suspended"),
                                                 "terminated")
            run = self._run(session, instance, actor.name)
            open_tasks = self._open_rows(session, instance)
            before = {"status": instance.status, "error": instance.error, "open_tasks": open_tasks,
                      "data": audit.to_json_data(_final_data(run.workflow))}
            run.log.add("terminate", reason=reason, before=before,
                        after={"status": "terminated", "cancelled_tasks": [t["task_id"] for t in open_tasks]})
            run.workflow.cancel()
            instance.status = "terminated"
            run.sync_tasks()
            run.save()
            instance.status, instance.next_due, instance.error = "terminated", None, None
            session.flush()
            return {"instance_id": instance.id, "status": instance.status, "error": None}

    def skip(self, instance_id: int | str, data: dict[str, Any] | None = None,
             reason: str | None = None) -> dict[str, Any]:
        """Mark the failed task of an instance in error as done without running it, with `data` as its
        result, and run the instance on. A gateway cannot be skipped (it would take every way): retry it."""
        from SpiffWorkflow.bpmn.specs.defaults import EventBasedGateway, ExclusiveGateway, InclusiveGateway
        from SpiffWorkflow.exceptions import SpiffWorkflowException

        data = _require_object(data or {})
        self.db.check_schema()
        with self._tx() as session:
            actor, instance = self._admin_target(session, instance_id, ("error",), "skipped")
            run = self._run(session, instance, actor.name)
            failed = runtime.find_task(run.workflow, (instance.error or {}).get("task_id") or "")
            if failed is None:
                raise Conflict(f"the failed task of instance {instance.id} is gone; it cannot be skipped")
            spec = failed.task_spec
            if isinstance(spec, ExclusiveGateway | InclusiveGateway | EventBasedGateway):
                raise Conflict(f"the failed element {spec.bpmn_id} is a gateway: skipping it cannot choose the way "
                               f"on; correct the data with 'pmoflow retry {instance.id} --data ...'")
            before = {"status": "error", "error": instance.error, "data": audit.to_json_data(failed.data)}
            try:
                run.workflow.reset_from_task_id(failed.id)
            except SpiffWorkflowException as exc:
                raise Conflict(f"the failed task of instance {instance.id} cannot be skipped: {exc}") from None
            failed.data.update(data)
            run.log.add("skip", task=runtime._TaskRef(spec.bpmn_id, spec.bpmn_name), reason=reason, before=before,
                        after={"status": "running", "data": audit.to_json_data(failed.data)})
            instance.status, instance.error = "running", None
            try:
                failed.complete()
            except SpiffWorkflowException as exc:
                run._fail(exc)
            self._advance(run)
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error}

    def edit_data(self, instance_id: int | str, values: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        """An administrative change of the data the instance is at (its open tasks, waiting events and running
        subprocesses), recorded with each field's value before and after. For an instance in error, correct the
        data with retry or skip instead: the failed task re-reads its data from the step before it."""
        from SpiffWorkflow.util.task import TaskState

        values = _require_object(values)
        if not values:
            raise InvalidInput("nothing to set: give a JSON object of the fields to change, like {\"budget\": 100}")
        routing = sorted(set(values) & ROUTING_KEYS)
        if routing:
            raise InvalidInput(f"{', '.join(routing)} route tasks as they become ready; changing them now would not "
                               "re-route the open tasks: delegate the task instead")
        self.db.check_schema()
        with self._tx() as session:
            actor, instance = self._admin_target(session, instance_id, ("running", "waiting", "suspended", "error"),
                                                 "edited")
            if instance.error:
                raise Conflict(f"instance {instance.id} is in error: correct its data with 'pmoflow retry "
                               f"{instance.id} --data ...' or 'pmoflow skip {instance.id} --data ...'")
            run = self._run(session, instance, actor.name)
            at = [t for wf in run.workflow.all_workflows() for t in wf.tasks.values()
                  if t.has_state(TaskState.READY | TaskState.WAITING | TaskState.STARTED)]
            if not at:
                raise Conflict(f"instance {instance.id} is at no task whose data could be changed")
            before = {}
            for key in values:
                holder = next((t for t in at if key in t.data), None)
                if holder is not None:
                    before[key] = audit.to_json_data(holder.data[key])
            for task in at:
                task.data.update(audit.to_json_data(values))
            names = sorted({t.task_spec.bpmn_id for t in at if getattr(t.task_spec, "bpmn_id", None)})
            run.log.add("data_edit", reason=reason, tasks=names, before=before, after=audit.to_json_data(values))
            instance.state = serialization.dump_state(run.workflow)
            instance.updated_at = clock.db_now()
            session.flush()
            return {"instance_id": instance.id, "status": instance.status, "tasks": names, "before": before,
                    "after": values}

    # -- repair and timers ----------------------------------------------------------------------------

    def retry(self, instance_id: int | str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Re-run the failed task of an instance in error, optionally with corrected data."""
        data = _require_object(data or {})
        serialization.check_data(data)
        self.db.check_schema()
        with self._tx() as session:
            actor = self._actor(session)
            instance = self._instance(session, instance_id)
            if instance.status != "error" or not instance.error:
                raise Conflict(f"instance {instance.id} is {instance.status}, not in error: nothing to retry")
            run = self._run(session, instance, actor.name)
            failed = runtime.find_task(run.workflow, instance.error.get("task_id") or "")
            if failed is None:
                raise Conflict(f"the failed task of instance {instance.id} is gone; it cannot be retried")
            inherited = failed.parent.data if failed.parent is not None else failed.data
            before = {"status": instance.status, "error": instance.error, "data": audit.to_json_data(failed.data)}
            after = {"status": "running", "data": audit.to_json_data({**inherited, **data})}  # what it re-runs with
            run.log.add("retry", task=runtime._TaskRef(failed.task_spec.bpmn_id, failed.task_spec.bpmn_name),
                        previous_error=instance.error, data=data, before=before, after=after)
            instance.status, instance.error = "running", None
            run.reset_to(failed, data)
            self._finish(run)
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error}

    def run_due(self, now: datetime | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Fire every timer due at `now` (default: the real time), one instance per transaction, row-locked
        (SKIP LOCKED) so several workers share the work; then start an instance for each occurrence of a timer
        start event due by then (`started`). `should_stop` is asked between instances and occurrences."""
        self.db.check_schema()
        fired, failed, started = [], [], []
        stop = should_stop or (lambda: False)
        with clock.frozen(now):
            cutoff = clock.db_now()
            with self._tx() as session:
                due = list(session.scalars(select(ProcessInstance.id).where(
                    ProcessInstance.status.in_(("running", "waiting")), ProcessInstance.next_due <= cutoff)
                    .order_by(ProcessInstance.next_due)))
            for instance_id in due:
                if stop():
                    break
                result = self._fire(instance_id, cutoff)
                if result is not None:
                    (failed if result == "error" else fired).append(instance_id)
            for instance_id, status in self._start_due(cutoff, stop):
                started.append(instance_id)
                if status == "error":
                    failed.append(instance_id)
        return {"now": clock.as_utc(cutoff).isoformat(), "fired": fired, "errors": failed, "started": started}

    def _start_due(self, cutoff: datetime, stop: Callable[[], bool]) -> Iterator[tuple[int, str]]:
        """Each due occurrence of each schedule, oldest first: a worker that was down for three years starts
        a yearly process three times, once per occurrence missed."""
        with self._tx() as session:
            due = list(session.scalars(select(ProcessSchedule.id).where(ProcessSchedule.next_due <= cutoff)
                                       .order_by(ProcessSchedule.next_due, ProcessSchedule.id)))
        for schedule_id in due:
            while not stop():
                result = self._fire_schedule(schedule_id, cutoff)
                if result is None:
                    break  # no longer due, or another worker holds it (and will see to its next occurrence)
                yield result

    def _fire_schedule(self, schedule_id: int, cutoff: datetime) -> tuple[int, str] | None:
        """Start the instance for a schedule's next due occurrence and advance the schedule, in one transaction
        under the schedule's row lock, so no occurrence starts twice however many workers race for it."""
        with self._tx() as session:
            schedule = session.scalar(select(ProcessSchedule).where(ProcessSchedule.id == schedule_id)
                                      .with_for_update(skip_locked=True))
            if schedule is None or schedule.next_due is None or schedule.next_due > cutoff:
                return None
            definition = session.get(ProcessDefinition, schedule.definition_id)
            due = clock.as_utc(schedule.next_due).isoformat()
            instance = self._new_instance(session, definition, schedule.owner)
            run = runtime.Run.new(session, instance, definition, schedule.owner, self.handlers, {},
                                  start_event=schedule.bpmn_id)
            run.log.add("instance_started", data={}, version=definition.version, business_key=None,
                        by_timer=schedule.bpmn_id, expression=schedule.expression, due=due,
                        occurrence=schedule.fired + 1, process=runtime.PROCESS_NAME())
            run.fire_start_timer(due)
            self._finish(run)
            timing = start_timers.after(schedule.process_id, schedule.bpmn_id, schedule.expression,
                                        start_timers.Timing(schedule.next_due, schedule.remaining))
            schedule.next_due, schedule.remaining = timing.next_due, timing.remaining
            schedule.fired += 1
            return instance.id, instance.status

    def schedules(self) -> list[dict[str, Any]]:
        """The timer start events of deployed processes: when each next starts an instance, and how often it has."""
        self.db.check_schema()
        with self._tx() as session:
            rows = session.execute(select(ProcessSchedule, ProcessDefinition.version)
                                   .join(ProcessDefinition, ProcessDefinition.id == ProcessSchedule.definition_id)
                                   .order_by(ProcessSchedule.process_id, ProcessSchedule.bpmn_id)).all()
            return [start_timers.view(schedule, version) for schedule, version in rows]

    def _fire(self, instance_id: int, cutoff: datetime) -> str | None:
        with self._tx() as session:
            instance = session.scalar(select(ProcessInstance).where(ProcessInstance.id == instance_id)
                                      .with_for_update(skip_locked=True))
            if instance is None or instance.next_due is None or instance.next_due > cutoff \
                    or instance.status not in ("running", "waiting"):
                return None  # another worker took it, or it is no longer due
            run = self._run(session, instance, WORKER)
            run.catch_up(cutoff)
            self._finish(run)
            return instance.status


class DutyRefused(PermissionDenied):
    """A segregation-of-duties refusal, carrying what the audit record needs."""

    def __init__(self, message: str, instance_id: int, task_id: int, actor: str, rule: str) -> None:
        super().__init__(message)
        self.instance_id, self.task_id, self.actor, self.rule = instance_id, task_id, actor, rule


def bpmn_source(definition: ProcessDefinition, process_id: str) -> str:
    """The stored BPMN file that defines the process."""
    for name, text in definition.sources.items():
        if name.endswith(".bpmn") and f'id="{process_id}"' in text:
            return text
    raise NotFound(f"the BPMN source of {process_id} v{definition.version} is not stored")


def _final_data(workflow) -> dict[str, Any]:
    task = workflow.last_task
    if workflow.is_completed():
        ends = [t for t in workflow.tasks.values() if t.task_spec.name == "End"]
        task = ends[0] if ends else task
    return dict(task.data) if task is not None else {}


ROUTING_KEYS = {"lane_owners", "lane_roles"}


def _require_object(data: Any) -> dict[str, Any]:
    """Every piece of submitted data: a JSON object SpiffWorkflow can store and load back, whose keys
    neither hide the script helpers nor start with an underscore (scripts could not see them)."""
    if not isinstance(data, dict):
        raise InvalidInput("the data must be a JSON object, like {\"field\": \"value\"}")
    serialization.check_data(data)
    bad = sorted(k for k in data if k.startswith("_") or k in SCRIPT_HELPERS)
    if bad:
        raise InvalidInput(f"these field names are reserved (script helpers, or a leading underscore): "
                           f"{', '.join(bad)}; rename them")
    return data


def _only_declared(data: dict[str, Any], schema: dict[str, Any] | None, form: str | None) -> None:
    """Submitted data may carry only what the form asks for: anything else could rewrite the keys a
    process routes with (lane_owners, lane_roles, approval queues...). Without a form, routing keys are
    refused."""
    if schema is None:
        extra = sorted(set(data) & ROUTING_KEYS)
        where = "a task without a form"
    else:
        extra = sorted(set(data) - set(schema.get("properties", {})))
        where = f"form {form}"
    if extra:
        raise InvalidInput(f"{where} does not ask for: {', '.join(extra)}; remove these fields")


def _int_id(value: int | str, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise NotFound(f"no {what} {value!r}: {what} ids are numbers") from None
    if not 0 < number < 2**31:
        raise NotFound(f"no {what} {value}")
    return number
