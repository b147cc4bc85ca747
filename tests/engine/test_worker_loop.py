"""The worker's loop: a database failure that passes is retried with a growing, bounded pause and a line on
stderr; anything else still stops it; `--once` gives up after a bounded number of tries."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import OperationalError

from pmoflow.engine import worker
from pmoflow.engine.database import TransientDatabaseError, is_transient
from pmoflow.engine.errors import Conflict, InvalidInput


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(worker, "BACKOFF_FIRST", 0.001)
    monkeypatch.setattr(worker, "BACKOFF_LIMIT", 0.004)


class Passes:
    """A pass that fails with the given errors first, then succeeds; the worker stops after `stop_after` passes."""

    def __init__(self, errors: list[Exception], stop_after: int) -> None:
        self.errors, self.calls, self.done, self.stop_after = list(errors), 0, [], stop_after
        self.stop = threading.Event()
        self.lines: list[str] = []

    def __call__(self) -> dict:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"pass": self.calls}

    def on_pass(self, result: dict, number: int, seconds: float) -> None:
        self.done.append((result["pass"], number))
        if len(self.done) >= self.stop_after:
            self.stop.set()

    def run(self, once: bool = False) -> None:
        worker.run(self, stop=self.stop, interval=0, once=once, on_pass=self.on_pass, log=self.lines.append)


def test_a_transient_failure_is_retried_with_a_line_each_time_and_the_worker_goes_on():
    passes = Passes([TransientDatabaseError("database error at x: server closed the connection"),
                     Conflict("a concurrent change collided")], stop_after=2)
    passes.run()
    assert passes.done == [(3, 3), (4, 4)]
    assert len(passes.lines) == 2
    assert "worker pass 1 failed (1 in a row), trying again in 0.001 s: database error at x" in passes.lines[0]
    assert "worker pass 2 failed (2 in a row), trying again in 0.002 s" in passes.lines[1]


def test_the_pause_doubles_up_to_its_bound_and_starts_again_after_a_success():
    passes = Passes([TransientDatabaseError("down")] * 4, stop_after=1)
    passes.run()
    assert [line.split("trying again in ")[1].split(" s")[0] for line in passes.lines] == [
        "0.001", "0.002", "0.004", "0.004"]


def test_once_gives_up_after_a_bounded_number_of_tries():
    passes = Passes([TransientDatabaseError("down")] * 10, stop_after=1)
    with pytest.raises(TransientDatabaseError):
        passes.run(once=True)
    assert passes.calls == worker.ONCE_TRIES and len(passes.lines) == worker.ONCE_TRIES - 1


def test_an_error_that_is_not_transient_stops_the_worker_at_once():
    passes = Passes([InvalidInput("bad")], stop_after=1)
    with pytest.raises(InvalidInput):
        passes.run()
    assert passes.calls == 1 and passes.lines == []


def test_a_stop_during_the_pause_ends_the_worker():
    passes = Passes([TransientDatabaseError("down")] * 100, stop_after=1)
    passes.stop.set()
    passes.run()
    assert passes.calls == 0


@pytest.mark.parametrize(("message", "transient"), [
    ("database is locked", True), ("database table is locked", True),
    ("no such table: process_instances", False), ("disk I/O error", False)])
def test_sqlite_errors_that_pass_are_told_from_those_that_do_not(message, transient):
    import sqlite3
    assert is_transient(OperationalError("BEGIN", {}, sqlite3.OperationalError(message))) is transient
