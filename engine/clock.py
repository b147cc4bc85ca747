"""The engine's notion of now: the real time, or a time a caller sets for what is evaluated.

Three settings, innermost first, decide what pmoflow's timers (`engine/specs.py`) see as now:
* `timers_at(T)`: a catch-up fires each due timer as of its own due time;
* `simulating(T)`: `worker --now T` evaluates as of T, yet records every event at the real time, with T beside
  it (`simulated()` gives T to the audit log, which stores it as `as_of`): the record's times only go forward;
* `frozen(T)`: everything as of T, event times included. Only for runs that leave no database record
  (scenarios) and for tests that build histories in the past.
SpiffWorkflow's own module is left alone: a program using SpiffWorkflow beside pmoflow sees the real time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import overload

_override: ContextVar[datetime | None] = ContextVar("pmoflow_now", default=None)
_simulated: ContextVar[datetime | None] = ContextVar("pmoflow_simulated_now", default=None)
_timers: ContextVar[datetime | None] = ContextVar("pmoflow_timer_now", default=None)


def now() -> datetime:
    """Aware UTC now, or the time set by `frozen`: the time events are recorded at."""
    return _override.get() or datetime.now(UTC)


def db_now() -> datetime:
    """Naive UTC, the form timestamps are stored in (SQLite keeps no zone)."""
    return now().replace(tzinfo=None)


def timer_now() -> datetime:
    """Aware UTC now as pmoflow's timers see it: the catch-up horizon, else the simulated or frozen time."""
    return _timers.get() or _simulated.get() or now()


def simulated() -> datetime | None:
    """The time `simulating` evaluates as of, if one is set (aware UTC)."""
    return _simulated.get()


def as_db(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
@overload
def as_utc(moment: datetime | None) -> datetime | None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """A stored naive moment read back as the UTC it was written in (the overloads keep a datetime a datetime)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@contextmanager
def _setting(var: ContextVar, moment: datetime | None) -> Iterator[None]:
    if moment is None:
        yield
        return
    token = var.set(as_utc(moment))
    try:
        yield
    finally:
        var.reset(token)


def frozen(moment: datetime | None) -> AbstractContextManager[None]:
    """Evaluate and record everything inside as of `moment` (aware or naive UTC); None leaves the clock alone."""
    return _setting(_override, moment)


def simulating(moment: datetime | None) -> AbstractContextManager[None]:
    """Evaluate timers and due work as of `moment`, record at the real time; None leaves the clock alone."""
    return _setting(_simulated, moment)


def timers_at(moment: datetime) -> AbstractContextManager[None]:
    """Let pmoflow's timers see `moment` as now, while audit times stay real: a worker catching up after an
    outage fires each timer in the order it came due, and records when it actually fired."""
    return _setting(_timers, moment)
