"""When timer start events come due: the schedule of each, computed at deployment and advanced at each firing.

A timer start event's value is a Python expression giving ISO 8601 text (`"R/P1Y"`, with the quotes), as for
every timer. The worker starts one new instance per occurrence:

* a cycle `R[n]/[start/]duration` first comes due at its explicit start, else one duration after deployment,
  then every duration after that, `n` times (unbounded without `n`); `R[n]/duration/end` ends its first
  interval at `end`;
* a time date comes due once, at that time;
* a duration comes due once, that long after deployment.

Durations of years and months are counted on the calendar from the occurrence before (a yearly cycle deployed
on 1 March stays on 1 March, leap years or not). Times are naive UTC, as stored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from pmoflow.engine import clock
from pmoflow.engine.errors import InvalidProcess
from pmoflow.engine.models import ProcessSchedule
from pmoflow.engine.scripting import SandboxScriptEngine


@dataclass(frozen=True)
class Timing:
    """When a schedule next comes due and how many occurrences are left (None: unbounded; 0: done)."""

    next_due: datetime | None
    remaining: int | None


def first(process_id: str, bpmn_id: str, expression: str, deployed_at: datetime) -> Timing:
    """The schedule of a timer start event deployed at `deployed_at` (naive UTC)."""
    value = _value(process_id, bpmn_id, expression)
    try:
        return _first(value, clock.as_utc(deployed_at))
    except Exception as exc:  # SpiffWorkflow's parsers raise bare Exceptions, ValueErrors and AttributeErrors
        raise _invalid(process_id, bpmn_id, f"{value!r} is not an ISO 8601 time, duration or repeating "
                                            f"interval ({exc})") from None


def after(process_id: str, bpmn_id: str, expression: str, timing: Timing) -> Timing:
    """The schedule once the occurrence due at `timing.next_due` has fired."""
    remaining = None if timing.remaining is None else timing.remaining - 1
    if timing.next_due is None or remaining == 0:
        return Timing(None, 0)
    value = _value(process_id, bpmn_id, expression)
    if not value.upper().startswith("R"):
        return Timing(None, 0)  # a date or a duration comes due once
    duration = _cycle_duration(value)
    return Timing(_stored(_plus(clock.as_utc(timing.next_due), duration)), remaining)


def _value(process_id: str, bpmn_id: str, expression: str) -> str:
    """Evaluate the timer's expression with no task data: a start event has none yet."""
    try:
        value = SandboxScriptEngine({}).environment.evaluate(expression, {})
    except Exception as exc:  # a name only task data could give, or a failing expression
        raise _invalid(process_id, bpmn_id, f"its value {expression} cannot be computed before the process "
                                            f"starts ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, str):
        raise _invalid(process_id, bpmn_id, f"its value {expression} is not text: a timer needs an ISO 8601 string")
    return value.strip()


def _invalid(process_id: str, bpmn_id: str, problem: str) -> InvalidProcess:
    return InvalidProcess(f"{process_id}: timer start event '{bpmn_id}': {problem}",
                          ['write a quoted constant like "R/P1Y", "R3/2027-01-01T09:00:00+00:00/P1M", '
                           '"2027-01-31T09:00:00+00:00" or "P5D"'])


def _first(value: str, deployed_at: datetime) -> Timing:
    if value.upper().startswith("R"):
        return _first_cycle(value, deployed_at)
    if value.upper().startswith("P"):
        return Timing(_stored(_plus(deployed_at, TimerEventDefinition.parse_iso_duration(value))), 1)
    return Timing(_stored(TimerEventDefinition.get_datetime(value)), 1)


def _parts(value: str) -> tuple[int | None, list[str]]:
    """`R[n]/a[/b]` as (n or None, [a, b]), the way SpiffWorkflow splits it."""
    head, *rest = value.upper().replace("--", "/").split("/")
    count = head.removeprefix("R")
    if not head.startswith("R") or not rest or len(rest) > 2:
        raise ValueError("a repeating interval is R[n]/[start/]duration")
    return (int(count) if count else None), rest


def _first_cycle(value: str, deployed_at: datetime) -> Timing:
    count, rest = _parts(value)
    if count is not None and count < 0:
        count = None  # SpiffWorkflow's spelling of unbounded
    duration = _cycle_duration(value)
    if len(rest) == 1:
        start = _plus(deployed_at, duration)
    elif rest[0].startswith("P"):  # duration/end: the first interval ends at `end`
        end = TimerEventDefinition.get_datetime(rest[1])
        start = end - TimerEventDefinition.get_timedelta_from_end(copy.deepcopy(duration), end)
    else:
        start = TimerEventDefinition.get_datetime(rest[0])
    return Timing(None if count == 0 else _stored(start), count)


def _cycle_duration(value: str) -> dict[str, Any]:
    _, rest = _parts(value)
    text = next((part for part in rest if part.startswith("P")), None)
    if text is None:
        raise ValueError("a repeating interval needs a duration")
    duration = TimerEventDefinition.parse_iso_duration(text)
    if not any(duration.values()):
        raise ValueError("a repeating interval needs a duration longer than zero")
    return duration


def _stored(moment: datetime) -> datetime:
    """Naive UTC and a plain datetime (SpiffWorkflow's timer module makes the engine clock's subclass)."""
    moment = clock.as_db(moment)
    return datetime.combine(moment.date(), moment.time())


def _plus(moment: datetime, duration: dict[str, Any]) -> datetime:
    """`moment` + an ISO duration, years and months on the calendar (SpiffWorkflow's rule)."""
    return moment + TimerEventDefinition.get_timedelta_from_start(copy.deepcopy(duration), moment)


def view(schedule: ProcessSchedule, version: int) -> dict[str, Any]:
    """A schedule as `pmoflow schedules` and `deploy` show it."""
    return {"process_id": schedule.process_id, "version": version, "start_event": schedule.bpmn_id,
            "expression": schedule.expression, "next_due": _iso(schedule.next_due),
            "remaining": schedule.remaining, "fired": schedule.fired, "owner": schedule.owner}


def _iso(moment: datetime | None) -> str | None:
    return clock.as_utc(moment).isoformat() if moment is not None else None
