"""The engine's notion of now, which `worker --now` can move.

SpiffWorkflow's timers read `datetime.now(timezone.utc)` from their own module; pointing that module at
`ClockDatetime` makes timers, due times and audit timestamps all follow the same clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer

_override: ContextVar[datetime | None] = ContextVar("pmoflow_now", default=None)
_timers: ContextVar[datetime | None] = ContextVar("pmoflow_timer_now", default=None)


class ClockDatetime(datetime):
    """A datetime whose `now()` answers the engine clock (or the timer horizon while one is set)."""

    @classmethod
    def now(cls, tz=None):
        fixed = _timers.get() or _override.get()
        if fixed is None:
            return datetime.now(tz)
        return fixed.astimezone(tz) if tz else fixed.astimezone(UTC).replace(tzinfo=None)


spiff_timer.datetime = ClockDatetime


def now() -> datetime:
    """Aware UTC now, or the time set by `frozen`."""
    return _override.get() or datetime.now(UTC)


def db_now() -> datetime:
    """Naive UTC, the form timestamps are stored in (SQLite keeps no zone)."""
    return now().replace(tzinfo=None)


def as_db(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def as_utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@contextmanager
def frozen(moment: datetime | None) -> Iterator[None]:
    """Evaluate everything inside as of `moment` (aware or naive UTC); None leaves the clock alone."""
    if moment is None:
        yield
        return
    token = _override.set(as_utc(moment))
    try:
        yield
    finally:
        _override.reset(token)


@contextmanager
def timers_at(moment: datetime) -> Iterator[None]:
    """Let SpiffWorkflow's timers see `moment` as now, while audit times stay real: a worker catching up
    after an outage fires each timer in the order it came due, and records when it actually fired."""
    token = _timers.set(as_utc(moment))
    try:
        yield
    finally:
        _timers.reset(token)
