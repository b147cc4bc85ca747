"""Several worker processes share due timers: each fires exactly once, and a killed worker loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine.models import Event, ProcessInstance

INSTANCES = 400
PMOFLOW = Path(sys.executable).parent / "pmoflow"


def counts(app) -> tuple[int, int]:
    """(completed instances, timer_fired events)."""
    with app.db.transaction() as s:
        done = s.scalar(select(func.count()).where(ProcessInstance.status == "completed"))
        fired = s.scalar(select(func.count()).where(Event.type == "timer_fired"))
    return done, fired


def firing_processes(app) -> set[str]:
    with app.db.transaction() as s:
        return {p["process"] for p in s.scalars(select(Event.payload).where(Event.type == "timer_fired"))}


def worker(db_url: str, now: str) -> subprocess.Popen:
    return subprocess.Popen([str(PMOFLOW), "--db", db_url, "worker", "--now", now, "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def setup_due_instances(make_pmo) -> tuple:
    app = make_pmo("alice")
    app.init(TEST_ORG)
    app.deploy([FIXTURES / "workers" / "wait_a_day.bpmn"])
    for _ in range(INSTANCES):
        app.start("wait_a_day", {})
    return app, (datetime.now(UTC) + timedelta(days=2)).isoformat()


def assert_each_fired_once(app) -> None:
    assert counts(app) == (INSTANCES, INSTANCES)
    with app.db.transaction() as s:
        per_instance = s.execute(select(Event.instance_id, func.count()).where(Event.type == "timer_fired")
                                 .group_by(Event.instance_id)).all()
    assert len(per_instance) == INSTANCES and {n for _, n in per_instance} == {1}
    assert app.verify()["ok"]


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_workers_share_the_due_timers_and_fire_each_exactly_once(make_pmo, db_url):
    app, now = setup_due_instances(make_pmo)
    workers = [worker(db_url, now), worker(db_url, now)]
    try:
        assert wait_until(lambda: counts(app)[0] == INSTANCES, 240), f"not all fired: {counts(app)}"
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        stop(*workers)
    assert_each_fired_once(app)


def test_a_worker_killed_mid_run_loses_nothing_on_postgresql(make_pmo, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("scale-out runs on PostgreSQL: SQLite serialises writers, so one worker does all the work")
    app, now = setup_due_instances(make_pmo)
    first, second = worker(db_url, now), worker(db_url, now)
    try:
        assert wait_until(lambda: len(firing_processes(app)) == 2, 120), "the two workers did not both fire"
        first.kill()  # mid-run, possibly mid-transaction: what it had not committed is picked up again
        first.wait()
        assert counts(app)[0] < INSTANCES, "the kill landed after the work was done: raise INSTANCES"
        assert wait_until(lambda: counts(app)[0] == INSTANCES, 240), f"not all fired: {counts(app)}"
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, second.stderr.read()
    finally:
        stop(first, second)
    assert_each_fired_once(app)
    assert len(firing_processes(app)) == 2
