"""A worker keeps going through database failures that pass: PostgreSQL dropping its connections (as in a
restart), and SQLite writers competing for one file, where each takes its turn instead of timing out."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from conftest import FIXTURES, PG_URL, TEST_ORG, fresh_database
from pmoflow.engine.database import Database, resolve_url
from pmoflow.engine.models import Event, ProcessInstance

PMOFLOW = Path(sys.executable).parent / "pmoflow"


class Worker:
    """`pmoflow worker --verbose` in its own process; its stderr lines are collected as they come."""

    def __init__(self, db_url: str, now: str, interval: float = 0.1) -> None:
        self.proc = subprocess.Popen([str(PMOFLOW), "--db", db_url, "--user", "pmo.admin", "worker", "--now", now,
                                      "--interval", str(interval), "--verbose"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def passes(self) -> int:
        return sum(line.startswith("pass ") for line in list(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(predicate, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def fired_once_each(app, expected: int) -> bool:
    with app.db.transaction() as s:
        done = s.scalar(select(func.count()).where(ProcessInstance.status == "completed"))
        per_instance = s.execute(select(Event.instance_id, func.count()).where(Event.type == "timer_fired")
                                 .group_by(Event.instance_id)).all()
    return done == expected and len(per_instance) == expected and {n for _, n in per_instance} == {1}


def setup(make_pmo, instances: int):
    app = make_pmo("alice")
    app.init(TEST_ORG)
    app.deploy([FIXTURES / "workers" / "wait_a_day.bpmn"])
    for _ in range(instances):
        app.start("wait_a_day", {})
    return app, (datetime.now(UTC) + timedelta(days=2)).isoformat()


def terminate_backends(application_name: str) -> int:
    """Drop the connections of one application (this test's worker only) as a server restart would."""
    admin = create_engine(resolve_url(PG_URL))
    try:
        with admin.begin() as conn:
            return len(conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE application_name = :name AND pid <> pg_backend_pid()"),
                                    {"name": application_name}).all())
    finally:
        admin.dispose()


def test_the_worker_survives_its_postgresql_connections_being_dropped_and_fires_every_timer(make_pmo, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("a dropped server connection is PostgreSQL's; SQLite is a file")
    app, now = setup(make_pmo, 40)
    name = f"pmoflow_test_worker_{uuid.uuid4().hex[:10]}"
    worker = Worker(f"{db_url}&application_name={name}", now)
    try:
        dropped = []
        assert wait_until(lambda: dropped.append(terminate_backends(name)) or sum(dropped) > 0, 120), \
            "the worker never connected"  # dropped as soon as seen: in its first pass, firing the 40
        assert wait_until(lambda: fired_once_each(app, 40)), "not every timer fired exactly once"
        passes = worker.passes()
        assert wait_until(lambda: terminate_backends(name) > 0)  # idle between passes: the next finds it dead
        for _ in range(5):
            app.start("wait_a_day", {})
        assert wait_until(lambda: fired_once_each(app, 45) and worker.passes() > passes + 1)
        assert worker.stop() == 0, "".join(worker.lines)
    finally:
        worker.kill()
    log = "".join(worker.lines)
    assert "failed (1 in a row), trying again in" in log and "Traceback" not in log, log
    assert app.verify()["ok"]


def test_two_sqlite_workers_on_one_file_and_a_busy_user_never_crash(make_pmo, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's file lock; PostgreSQL shares work with row locks (test_workers)")
    app, now = setup(make_pmo, 30)
    workers = [Worker(db_url, now, interval=0.1), Worker(db_url, now, interval=0.1)]
    try:
        for _ in range(10):  # a user starting instances meanwhile: a third writer that must get its turns
            app.start("wait_a_day", {})
        assert wait_until(lambda: fired_once_each(app, 40)), "not every timer fired exactly once"
        assert [w.stop() for w in workers] == [0, 0], ["".join(w.lines) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w in workers:
        log = "".join(w.lines)
        assert w.passes() > 0 and "failed" not in log and "locked" not in log and "Traceback" not in log, log
    assert app.verify()["ok"]


HOG = r"""
import sys
from sqlalchemy import text
from pmoflow.engine.database import Database
db = Database(sys.argv[1])
for n in range(1, 2001):
    with db.transaction() as s:
        if s.execute(text("SELECT count(*) FROM stop")).scalar():
            break
        s.execute(text("INSERT INTO hog VALUES (:n)"), {"n": n})
        s.execute(text("SELECT sum(n) FROM hog")).scalar()  # a little work while holding the lock
"""


def test_a_writer_running_transactions_back_to_back_does_not_starve_another(tmp_path):
    """SQLite's lock has no queue: a waiter polls and the holder re-takes the lock first, so a busy worker
    starved everyone else past the busy timeout ("database is locked"). Writers now take turns."""
    with fresh_database("sqlite", tmp_path) as url:
        db = Database(url)
        with db.transaction() as s:
            s.execute(text("CREATE TABLE hog (n INTEGER)"))
            s.execute(text("CREATE TABLE stop (n INTEGER)"))
            s.execute(text("CREATE TABLE mine (n INTEGER)"))
        hog = subprocess.Popen([sys.executable, "-c", HOG, url])
        try:
            def hogged() -> int:
                with db.transaction() as s:
                    return s.execute(text("SELECT count(*) FROM hog")).scalar()
            assert wait_until(lambda: hogged() > 2, 60)
            before = hogged()
            for n in range(30):  # back to back, as the other writer
                with db.transaction() as s:
                    s.execute(text("INSERT INTO mine VALUES (:n)"), {"n": n})
            after = hogged()
            with db.transaction() as s:
                s.execute(text("INSERT INTO stop VALUES (1)"))
            assert hog.wait(timeout=60) == 0
        finally:
            hog.kill()
            db.dispose()
        # Both got turns: neither waited for the other to be done (before, one of them simply starved).
        assert after < 2000 and after - before >= 10, (before, after)
