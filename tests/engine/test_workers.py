"""Several worker processes share due timers: each fires exactly once, and a killed worker loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine.database import resolve_url
from pmoflow.engine.models import Event, ProcessInstance

INSTANCES = 400
PMOFLOW = Path(sys.executable).parent / "pmoflow"


@pytest.fixture
def watch(db_url) -> Iterator[Engine]:
    """What the test watches the workers through: a plain reader. pmoflow's own transactions begin IMMEDIATE on
    SQLite (they take the write lock first), so a test polling through them queued behind two busy workers for
    the lock and, on a loaded machine, past the busy timeout ("database is locked"). A reader waits for
    nothing but a commit in progress."""
    engine = create_engine(resolve_url(db_url), connect_args={"timeout": 60} if "sqlite" in db_url else {})
    yield engine
    engine.dispose()


def counts(watch: Engine) -> tuple[int, int]:
    """(completed instances, timer_fired events)."""
    with Session(watch) as s:
        done = s.scalar(select(func.count()).where(ProcessInstance.status == "completed"))
        fired = s.scalar(select(func.count()).where(Event.type == "timer_fired"))
    return done, fired


def firing_processes(watch: Engine) -> set[str]:
    with Session(watch) as s:
        return {p["process"] for p in s.scalars(select(Event.payload).where(Event.type == "timer_fired"))}


def worker(db_url: str, now: str) -> subprocess.Popen:
    return subprocess.Popen([str(PMOFLOW), "--db", db_url, "--user", "pmo.admin", "worker", "--now", now,
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def assert_each_fired_once(app, watch: Engine) -> None:
    assert counts(watch) == (INSTANCES, INSTANCES)
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


def test_two_workers_share_the_due_timers_and_fire_each_exactly_once(make_pmo, db_url, watch):
    app, now = setup_due_instances(make_pmo)
    workers = [worker(db_url, now), worker(db_url, now)]
    try:
        assert wait_until(lambda: counts(watch)[0] == INSTANCES, 240), f"not all fired: {counts(watch)}"
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        stop(*workers)
    assert_each_fired_once(app, watch)


def test_a_worker_killed_mid_run_loses_nothing_on_postgresql(make_pmo, db_url, watch):
    if not db_url.startswith("postgresql"):
        pytest.skip("scale-out runs on PostgreSQL: SQLite serialises writers, so one worker does all the work")
    app, now = setup_due_instances(make_pmo)
    first, second = worker(db_url, now), worker(db_url, now)
    try:
        assert wait_until(lambda: len(firing_processes(watch)) == 2, 120), "the two workers did not both fire"
        first.kill()  # mid-run, possibly mid-transaction: what it had not committed is picked up again
        first.wait()
        assert counts(watch)[0] < INSTANCES, "the kill landed after the work was done: raise INSTANCES"
        assert wait_until(lambda: counts(watch)[0] == INSTANCES, 240), f"not all fired: {counts(watch)}"
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, second.stderr.read()
    finally:
        stop(first, second)
    assert_each_fired_once(app, watch)
    assert len(firing_processes(watch)) == 2
