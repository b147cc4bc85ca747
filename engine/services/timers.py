"""The worker's pass: fire due timers, and start the instances due timer start events call for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from pmoflow.engine import clock, runtime
from pmoflow.engine import schedules as start_timers
from pmoflow.engine.errors import PmoflowError
from pmoflow.engine.models import ProcessDefinition, ProcessInstance, ProcessSchedule
from pmoflow.engine.services.advance import finish, new_instance
from pmoflow.engine.services.context import WORKER, Context, load_run


def run_due(ctx: Context, now: datetime | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Fire every timer due at `now` (default: the real time), one instance per transaction, row-locked
    (SKIP LOCKED) so several workers share the work; then start an instance for each occurrence of a timer
    start event due by then (`started`). `should_stop` is asked between instances and occurrences."""
    ctx.db.check_schema()
    fired, failed, started = [], [], []
    stop = should_stop or (lambda: False)
    with clock.frozen(now):
        cutoff = clock.db_now()
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
        definition = session.get(ProcessDefinition, schedule.definition_id)
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


def schedules(ctx: Context) -> list[dict[str, Any]]:
    """The timer start events of deployed processes: when each next starts an instance, and how often it has."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        rows = session.execute(select(ProcessSchedule, ProcessDefinition.version)
                               .join(ProcessDefinition, ProcessDefinition.id == ProcessSchedule.definition_id)
                               .order_by(ProcessSchedule.process_id, ProcessSchedule.bpmn_id)).all()
        return [start_timers.view(schedule, version) for schedule, version in rows]
