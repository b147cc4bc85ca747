"""The loop around SpiffWorkflow: load an instance, run it to its next wait state, project and save it.

Everything here runs inside the caller's transaction; nothing commits on its own.
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent, ExclusiveGateway, InclusiveGateway, StartEvent
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import CycleTimerEventDefinition, TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.dmn.specs.business_rule_task_mixin import BusinessRuleTaskMixin
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.specs.mixins.service_task import ServiceTask
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from pmoflow.engine import clock, forms, limits, messaging, serialization
from pmoflow.engine.audit import InstanceLog
from pmoflow.engine.errors import InstanceError, InvalidInput, PmoflowError
from pmoflow.engine.models import HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate
from pmoflow.engine.notifications import record as record_notifications
from pmoflow.engine.scripting import Handler, SandboxScriptEngine, check_fan_out
from pmoflow.engine.workflow import PmoflowWorkflow

MAX_STEPS_ENV = "PMOFLOW_MAX_ENGINE_STEPS"
DEFAULT_MAX_STEPS = 10_000


def max_engine_steps() -> int:
    """How many engine steps an instance may take in a row without waiting (PMOFLOW_MAX_ENGINE_STEPS)."""
    try:
        return max(1, int(os.environ.get(MAX_STEPS_ENV, DEFAULT_MAX_STEPS)))
    except ValueError:
        return DEFAULT_MAX_STEPS


class _OwnFailure(Exception):
    """pmoflow's own bookkeeping failed during an engine step: carried through SpiffWorkflow untouched."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class StateUnusable(InstanceError):
    """An instance whose state cannot be loaded or saved: the command rolls back; the worker marks the instance
    in error (`put_in_error`) and goes on."""


class LruCache(OrderedDict):
    """A bounded map that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# Deserialized workflows kept between commands in this process, keyed by database and instance id and valid
# only for the lock version they were saved at: a command that finds the row at another version reloads it.
_CACHE = LruCache(256)
_SPECS = LruCache(64)


def _db_key(session) -> str:
    return session.bind.url.render_as_string(hide_password=False)


def specs_of(session, definition: ProcessDefinition) -> serialization.Specs:
    """A definition's specs, restored once per process (they never change once deployed)."""
    key = (_db_key(session), definition.id, definition.content_hash)
    specs = _SPECS.get(key)
    if specs is None:
        specs = serialization.load_specs(definition.spec)
        _SPECS.put(key, specs)
    return specs


class Run:
    """One command's work on one instance: the workflow, its audit log and what changed."""

    def __init__(self, session, instance: ProcessInstance, definition: ProcessDefinition, actor: str,
                 handlers: Mapping[str, Handler], workflow: BpmnWorkflow | None = None) -> None:
        self.session, self.instance, self.definition, self.actor = session, instance, definition, actor
        self.instance_id = instance.id
        self.cache_key = (_db_key(session), instance.id)
        self.log = InstanceLog(session, instance, actor)
        self.engine = SandboxScriptEngine(handlers, helpers={"process_initiator": lambda: instance.started_by,
                                                             "task_performer": self._performer})
        self.workflow = workflow or self._load()
        self.workflow.script_engine = self.engine
        self.completed_ids: set[str] = set()
        self.steps, self._current = 0, None
        self.outbox: list[messaging.Message] = []  # messages sent to other instances, delivered by the caller
        self.start_due: str | None = None
        session.info.setdefault("runs", []).append(self)

    def _performer(self, bpmn_id: str) -> str | None:
        """`task_performer("plan")` in scripts: who last completed the human task `plan` of this instance."""
        return self.session.scalar(select(HumanTask.completed_by).where(
            HumanTask.instance_id == self.instance_id, HumanTask.bpmn_id == bpmn_id,
            HumanTask.completed_by.is_not(None)).order_by(HumanTask.completed_at.desc(), HumanTask.id.desc()).limit(1))

    @classmethod
    def new(cls, session, instance, definition, actor, handlers, data: dict[str, Any],
            start_event: str | None = None) -> Run:
        """A new workflow; `start_event` enters it through that start event only (a message or timer start),
        cancelling the others so a none start event does not run beside it."""
        spec, subprocess_specs = specs_of(session, definition)
        workflow = PmoflowWorkflow(spec, subprocess_specs)
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data.update(data)
        if start_event is not None:
            _enter_at(workflow, start_event)
        return cls(session, instance, definition, actor, handlers, workflow)

    @classmethod
    def for_instance(cls, session, instance, definition, actor, handlers) -> Run:
        """The run this transaction already has for the instance (a reply reaching its sender), or a new one."""
        for run in session.info.get("runs", []):
            if run.instance_id == instance.id:
                return run
        return cls(session, instance, definition, actor, handlers)

    def _load(self) -> BpmnWorkflow:
        cached = _CACHE.pop(self.cache_key, None)
        if cached and cached[0] == self.instance.lock_version:
            return cached[1]
        try:
            return serialization.load_state(self.instance.state, specs_of(self.session, self.definition))
        except SQLAlchemyError:
            raise
        except Exception as exc:  # noqa: BLE001 (corrupt or foreign JSON, a type the registry does not know ...)
            raise StateUnusable(f"instance {self.instance_id}: its stored state cannot be loaded "
                                f"({type(exc).__name__}: {exc})") from exc

    # -- running --------------------------------------------------------------------------------------

    def advance(self) -> None:
        """Run engine steps until only human tasks, timers or messages remain; record what happened."""
        self.steps = 0  # engine steps since the instance last waited (for a person, a timer or a message)
        self._attempt(lambda: (self.workflow.refresh_timers(), self.workflow.do_engine_steps(
            will_complete_task=self._engine_task_starting, did_complete_task=self._engine_task_done)))
        self._collect_messages(self.workflow.last_task)
        self._guard_completion()

    def receive(self, message: messaging.Message) -> None:
        """Catch a message from another instance (or from outside) and run on."""
        task = messaging.waiting_task(self.workflow, message)
        messaging.check_payload(task.task_spec, message, self.definition.sources)
        event = messaging.event_for(task, message, self.engine.environment.evaluate)
        try:
            self.workflow.send_event(event)
        except SpiffWorkflowException as exc:
            raise messaging.MessageUnmatched(f"{message.describe()}: instance {self.instance_id} "
                                             f"did not take it ({_message(exc)})") from None
        self.log.add("message_received", task=_TaskRef(task.task_spec.bpmn_id, task.task_spec.bpmn_name),
                     **message.record(), from_instance=message.sender_instance, from_task=message.sender_bpmn_id)
        self._current = task  # a collection the payload brings is checked before the task after it fans out
        if self._attempt(lambda: check_fan_out(task, messaging.landed(task, event))):
            self.advance()

    def fire_start_timer(self, due: str) -> None:
        """Enter through the timer start event now, its schedule having come due. The schedule repeats a
        cycle by starting new instances, so a cycle start event fires once here instead of waiting in this
        instance for its next round."""
        self.start_due = due  # what the timer_fired record gives as due: the schedule's, not SpiffWorkflow's
        for task in self.workflow.get_tasks(state=TaskState.WAITING):
            if isinstance(getattr(task.task_spec, "event_definition", None), CycleTimerEventDefinition):
                task.internal_data["event_value"] = {"cycles": 1, "next": clock.timer_now().isoformat(),
                                                     "duration": 0.0}
        with clock.timers_at(datetime.max.replace(tzinfo=UTC) - timedelta(days=1)):
            fired = self._attempt(lambda: (self.workflow.refresh_timers(),
                                           self.workflow.refresh_timers()))  # a fired cycle completes on the next
        if fired:
            self.advance()

    def fail_send(self, message: messaging.Message, refusal: Exception) -> None:
        """A message that could not be delivered puts its sender in error at the task that sent it, so a
        retry sends it again."""
        task = find_task(self.workflow, message.sender_task or "")
        spec = task.task_spec if task is not None else None
        self._record_error({"message": str(refusal), "type": type(refusal).__name__, "task_id": message.sender_task,
                            "bpmn_id": getattr(spec, "bpmn_id", None), "task_name": getattr(spec, "bpmn_name", None),
                            "line": None, "line_text": ""})

    def catch_up(self, cutoff: datetime) -> None:
        """Fire every timer due by `cutoff` in the order they came due, each as of its own due time, so a
        reminder due on day 5 still fires before an escalation due on day 10 that cancels its task."""
        previous = None
        while self.instance.status != "error":
            due = next_due(self.workflow)
            if due is None or due > cutoff or due == previous:
                break
            previous = due
            with clock.timers_at(due + timedelta(microseconds=1)):
                self.advance()
        self.advance()

    def reset_to(self, task: Task, data: dict[str, Any]) -> None:
        """Retry: rewind to a failed task, apply corrected data, and run on."""
        parent, recorded = task.parent, task.parent.data
        parent.data = {**recorded, **data}  # the reset re-inherits (and may re-evaluate) the parent's data
        try:
            reset = self._attempt(lambda: (self.workflow.reset_from_task_id(task.id), task.data.update(data)))
        finally:
            parent.data = recorded  # what the earlier task recorded stays as it was
        if reset:
            self.advance()

    def complete_human_task(self, spiff_task: Task, data: dict[str, Any]) -> None:
        spiff_task.data.update(forms.landing(spiff_task.task_spec, data))
        self.completed_ids.add(str(spiff_task.id))
        self._current = spiff_task
        try:
            check_fan_out(spiff_task)
        except WorkflowTaskException as exc:  # submitted data: refused, nothing changed
            raise InvalidInput(str(exc)) from None
        if self._attempt(spiff_task.run):
            self.advance()

    def _attempt(self, step: Callable[[], Any]) -> bool:
        """Take a step of the workflow. Whatever model code, SpiffWorkflow or a limit raised puts the instance in
        error at the task it happened in (False), so no script can crash a command or stop the worker; errors
        of the database and pmoflow's own refusals are not the instance's, and propagate."""
        try:
            step()
            return True
        except (SQLAlchemyError, PmoflowError):
            raise
        except _OwnFailure as failure:
            raise failure.original from None
        except (WorkflowTaskException, SpiffWorkflowException) as exc:
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 (an OverflowError of a far timer, a RecursionError ...)
            task = _raising_task(exc) or self._current  # (a WorkflowTaskException needs a task)
            self._fail(WorkflowTaskException(f"{type(exc).__name__}: {exc}", task=task, exception=exc)
                       if task is not None else exc)
        return False

    def _engine_task_starting(self, task: Task) -> None:
        """Count engine steps: a cycle of gateways and scripts that never waits is an error, not a hang."""
        self._current = task
        check_fan_out(task)
        self.steps += 1
        limit = max_engine_steps()
        if self.steps > limit:
            raise WorkflowTaskException(
                f"more than {limit:,} engine steps in a row without waiting for a person, a timer or a message: "
                f"is there an endless loop? (set {MAX_STEPS_ENV} to change the limit)", task=task)

    def _fail(self, exc: Exception) -> None:
        task = getattr(exc, "task", None)
        spec = task.task_spec if task is not None else None
        self._record_error({
            "message": _message(exc),
            "type": getattr(exc, "error_type", "") or type(getattr(exc, "exception", None) or exc).__name__,
            "task_id": str(task.id) if task is not None else None,
            "bpmn_id": getattr(spec, "bpmn_id", None), "task_name": getattr(spec, "bpmn_name", None),
            "line": getattr(exc, "line_number", None) or None, "line_text": getattr(exc, "error_line", "") or "",
        })

    def _record_error(self, error: dict[str, Any]) -> None:
        self.instance.error = error
        self.instance.status = "error"
        self.log.add("error", task=_TaskRef(error["bpmn_id"], error["task_name"]), **error)

    def _guard_completion(self) -> None:
        wf = self.workflow
        if wf.is_completed() and wf.has_open_tasks():
            raise InstanceError("SpiffWorkflow reported the instance complete with tasks still open; "
                                "nothing was saved (report this: it is the engine's depth-limit trap)")

    def _collect_messages(self, task: Task | None) -> None:
        """Take the messages the workflow threw that nothing inside it caught: they go to other instances."""
        events = self.workflow.bpmn_events
        if not events or task is None:
            return
        mine = [e for e in events if isinstance(e.event_definition, MessageEventDefinition)]
        self.workflow.bpmn_events = [e for e in events if e not in mine]
        self.outbox.extend(messaging.Message.thrown(e, task, self.instance_id, self.actor) for e in mine)

    def _engine_task_done(self, task: Task) -> None:
        """Record a finished engine step. A failure of this bookkeeping (the audit store, the outbox) is the
        command's, not the instance's: it must roll the command back, so `_attempt` lets it through."""
        try:
            self._record_step(task)
        except WorkflowTaskException:
            raise  # a decision that matched no rule: the model's error
        except Exception as exc:
            raise _OwnFailure(exc) from exc

    def _record_step(self, task: Task) -> None:
        self._collect_messages(task)
        spec = task.task_spec
        ref = _TaskRef(getattr(spec, "bpmn_id", None), getattr(spec, "bpmn_name", None))
        if isinstance(spec, BusinessRuleTaskMixin):
            self._record_decision(task, ref)
        elif isinstance(spec, ServiceTask):
            self.log.add("service_called", task=ref, operator=spec.operation_name,
                         result_variable=spec.result_variable, result=task.data.get(spec.result_variable))
            record_notifications(self.session, self.instance, ref, task.data.get(spec.result_variable), self.log,
                                 task.workflow.spec.task_specs)
        elif isinstance(spec, ExclusiveGateway | InclusiveGateway):
            taken = [_visible_name(c) for c in task.children
                     if c.has_state(TaskState.DEFINITE_MASK | TaskState.FINISHED_MASK)]
            self.log.add("gateway", task=ref, taken=taken)
        elif isinstance(spec, CatchingEvent) and isinstance(spec.event_definition, TimerEventDefinition):
            due = self.start_due if isinstance(spec, StartEvent) and self.start_due else \
                task.internal_data.get("event_value")
            self.log.add("timer_fired", task=ref, due=due, process=PROCESS_NAME())

    def _record_decision(self, task: Task, ref: _TaskRef) -> None:
        engine = task.task_spec.dmnEngine
        table = engine.decision_table
        inputs = {}
        for item in table.inputs:
            try:
                inputs[item.label or item.expression] = self.engine.evaluate(task, item.expression)
            except Exception as exc:  # record what could not be read rather than hide the decision
                inputs[item.label or item.expression] = f"<error: {exc}>"
        rules = engine.decide(task)
        rules = rules if table.hit_policy == "COLLECT" else rules[:1]  # FIRST and UNIQUE: the row that fired
        outputs = {o.name or o.label: task.data.get(o.name or o.label) for o in table.outputs}
        matched = [{"id": r.id, "row": r.row_number, "description": r.description} for r in rules]
        self.log.add("decision", task=ref, decision=table.name or table.id, hit_policy=table.hit_policy,
                     inputs=inputs, outputs=outputs, matched_rules=matched)
        if not rules:
            raise WorkflowTaskException(f"decision table '{table.name or table.id}' matched no rule for inputs "
                                        f"{inputs}; add a default row", task=task)

    # -- projection and saving -----------------------------------------------------------------------

    def ready_human_tasks(self) -> list[Task]:
        return self.workflow.ready_manual_tasks()

    def sync_tasks(self, roles_of: Mapping[str, Any] | None = None) -> None:
        """Bring the human-task projection in step with the workflow."""
        open_rows = {row.spiff_task_id: row for row in self.session.scalars(
            select(HumanTask).where(HumanTask.instance_id == self.instance.id, HumanTask.state == "ready"))}
        now = clock.db_now()
        current = {str(t.id): t for t in self.ready_human_tasks()} if self.instance.status != "error" else {}
        for task_id, row in open_rows.items():
            if task_id not in current:
                row.state = "completed" if task_id in self.completed_ids else "cancelled"
                if row.state == "cancelled":
                    self.log.add("task_cancelled", task=row, task_id=row.id)
        if self.instance.status == "error":
            return
        for task_id, task in current.items():
            problem = None if task_id in open_rows else routing_problem(task, self.instance.started_by)
            if problem is not None:  # refused here: PostgreSQL would refuse the row at save, stranding the task
                spec = task.task_spec
                self._record_error({"message": problem, "type": "RoutingError", "task_id": task_id,
                                    "bpmn_id": spec.bpmn_id, "task_name": spec.bpmn_name, "line": None,
                                    "line_text": ""})
                return
        for task_id, task in current.items():
            if task_id in open_rows:
                continue
            row = self._new_row(task, now)
            self.session.add(row)
            self.session.flush()
            path = call_path(task)
            within: dict[str, Any] = {"within": path} if path else {}  # typed Any: it must not look like `actor`
            self.log.add("task_ready", task=row, task_id=row.id, lane=row.lane,
                         candidates=[f"{c.kind}:{c.name}" for c in row.candidates if c.kind != "excluded"],
                         excluded_by_duties=[c.name for c in row.candidates if c.kind == "excluded"],
                         due=clock.as_utc(row.due).isoformat() if row.due else None,
                         **within)

    def _new_row(self, task: Task, now: datetime) -> HumanTask:
        spec = task.task_spec
        props = (getattr(spec, "extensions", None) or {}).get("properties", {})
        row = HumanTask(
            instance_id=self.instance.id, process_id=self.instance.process_id, spiff_task_id=str(task.id),
            bpmn_id=spec.bpmn_id, name=spec.bpmn_name or spec.bpmn_id, lane=spec.lane,
            form=props.get("formJsonSchemaFilename"), instructions=_instructions(spec),
            due=_due(task), state="ready", created_at=now,
        )
        kind, names = candidates(task, self.instance.started_by)
        barred = self._barred_by_duties(task)
        row.candidates = [TaskCandidate(kind=kind, name=n) for n in names] + [
            TaskCandidate(kind="excluded", name=n) for n in sorted(barred - (set(names) if kind == "user" else set()))]
        return row

    def _barred_by_duties(self, task: Task) -> set[str]:
        """Who segregation of duties already keeps off this task, so inboxes do not offer it to them. The
        check at claim and completion stays the rule; this only keeps inboxes honest."""
        barred: set[str] = set()
        for rule in duty_rules(task):
            barred.update([self.instance.started_by] if rule == "starter" else
                          performers(self.session, self.instance.id, task, rule))
        return barred

    def save(self) -> None:
        inst, wf = self.instance, self.workflow
        if inst.status != "error":
            inst.error = None
            if wf.is_completed():
                inst.status = "completed"
            else:
                inst.status = "running" if self.ready_human_tasks() else "waiting"
        inst.next_due = None if inst.status in ("completed", "error") else next_due(wf)
        if catches_messages(self.session, self.definition):  # most processes never wait for one: no query
            messaging.sync_waits(self.session, inst, [] if inst.status == "completed" else messaging.waits_of(wf))
        try:
            inst.state = serialization.dump_state(wf)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # the command rolls back
            raise StateUnusable(f"instance {inst.id}: its state cannot be saved ({type(exc).__name__}: {exc}); "
                                f"nothing was changed") from exc
        inst.updated_at = clock.db_now()
        self.session.flush()  # bumps lock_version, or raises the optimistic-lock conflict



def after_commit(session) -> None:
    """Keep each workflow this transaction used for the next command on its instance in this process."""
    for run in session.info.pop("runs", []):
        _CACHE.put(run.cache_key, (run.instance.lock_version, run.workflow))


def after_rollback(session) -> None:
    """A workflow touched by a rolled-back transaction may hold changes that were never stored."""
    for run in session.info.pop("runs", []):
        _CACHE.pop(run.cache_key, None)


def put_in_error(session, instance: ProcessInstance, actor: str, exc: Exception) -> None:
    """Mark an instance that a command could not run at all (its state does not load, or running it failed in
    a way no task caught) as in error, without loading it: the worker passes it over from now on and goes on
    to the next. The caller's transaction is a fresh one: the failed one was rolled back."""
    _CACHE.pop((_db_key(session), instance.id), None)
    error = {"message": _message(exc), "type": type(exc).__name__, "task_id": None, "bpmn_id": None,
             "task_name": None, "line": None, "line_text": ""}
    instance.status, instance.error, instance.next_due = "error", error, None
    InstanceLog(session, instance, actor).add("error", task=_TaskRef(None, None), **error)
    session.flush()


def _message(exc: Exception) -> str:
    text = str(exc).splitlines()[0].strip().rstrip(".").strip() if str(exc) else type(exc).__name__
    text = text.replace(":", ": ", 1) if ": " not in text and ":" in text else text
    cause = getattr(exc, "exception", None) or exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


def _raising_task(exc: BaseException) -> Task | None:
    """The task whose spec raised a plain Python exception inside SpiffWorkflow (a TypeError on a multi-instance
    input that is not a list ...): the innermost frame holding a task. Such errors surface while the task
    before it completes (its children are updated then), so the task last started is the wrong one to blame."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("my_task")
        if isinstance(candidate, Task):
            found = candidate
        tb = tb.tb_next
    return found


def _visible_name(task: Task) -> str | None:
    """The designer's name for where a flow leads, looking through SpiffWorkflow's hidden helper tasks
    (a task with boundary events is reached through an unnamed split)."""
    spec = task.task_spec
    if getattr(spec, "bpmn_id", None):
        return spec.bpmn_name or spec.bpmn_id
    children = sorted(task.children, key=lambda c: isinstance(c.task_spec, BoundaryEvent))
    return next((name for name in map(_visible_name, children) if name), None)


class _TaskRef:
    def __init__(self, bpmn_id: str | None, name: str | None) -> None:
        self.bpmn_id, self.name = bpmn_id, name


def _instructions(spec) -> str:
    ext = getattr(spec, "extensions", None) or {}
    return ext.get("instructionsForEndUser") or getattr(spec, "documentation", None) or ""


SOD_PROPERTY = "sodDifferentFrom"


def PROCESS_NAME() -> str:  # noqa: N802 (reads like the constant it nearly is)
    """Which OS process fired a timer: with several workers, the record says which one."""
    return f"{socket.gethostname()}:{os.getpid()}"


def duty_rules(task: Task) -> list[str]:
    """The task's segregation-of-duties rules: `starter` and/or BPMN ids of tasks whose performer differs."""
    props = (getattr(task.task_spec, "extensions", None) or {}).get("properties", {})
    return [r.strip() for r in props.get(SOD_PROPERTY, "").split(",") if r.strip()]


def _enter_at(workflow: BpmnWorkflow, bpmn_id: str) -> None:
    """Run the workflow's hidden start tasks, then cancel every start event but `bpmn_id`."""
    task = workflow.get_next_task(state=TaskState.READY)
    while task is not None and not isinstance(task.task_spec, StartEvent):
        task.run()
        task = workflow.get_next_task(state=TaskState.READY)
    for task in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING):
        if isinstance(task.task_spec, StartEvent) and task.task_spec.bpmn_id != bpmn_id:
            task.cancel()


def start_events(session, definition: ProcessDefinition, kind: type) -> list[tuple[str, Any]]:
    """The process's start events with an event definition of `kind` (one with several, each of them):
    (bpmn id, event definition)."""
    return [(t.bpmn_id, d) for t in start_event_specs(session, definition, kind)
            for d in messaging.definitions(t) if isinstance(d, kind)]


def start_event_specs(session, definition: ProcessDefinition, kind: type) -> list[Any]:
    spec, _ = specs_of(session, definition)
    return [t for t in spec.task_specs.values()
            if isinstance(t, StartEvent) and any(isinstance(d, kind) for d in messaging.definitions(t))]


def check_message_start(session, definition: ProcessDefinition, bpmn_id: str, message: messaging.Message) -> None:
    """Refuse a message a start event would not take, before any instance exists for it."""
    [spec] = [s for s in start_event_specs(session, definition, MessageEventDefinition) if s.bpmn_id == bpmn_id]
    messaging.check_payload(spec, message, definition.sources)
    event = next(d for d in messaging.message_definitions(spec) if d.name == message.name)
    messaging.correlated_payload(event, message, SandboxScriptEngine({}).environment.evaluate)


def call_path(task: Task) -> list[dict[str, Any]]:
    """The call activities (or subprocesses) a task runs inside, outermost first, each with its process and
    multi-instance item: the history says which corrective action of an audit a task belongs to."""
    path, workflow = [], task.workflow
    while workflow.parent_task_id is not None:
        caller = workflow.top_workflow.get_task_from_id(workflow.parent_task_id)
        value = _item_of(caller)
        path.append({"called_at": caller.task_spec.bpmn_id, "process": workflow.spec.name,
                     "item": value.get("id", value) if isinstance(value, dict) else value})
        workflow = workflow.parent_workflow
    return path[::-1]


def _item_of(caller: Task) -> Any:
    """The multi-instance item a call activity (or subprocess) task was started for, or None."""
    item = getattr(caller.parent.task_spec, "input_item", None) if caller.parent else None
    return caller.data.get(item.bpmn_id) if item is not None else None


def called_processes(workflow: BpmnWorkflow) -> list[dict[str, Any]]:
    """Each call activity or subprocess the instance started: where it was called, which process, for which
    item of a multi-instance, whether it has finished, and where it is now."""
    calls = []
    for task_id, sub in workflow.subprocesses.items():
        caller = find_task(workflow, str(task_id))
        if caller is None:
            continue
        spec = caller.task_spec
        waiting = [t for t in sub.get_tasks(state=TaskState.READY | TaskState.WAITING)
                   if getattr(t.task_spec, "bpmn_id", None) and (t.task_spec.manual or t.state == TaskState.WAITING)]
        calls.append({"called_at": spec.bpmn_id, "name": spec.bpmn_name, "process": sub.spec.name,
                      "item": _item_of(caller),
                      "state": "completed" if sub.is_completed() else "running",
                      "at": [t.task_spec.bpmn_name or t.task_spec.bpmn_id for t in waiting]})
    return calls


_MESSAGE_EVENTS = LruCache(64)


def message_events(session, definition: ProcessDefinition) -> list[Any]:
    """The task specs of the process (with its subprocesses) that send or wait for a message, found once per
    definition: every save asks whether the process can wait for one."""
    key = (_db_key(session), definition.id)
    found = _MESSAGE_EVENTS.get(key)
    if found is None:
        spec, subprocess_specs = specs_of(session, definition)
        found = [t for s in (spec, *subprocess_specs.values()) if s is not None for t in s.task_specs.values()
                 if messaging.message_definitions(t)]
        _MESSAGE_EVENTS.put(key, found)
    return found


def catches_messages(session, definition: ProcessDefinition) -> bool:
    """Whether the process has any event or task that waits for a message."""
    return any(isinstance(t, CatchingEvent) for t in message_events(session, definition))


def message_names(session, definition: ProcessDefinition) -> set[str]:
    """The names of every message the process sends or waits for."""
    return {d.name for t in message_events(session, definition) for d in messaging.message_definitions(t)}


def performers(session, instance_id: int, task: Task, bpmn_id: str) -> set[str]:
    """Who performed the tasks `bpmn_id` that a duty rule on `task` refers to: those in the nearest enclosing
    (sub)process that has such a task, so each audit a programme calls, or each CAPA an audit calls, keeps
    its own duties, while a rule in an embedded subprocess still sees the process around it."""
    ids = [str(t.id) for t in duty_scope(task, bpmn_id) if t.has_state(TaskState.COMPLETED)]
    if not ids:
        return set()
    return set(session.scalars(select(HumanTask.completed_by).where(
        HumanTask.instance_id == instance_id, HumanTask.spiff_task_id.in_(ids), HumanTask.completed_by.is_not(None))))


def duty_scope(task: Task, bpmn_id: str) -> list[Task]:
    top = task.workflow.top_workflow
    workflow = task.workflow
    while workflow is not None:
        inside = [workflow] + [sp for sp in top.subprocesses.values() if _within(sp, workflow)]
        found = [t for w in inside for t in w.tasks.values() if getattr(t.task_spec, "bpmn_id", None) == bpmn_id]
        if found:
            return found
        workflow = workflow.parent_workflow
    return []


def _within(workflow, ancestor) -> bool:
    while workflow is not None:
        workflow = workflow.parent_workflow
        if workflow is ancestor:
            return True
    return False


def start_lane(session, definition: ProcessDefinition) -> str | None:
    """The lane the process's start event sits in: only holders of that role may start it."""
    spec, _ = specs_of(session, definition)
    starts = [t for t in spec.task_specs.values() if type(t).__name__ == "StartEvent"]
    lanes = {t.lane for t in starts if t.lane}
    return lanes.pop() if len(lanes) == 1 else None


def candidates(task: Task, starter: str) -> tuple[str, list[str]]:
    """Who may act on a task: `lane_owners` users, else `lane_roles` roles, else the lane as a role; a task
    outside any lane belongs to the instance's starter."""
    lane = task.task_spec.lane
    if lane is None:
        return "user", [starter]
    owners = task.data.get("lane_owners") or {}
    if isinstance(owners, dict) and owners.get(lane):
        return "user", [str(u) for u in owners[lane]]
    roles = task.data.get("lane_roles") or {}
    if isinstance(roles, dict) and roles.get(lane):
        return "role", [str(r) for r in roles[lane]]
    return "role", [lane]


def routing_problem(task: Task, starter: str) -> str | None:
    """Why the people or roles task data routes a task to cannot be stored (a name that is not text, is empty,
    holds a NUL, or is longer than a candidate's column), or None."""
    kind, names = candidates(task, starter)
    longest = limits.column_length(TaskCandidate.name) or 120
    for name in names:
        problem = "is empty" if not name.strip() else limits.text_problem(name)
        if problem is None and len(name) > longest:
            problem = f"is longer than {longest} characters"
        if problem is not None:
            shown = name[:60] + ("..." if len(name) > 60 else "")
            return (f"the {kind} {shown!r} this task is routed to (lane '{task.task_spec.lane}', lane_owners or "
                    f"lane_roles in its data) {problem}; the instance cannot go on as it is (correct the model "
                    "that routes it, then migrate or terminate)")
    return None


def _timer_value(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return clock.as_db(value)
    if isinstance(value, str):
        try:
            return clock.as_db(TimerEventDefinition.get_datetime(value))
        except ValueError:
            return None
    return None


def next_due(workflow: BpmnWorkflow) -> datetime | None:
    """The earliest time a waiting timer of this workflow comes due, for the worker's index."""
    times = [_task_timer_due(t) for t in workflow.event_manager.tasks.values()]
    due = [t for t in times if t is not None]
    return min(due) if due else None


def _task_timer_due(task: Task) -> datetime | None:
    """When a waiting task's timer comes due. An event-based gateway (or an event with several definitions)
    holds its timer inside a MultipleEventDefinition, whose own `details` carry no time: SpiffWorkflow keeps
    the timer's due time in the task's `event_value` all the same (one per task: with two timers in one
    gateway, the first one evaluated sets it for both)."""
    if not any(isinstance(d, TimerEventDefinition) for d in messaging.definitions(task.task_spec)):
        return None
    value = task.internal_data.get("event_value")
    if isinstance(value, dict):  # a cycle timer: its next occurrence, while cycles remain
        value = value.get("next") if value.get("cycles") != 0 else None
    return _timer_value(value)


def waiting_timers(workflow: PmoflowWorkflow) -> list[tuple[Task, datetime]]:
    """Each waiting timer of the workflow and its subprocesses, with when it comes due (`worker --dry-run`)."""
    found = []
    for wf in workflow.all_workflows():
        for task in wf.tasks.values():
            if task.state == TaskState.WAITING:
                due = _task_timer_due(task)
                if due is not None:
                    found.append((task, due))
    return found


def _due(task: Task) -> datetime | None:
    """A human task's due time: the earliest timer on its boundary (its SLA reminder or timeout)."""
    parent = task.parent
    if parent is None or not isinstance(parent.task_spec, BoundaryEventSplit):
        return None
    times = []
    for sibling in parent.children:
        spec = sibling.task_spec
        if sibling is not task and isinstance(getattr(spec, "event_definition", None), TimerEventDefinition):
            times.append(_timer_value(sibling.internal_data.get("event_value")))
    due = [t for t in times if t is not None]
    return min(due) if due else None


def find_task(workflow: BpmnWorkflow, spiff_task_id: str) -> Task | None:
    try:
        return workflow.get_task_from_id(UUID(spiff_task_id))
    except (KeyError, ValueError, SpiffWorkflowException):
        return None
