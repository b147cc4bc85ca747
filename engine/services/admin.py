"""Administrative acts on instances, for PMO Administrators: suspend, resume, terminate, skip, retry and data
edits, each recorded with the state before and after and the reason given."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmoflow.engine import audit, clock, limits, runtime, serialization
from pmoflow.engine.errors import Conflict, InvalidInput
from pmoflow.engine.models import HumanTask, ProcessInstance, User
from pmoflow.engine.services.advance import advance, finish
from pmoflow.engine.services.context import ADMINISTRATOR, Context, authorised, final_data, instance_row, load_run
from pmoflow.engine.services.submissions import refuse_routing, require_object

_ACTS = {"suspended": "suspending an instance", "resumed": "resuming an instance",
         "terminated": "terminating an instance", "skipped": "skipping a failed task",
         "edited": "changing an instance's data", "retried": "retrying a failed task"}


def _target(ctx: Context, session: Session, instance_id: int | str, allowed: tuple[str, ...],
            act: str) -> tuple[User, ProcessInstance]:
    """The administrator acting and the instance, which must be in one of the `allowed` states to be `act`."""
    actor = authorised(ctx, session, _ACTS[act], ADMINISTRATOR)
    instance = instance_row(session, instance_id)
    if instance.status not in allowed:
        words = ["in error" if s == "error" else s for s in (*allowed, instance.status)]
        kinds = ", ".join(words[:-2]) + (" or " if len(allowed) > 1 else "") + words[-2]
        raise Conflict(f"instance {instance.id} is {words[-1]}; it can be {act} only when {kinds}")
    return actor, instance


def _open_rows(session: Session, instance: ProcessInstance) -> list[dict[str, Any]]:
    return [{"task_id": t.id, "bpmn_id": t.bpmn_id, "name": t.name, "assignee": t.assignee}
            for t in session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                             HumanTask.state == "ready").order_by(HumanTask.id))]


def _result(instance: ProcessInstance) -> dict[str, Any]:
    return {"instance_id": instance.id, "status": instance.status, "error": instance.error}


def suspend(ctx: Context, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
    """Hold an instance: its tasks cannot be completed, claimed or delegated and the worker leaves its timers
    until it is resumed (overdue timers then fire on the worker's next pass)."""
    reason = _reason(reason)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor, instance = _target(ctx, session, instance_id, ("running", "waiting", "error"), "suspended")
        before = {"status": instance.status, "open_tasks": _open_rows(session, instance),
                  "next_due": clock.as_utc(instance.next_due).isoformat() if instance.next_due else None}
        audit.InstanceLog(session, instance, actor.name).add(
            "suspend", reason=reason, before=before, after={"status": "suspended"})
        instance.status, instance.updated_at = "suspended", clock.db_now()
        session.flush()
        return _result(instance)


def resume(ctx: Context, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
    """Release a suspended instance: back to error if it was in error, else running (open tasks) or waiting."""
    reason = _reason(reason)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor, instance = _target(ctx, session, instance_id, ("suspended",), "resumed")
        status = "error" if instance.error else ("running" if _open_rows(session, instance) else "waiting")
        audit.InstanceLog(session, instance, actor.name).add(
            "resume", reason=reason, before={"status": "suspended"}, after={"status": status})
        instance.status, instance.updated_at = status, clock.db_now()
        session.flush()
        return _result(instance)


def terminate(ctx: Context, instance_id: int | str, reason: str | None = None) -> dict[str, Any]:
    """End an unfinished instance for good: the workflow and its open tasks are cancelled."""
    reason = _reason(reason)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor, instance = _target(ctx, session, instance_id, ("running", "waiting", "error", "suspended"),
                                  "terminated")
        run = load_run(ctx, session, instance, actor.name)
        open_tasks = _open_rows(session, instance)
        before = {"status": instance.status, "error": instance.error, "open_tasks": open_tasks,
                  "data": audit.to_json_data(final_data(run.workflow))}
        run.log.add("terminate", reason=reason, before=before,
                    after={"status": "terminated", "cancelled_tasks": [t["task_id"] for t in open_tasks]})
        run.workflow.cancel()
        instance.status = "terminated"
        run.sync_tasks()
        run.save()
        instance.status, instance.next_due, instance.error = "terminated", None, None
        session.flush()
        return {"instance_id": instance.id, "status": instance.status, "error": None}


def skip(ctx: Context, instance_id: int | str, data: dict[str, Any] | None = None,
         reason: str | None = None) -> dict[str, Any]:
    """Mark the failed task of an instance in error as done without running it, with `data` as its
    result, and run the instance on. A gateway cannot be skipped (it would take every way): retry it."""
    from SpiffWorkflow.bpmn.specs.defaults import EventBasedGateway, ExclusiveGateway, InclusiveGateway
    from SpiffWorkflow.exceptions import SpiffWorkflowException

    reason = _reason(reason)
    data = require_object(data or {})
    refuse_routing(data)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor, instance = _target(ctx, session, instance_id, ("error",), "skipped")
        run = load_run(ctx, session, instance, actor.name)
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
        advance(ctx, run)
        return _result(instance)


def edit_data(ctx: Context, instance_id: int | str, values: dict[str, Any],
              reason: str | None = None) -> dict[str, Any]:
    """An administrative change of the data the instance is at (its open tasks, waiting events and running
    subprocesses), recorded with each field's value before and after and the reason, which is required. For an
    instance in error, correct the data with retry or skip instead: the failed task re-reads its data from the
    step before it."""
    from SpiffWorkflow.util.task import TaskState

    reason = _reason(reason)
    values = require_object(values)
    if not values:
        raise InvalidInput("nothing to set: give a JSON object of the fields to change, like {\"budget\": 100}")
    refuse_routing(values)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor, instance = _target(ctx, session, instance_id, ("running", "waiting", "suspended", "error"), "edited")
        if instance.error:
            raise Conflict(f"instance {instance.id} is in error: correct its data with 'pmoflow retry "
                           f"{instance.id} --data ...' or 'pmoflow skip {instance.id} --data ...'")
        run = load_run(ctx, session, instance, actor.name)
        at = [t for wf in run.workflow.all_workflows() for t in wf.tasks.values()
              if t.has_state(TaskState.READY | TaskState.WAITING | TaskState.STARTED)]
        if not at:
            raise Conflict(f"instance {instance.id} is at no task whose data could be changed")
        reason = _required_reason(reason, "a data change")
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


def retry(ctx: Context, instance_id: int | str, data: dict[str, Any] | None = None,
          reason: str | None = None) -> dict[str, Any]:
    """Re-run the failed task of an instance in error, optionally with corrected data (which, like a data
    edit, needs a reason and may not carry routing keys)."""
    reason = _reason(reason)
    data = require_object(data or {})
    refuse_routing(data)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = authorised(ctx, session, _ACTS["retried"], ADMINISTRATOR)
        instance = instance_row(session, instance_id)
        if instance.status != "error" or not instance.error:
            raise Conflict(f"instance {instance.id} is {instance.status}, not in error: nothing to retry")
        if data:
            reason = _required_reason(reason, "a retry with corrected data")
        run = load_run(ctx, session, instance, actor.name)
        failed = runtime.find_task(run.workflow, instance.error.get("task_id") or "")
        if failed is None:
            raise Conflict(f"the failed task of instance {instance.id} is gone; it cannot be retried")
        inherited = failed.parent.data if failed.parent is not None else failed.data
        before = {"status": instance.status, "error": instance.error, "data": audit.to_json_data(failed.data)}
        after = {"status": "running", "data": audit.to_json_data({**inherited, **data})}  # what it re-runs with
        run.log.add("retry", task=runtime._TaskRef(failed.task_spec.bpmn_id, failed.task_spec.bpmn_name),
                    previous_error=instance.error, data=data, reason=reason, before=before, after=after)
        instance.status, instance.error = "running", None
        run.reset_to(failed, data)
        finish(ctx, run)
        return _result(instance)


def _reason(reason: str | None) -> str | None:
    """A reason as the record keeps it: text both databases can store (no NUL, at most 2,000 characters)."""
    return limits.check_text(reason.strip() if isinstance(reason, str) else reason, "the reason", limit=2000)


def _required_reason(reason: str | None, what: str) -> str:
    if reason is None or not reason.strip():
        raise InvalidInput(f"{what} needs a reason (--reason): the record must say why the data was changed")
    return reason.strip()
