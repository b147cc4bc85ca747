"""Tampering with the audit log directly in the database is caught by `audit verify`, in each of four ways."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from conftest import all_handlers
from pmoflow.engine import cli


@pytest.fixture
def finished(pmo):
    """A completed instance with a few events, and a second untouched one."""
    first = pmo.start("simple", {"title": "abc", "amount": 2})["instance_id"]
    second = pmo.start("simple", {"title": "def", "amount": 3})["instance_id"]
    [task] = [t for t in pmo.tasks() if t["instance_id"] == first]
    pmo.complete(task["id"], {"approved": True})
    assert pmo.verify()["ok"]
    return pmo, first, second


def sql(app, statement: str, **params) -> None:
    with app.db.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_an_altered_event_is_caught(finished):
    app, first, second = finished
    sql(app, "UPDATE events SET actor = 'mallory' WHERE instance_id = :i AND seq = 3", i=first)
    result = app.verify()
    problem = "event 3 was altered after it was written"
    assert result["findings"] == [{"stream": f"instance/{first}", "problem": problem}]
    assert app.verify(second)["ok"]


def test_a_deleted_event_is_caught_in_the_middle_and_at_the_end(finished):
    app, first, _ = finished
    sql(app, "DELETE FROM events WHERE instance_id = :i AND seq = 2", i=first)
    assert app.verify(first)["findings"][0]["problem"] == "event 2 is missing or out of order (found seq 3)"
    sql(app, "DELETE FROM events WHERE instance_id = :i AND seq >= 2", i=first)
    assert "the chain ends at event 1 but the instance recorded" in app.verify(first)["findings"][0]["problem"]


def test_an_inserted_event_is_caught(finished):
    app, first, _ = finished
    sql(app, "UPDATE events SET seq = seq + 100 WHERE instance_id = :i AND seq >= 3", i=first)
    sql(app, "UPDATE events SET seq = seq - 99 WHERE instance_id = :i AND seq >= 103", i=first)
    sql(app, "INSERT INTO events (stream, seq, instance_id, process_id, process_version, at, actor, type, payload, "
             "prev_hash, hash) SELECT stream, 3, instance_id, process_id, process_version, at, 'mallory', "
             "'task_completed', payload, hash, hash FROM events WHERE instance_id = :i AND seq = 2", i=first)
    problem = app.verify(first)["findings"][0]["problem"]
    assert problem.startswith("event 3 ")


def test_reordered_events_are_caught(finished):
    app, first, _ = finished
    sql(app, "UPDATE events SET seq = -1 WHERE instance_id = :i AND seq = 2", i=first)
    sql(app, "UPDATE events SET seq = 2 WHERE instance_id = :i AND seq = 3", i=first)
    sql(app, "UPDATE events SET seq = 3 WHERE instance_id = :i AND seq = -1", i=first)
    assert app.verify(first)["findings"][0]["problem"] == "event 2 was altered after it was written"


def test_audit_verify_on_the_command_line(finished, db_url, monkeypatch):
    app, first, _ = finished
    monkeypatch.setattr("pmoflow.engine.api.default_handlers", all_handlers)
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["--db", db_url, "audit", "verify"])
    assert ok.exit_code == 0 and "every chain intact" in ok.stdout
    sql(app, "UPDATE events SET payload = :p WHERE instance_id = :i AND seq = 1", i=first,
        p=json.dumps({"data": {"title": "forged"}}))
    bad = runner.invoke(cli.main, ["--db", db_url, "audit", "verify", str(first)])
    assert bad.exit_code == 1
    assert f"instance/{first}: event 1 was altered after it was written" in bad.stderr
