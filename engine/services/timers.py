"""The worker's pass: fire due timers, and start the instances due timer start events call for.

`now` evaluates a pass as of another time (`worker --now`: catching up, tests). Time is never forged: events are
recorded at the real time, with the time evaluated as of beside them (`as_of`, see engine/clock.py). A dry run
lists what a pass would do and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from pmoflow.engine import clock, runtime, serialization
from pmoflow.engine import schedules as start_timers
from pmoflow.engine.errors import PmoflowError
from pmoflow.engine.models import ProcessDefinition, ProcessInstance, ProcessSchedule
from pmoflow.engine.services.advance import finish, new_instance
from pmoflow.engine.services.context import ADMINISTRATOR, WORKER, Context, authorised, load_run


def run_due(ctx: Context, now: datetime | None = None, should_stop: Callable[[], bool] | None = None,
            dry_run: bool = False) -> dict[str, Any]:
    """Fire every timer due at `now` (default: the real time), one instance per transaction, row-locked
    (SKIP LOCKED) so several workers share the work; then start an instance for each occurrence of a timer
    start event due by then (`started`). `should_stop` is asked between instances and occurrences.
    `dry_run`: only say which instances have timers due and which occurrences would start (`due`).

    Firing what is due now is the engine's own duty and needs no role; firing as of another time moves every
    instance's deadlines (reminders, escalations, timeouts) and needs a PMO Administrator."""
    ctx.db.check_schema()
    if now is not None and not dry_run:
        with ctx.tx() as session:
            authorised(ctx, session, "running the worker as of another time (--now)", ADMINISTRATOR)
    fired: list[int] = []
    failed: list[int] = []
    started: list[int] = []
    stop = should_stop or (lambda: False)
    with clock.simulating(now):
        cutoff = clock.as_db(clock.timer_now())
        if dry_run:
            return {"now": clock.as_utc(cutoff).isoformat(), "dry_run": True, **preview(ctx, cutoff)}
        with ctx.tx() as session:
            due = list(session.scalars(select(ProcessInstance.id).where(
                ProcessInstance.status.in_(("running", "waiting")), ProcessInstance.next_due <= cutoff)
                .order_by(ProcessInstance.next_due)))
        for instance_id in due:
            if stop():
                break
            result = _fire(ctx, instance_id, cutoff)
            if result is not None:
                (failed if result == "error" else fired).append(instance_id)
        for instance_id, status in _start_due(ctx, cutoff, stop):
            started.append(instance_id)
            if status == "error":
                failed.append(instance_id)
    return {"now": clock.as_utc(cutoff).isoformat(), "fired": fired, "errors": failed, "started": started}


def _fire(ctx: Context, instance_id: int, cutoff: datetime) -> str | None:
    try:
        with ctx.tx() as session:
            instance = session.scalar(select(ProcessInstance).where(ProcessInstance.id == instance_id)
                                      .with_for_update(skip_locked=True))
            if instance is None or instance.next_due is None or instance.next_due > cutoff \
                    or instance.status not in ("running", "waiting"):
                return None  # another worker took it, or it is no longer due
            run = load_run(ctx, session, instance, WORKER)
            run.catch_up(cutoff)
            finish(ctx, run)
            return instance.status
    except runtime.StateUnusable as exc:
        return _put_in_error(ctx, instance_id, exc)
    except (SQLAlchemyError, PmoflowError):
        raise
    except Exception as exc:  # noqa: BLE001 (no fault of one instance may stop the worker for all the others)
        return _put_in_error(ctx, instance_id, exc)


def _put_in_error(ctx: Context, instance_id: int, exc: Exception) -> str:
    """An instance the pass could not run at all (its state does not load, a failure no task caught): in error,
    in a transaction of its own, so this pass and every later one go on to the next instance."""
    with ctx.tx() as session:
        instance = session.scalar(select(ProcessInstance).where(ProcessInstance.id == instance_id).with_for_update())
        assert instance is not None, "the pass just read this instance and instances are never deleted"
        runtime.put_in_error(session, instance, WORKER, exc)
    return "error"


def _start_due(ctx: Context, cutoff: datetime, stop: Callable[[], bool]) -> Iterator[tuple[int, str]]:
    """Each due occurrence of each schedule, oldest first: a worker that was down for three years starts
    a yearly process three times, once per occurrence missed."""
    with ctx.tx() as session:
        due = list(session.scalars(select(ProcessSchedule.id).where(ProcessSchedule.next_due <= cutoff)
                                   .order_by(ProcessSchedule.next_due, ProcessSchedule.id)))
    for schedule_id in due:
        while not stop():
            result = _fire_schedule(ctx, schedule_id, cutoff)
            if result is None:
                break  # no longer due, or another worker holds it (and will see to its next occurrence)
            yield result


def _fire_schedule(ctx: Context, schedule_id: int, cutoff: datetime) -> tuple[int, str] | None:
    """Start the instance for a schedule's next due occurrence and advance the schedule, in one transaction
    under the schedule's row lock, so no occurrence starts twice however many workers race for it."""
    with ctx.tx() as session:
        schedule = session.scalar(select(ProcessSchedule).where(ProcessSchedule.id == schedule_id)
                                  .with_for_update(skip_locked=True))
        if schedule is None or schedule.next_due is None or schedule.next_due > cutoff:
            return None
        definition = session.get_one(ProcessDefinition, schedule.definition_id)
        due = clock.as_utc(schedule.next_due).isoformat()
        instance = new_instance(session, definition, schedule.owner)
        run = runtime.Run.new(session, instance, definition, schedule.owner, ctx.handlers, {},
                              start_event=schedule.bpmn_id)
        run.log.add("instance_started", data={}, version=definition.version, business_key=None,
                    by_timer=schedule.bpmn_id, expression=schedule.expression, due=due,
                    occurrence=schedule.fired + 1, process=runtime.PROCESS_NAME())
        run.fire_start_timer(due)
        finish(ctx, run)
        timing = start_timers.after(schedule.process_id, schedule.bpmn_id, schedule.expression,
                                    start_timers.Timing(schedule.next_due, schedule.remaining))
        schedule.next_due, schedule.remaining = timing.next_due, timing.remaining
        schedule.fired += 1
        return instance.id, instance.status


PREVIEW_OCCURRENCES = 100  # a dry run lists at most this many occurrences of one schedule


def preview(ctx: Context, cutoff: datetime) -> dict[str, Any]:
    """What a pass as of `cutoff` would do, read in one transaction that writes nothing: the instances whose
    timers are due (each timer due now; firing one may start later ones, which a pass also fires if due) and
    the occurrences of timer start events that would start an instance."""
    with ctx.tx() as session:
        instances = session.scalars(select(ProcessInstance).where(
            ProcessInstance.status.in_(("running", "waiting")), ProcessInstance.next_due <= cutoff)
            .order_by(ProcessInstance.next_due, ProcessInstance.id)).all()
        fire = [_due_instance(session, instance, cutoff) for instance in instances]
        rows = session.execute(select(ProcessSchedule, ProcessDefinition.version)
                               .join(ProcessDefinition, ProcessDefinition.id == ProcessSchedule.definition_id)
                               .where(ProcessSchedule.next_due <= cutoff)
                               .order_by(ProcessSchedule.next_due, ProcessSchedule.id)).all()
        start = [{**start_timers.view(schedule, version), "occurrences": _occurrences(schedule, cutoff)}
                 for schedule, version in rows]
    return {"would_fire": fire, "would_start": start}


def _due_instance(session, instance: ProcessInstance, cutoff: datetime) -> dict[str, Any]:
    assert instance.next_due is not None, "only instances with a next_due at or before the cutoff come here"
    definition = session.get_one(ProcessDefinition, instance.definition_id)
    workflow = serialization.load_state(instance.state, runtime.specs_of(session, definition))
    timers = [{"task": task.task_spec.bpmn_id, "name": task.task_spec.bpmn_name, "due": clock.as_utc(at).isoformat()}
              for task, at in runtime.waiting_timers(workflow) if at <= cutoff]
    return {"instance_id": instance.id, "process_id": instance.process_id, "version": instance.version,
            "business_key": instance.business_key, "status": instance.status,
            "next_due": clock.as_utc(instance.next_due).isoformat(), "timers": timers}


def _occurrences(schedule: ProcessSchedule, cutoff: datetime) -> list[str]:
    """The due times of a schedule's occurrences up to `cutoff`, oldest first (at most PREVIEW_OCCURRENCES)."""
    found: list[str] = []
    timing = start_timers.Timing(schedule.next_due, schedule.remaining)
    while timing.next_due is not None and timing.next_due <= cutoff and len(found) < PREVIEW_OCCURRENCES:
        found.append(clock.as_utc(timing.next_due).isoformat())
        timing = start_timers.after(schedule.process_id, schedule.bpmn_id, schedule.expression, timing)
    return found


def schedules(ctx: Context) -> list[dict[str, Any]]:
    """The timer start events of deployed processes: when each next starts an instance, and how often it has."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        rows = session.execute(select(ProcessSchedule, ProcessDefinition.version)
                               .join(ProcessDefinition, ProcessDefinition.id == ProcessSchedule.definition_id)
                               .order_by(ProcessSchedule.process_id, ProcessSchedule.bpmn_id)).all()
        return [start_timers.view(schedule, version) for schedule, version in rows]
