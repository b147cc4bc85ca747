"""The Python API: everything pmoflow does, one method per command. The CLI is a thin layer over this."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pmoflow.engine import audit, clock, forms, organisation, parser, runtime, scenario, serialization
from pmoflow.engine.database import Database
from pmoflow.engine.diagram import render_svg
from pmoflow.engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from pmoflow.engine.models import (
    HumanTask,
    ProcessDefinition,
    ProcessInstance,
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
        """Parse and check files without storing anything; raises InvalidProcess listing every problem."""
        parsed = parser.parse(paths, handlers=set(self.handlers), form_dirs=self.form_dirs)
        return [{"process_id": p.process_id, "name": p.name, "files": sorted(p.sources)} for p in parsed]

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
        audit.add_definition_event(session, process.process_id, definition.version, actor, "deployed",
                                   content_hash=digest, files=sorted(process.sources))
        return {**definition_view(definition), "created": True}

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
            now = clock.db_now()
            instance = ProcessInstance(definition_id=definition.id, process_id=process_id, version=definition.version,
                                       status="running", business_key=business_key, started_by=actor.name,
                                       started_at=now, updated_at=now, state="")
            session.add(instance)
            session.flush()
            run = runtime.Run.new(session, instance, definition, actor.name, self.handlers, data)
            run.log.add("instance_started", data=data, version=definition.version, business_key=business_key)
            self._advance(run)
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error,
                    "process_id": process_id, "version": definition.version}

    def _advance(self, run: runtime.Run) -> None:
        run.advance()
        self._finish(run)

    def _finish(self, run: runtime.Run) -> None:
        run.sync_tasks()
        run.save()
        if run.instance.status == "completed":
            run.log.add("instance_completed", data=_final_data(run.workflow))
            run.session.flush()

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
                    "tasks": [task_view(t) for t in tasks]}

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
            run.sync_tasks()
            run.save()
            if instance.status == "completed":
                run.log.add("instance_completed", data=_final_data(run.workflow))
            return {"task_id": row.id, "instance_id": instance.id, "status": instance.status,
                    "error": instance.error}

    def _check_duties(self, session: Session, row: HumanTask, spiff_task, user: User,
                      instance: ProcessInstance) -> list[dict[str, Any]]:
        """Segregation of duties declared on the task: its performer must differ from the named others."""
        checks = []
        for rule in runtime.duty_rules(spiff_task):
            if rule == "starter":
                others = {instance.started_by}
            else:
                others = set(session.scalars(select(HumanTask.completed_by).where(
                    HumanTask.instance_id == instance.id, HumanTask.bpmn_id == rule,
                    HumanTask.state == "completed")))
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
            run.log.add("retry", task=runtime._TaskRef(failed.task_spec.bpmn_id, failed.task_spec.bpmn_name),
                        previous_error=instance.error, data=data)
            instance.status, instance.error = "running", None
            run.reset_to(failed, data)
            self._finish(run)
            return {"instance_id": instance.id, "status": instance.status, "error": instance.error}

    def run_due(self, now: datetime | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Fire every timer due at `now` (default: the real time), one instance per transaction, row-locked
        (SKIP LOCKED) so several workers share the work; `should_stop` is asked between instances."""
        self.db.check_schema()
        fired, failed = [], []
        with clock.frozen(now):
            cutoff = clock.db_now()
            with self._tx() as session:
                due = list(session.scalars(select(ProcessInstance.id).where(
                    ProcessInstance.status.in_(("running", "waiting")), ProcessInstance.next_due <= cutoff)
                    .order_by(ProcessInstance.next_due)))
            for instance_id in due:
                if should_stop is not None and should_stop():
                    break
                result = self._fire(instance_id, cutoff)
                if result is not None:
                    (failed if result == "error" else fired).append(instance_id)
        return {"now": clock.as_utc(cutoff).isoformat(), "fired": fired, "errors": failed}

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
