"""Retention: `audit archive` writes finished instances' history to a file that verifies on its own, then removes it
from the database, recording the act; `audit verify --file` checks an archive, and an edited one is caught (also
when the editor re-computed every hash, by the digest the database recorded). On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import FIXTURES
from pmoflow.engine import audit, runtime
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import Event, EventFact, HumanTask, ProcessInstance

GATE = FIXTURES / "audit_trail"


pytestmark = pytest.mark.usefixtures("cli_handlers")


@pytest.fixture
def finished(pmo, make_pmo):
    """Two finished instances (one completed, one terminated) and one still running."""
    pmo.deploy([GATE])
    bob, carol = make_pmo("bob"), make_pmo("carol")
    done = bob.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    [task] = bob.tasks(all_tasks=True)
    carol.complete(task["id"], {"gateDecision": "Go"})
    ended = bob.start("audit_gate", {"project": "Zeus", "score": 13})["instance_id"]
    bob.terminate(ended, "withdrawn")
    running = bob.start("audit_gate", {"project": "Hermes", "score": 9})["instance_id"]
    return bob, done, ended, running


def cli(db_url: str, *args, user: str = "bob"):
    for cache in (runtime._CACHE, runtime._SPECS):
        cache.clear()
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(
        main, ["--db", db_url, "--user", user, *[str(a) for a in args]])


def counts(app, instance_ids) -> dict[str, int]:
    with app.db.transaction() as s:
        events = select(Event.id).where(Event.instance_id.in_(instance_ids))
        return {"instances": s.scalar(select(func.count()).where(ProcessInstance.id.in_(instance_ids))),
                "events": s.scalar(select(func.count()).select_from(events.subquery())),
                "facts": s.scalar(select(func.count()).where(EventFact.event_id.in_(events))),
                "tasks": s.scalar(select(func.count()).where(HumanTask.instance_id.in_(instance_ids)))}


def test_an_archive_round_trip(finished, db_url, tmp_path):
    app, done, ended, running = finished
    histories = {i: app.history(i) for i in (done, ended)}
    assert counts(app, [done, ended])["events"] > 0
    path = tmp_path / "2027.pmoarchive"
    result = cli(db_url, "audit", "archive", "--before", "2999-01-01", "--to", path, "--json")
    assert result.exit_code == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["instance_ids"] == [done, ended] and written["events"] == sum(map(len, histories.values()))
    assert counts(app, [done, ended]) == {"instances": 0, "events": 0, "facts": 0, "tasks": 0}
    assert app.show(running)["status"] == "running"  # unfinished instances stay
    with pytest.raises(NotFound):
        app.show(done)
    with pytest.raises(NotFound, match=f"instance {done} was archived to 2027.pmoarchive"):
        app.audit_events(instance=done)
    for args in (["report", done], ["audit", "verify", done]):
        gone = cli(db_url, *args)
        assert gone.exit_code == 1 and f"instance {done} was archived to 2027.pmoarchive" in gone.stderr
    [archived] = app.audit_events(types=["archived"])
    assert archived["actor"] == "bob" and archived["payload"]["digest"] == written["digest"]
    assert archived["payload"]["instances"] == [done, ended]
    assert app.verify_record()["ok"]  # the database's record still verifies, archive chain included
    check = cli(db_url, "audit", "verify", "--file", path)
    assert check.exit_code == 0, check.stderr
    assert f"ok: archive {path} verifies: 2 instances, {written['events']} events" in check.stdout
    assert "recorded in this database as archive event 1" in check.stdout
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["format"] == "pmoflow-audit-archive" and lines[-1]["end"] is True
    for record in lines[1:-1]:
        instance_id = record["instance"]["instance_id"]
        assert [(e["seq"], e["type"], e["hash"]) for e in record["events"]] == [
            (e["seq"], e["type"], e["hash"]) for e in histories[instance_id]]
    again = cli(db_url, "audit", "archive", "--before", "2999-01-01", "--to", tmp_path / "again.jsonl")
    assert again.exit_code == 0 and "nothing archived, no file written" in again.stdout
    assert not (tmp_path / "again.jsonl").exists()


def edit(path, change) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines)
    path.write_text("".join(json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
                            for line in lines))


def rehash(lines) -> None:
    """What a careful forger would do: re-compute every event hash, chain and head, and the digest."""
    for record in lines[1:-1]:
        prev = ""
        for event in record["events"]:
            event["prev_hash"] = prev
            ns = SimpleNamespace(**{**event, "at": datetime.fromisoformat(event["at"])})
            event["hash"] = prev = audit.event_hash(ns)
        record["instance"]["last_hash"] = prev
    digest = hashlib.sha256()
    for line in lines[:-1]:
        digest.update((json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode())
    lines[-1]["digest"] = digest.hexdigest()


@pytest.fixture
def archived(finished, tmp_path):
    app = finished[0]
    path = tmp_path / "archive.jsonl"
    app.archive("2999-01-01", path)
    return app, path


def test_an_edited_archive_is_caught(archived, db_url):
    app, path = archived

    def forge(lines):
        lines[1]["events"][3]["actor"] = "mallory"

    edit(path, forge)
    result = app.verify_archive(path)
    problems = [f["problem"] for f in result["findings"]]
    assert not result["ok"]
    assert "event 4 was altered after it was written" in problems
    assert "the file's digest does not match its content (the file was edited)" in problems
    check = cli(db_url, "audit", "verify", "--file", path)
    assert check.exit_code == 1 and check.stderr.startswith(f"error: the archive {path} was changed")
    assert "line 2: instance" in check.stderr and "Traceback" not in check.stderr


def test_an_archive_edited_and_rehashed_is_caught_by_the_database_record(archived):
    app, path = archived

    def forge(lines):
        lines[1]["events"][3]["actor"] = "mallory"
        rehash(lines)

    edit(path, forge)
    alone = Pmoflow(f"sqlite:///{path.parent / 'no-such.db'}").verify_archive(path)
    assert alone["ok"] and alone["note"] == "no database at hand: the file was checked on its own"
    result = app.verify_archive(path)
    assert not result["ok"]
    problems = [f["problem"] for f in result["findings"]]
    assert any("differs from the file's: the file was changed since" in p for p in problems)
    if result["signed"]:  # with the audit key at hand (beside a SQLite database), the signature tells too
        assert any(p.startswith("the archive's signature does not match its content") for p in problems)


@pytest.mark.parametrize("damage, problem", [
    (lambda lines: lines[1]["events"].pop(2), "event 3 is missing or out of order"),
    (lambda lines: lines[1]["events"].pop(), "the chain ends at event"),
    (lambda lines: lines[0].update(created_by="mallory"), "the file's digest does not match"),
    (lambda lines: lines.pop(), "the file ends without its closing line"),
    (lambda lines: lines.pop(1), "the closing line counts 2 instances"),
    (lambda lines: lines[1]["events"].reverse(), "event 1 is missing or out of order"),
])
def test_each_kind_of_damage_to_an_archive_is_named(archived, damage, problem):
    app, path = archived
    edit(path, damage)
    result = app.verify_archive(path)
    assert not result["ok"]
    assert any(f["problem"].startswith(problem) for f in result["findings"]), result["findings"]


def test_archive_input_errors_are_plain(finished, db_url, tmp_path):
    app, done, *_ = finished
    existing = tmp_path / "taken.jsonl"
    existing.write_text("keep me")
    for args, fragment in [
        (["--before", "2999-01-01", "--to", existing], "exists already"),
        (["--before", "31/12/2027", "--to", tmp_path / "a.jsonl"], "--before: '31/12/2027' is not a date"),
        (["--before", "2999-01-01", "--to", tmp_path / "missing" / "a.jsonl"], "does not exist"),
    ]:
        result = cli(db_url, "audit", "archive", *args)
        assert result.exit_code == 1 and fragment in result.stderr and "Traceback" not in result.stderr
    assert existing.read_text() == "keep me" and app.show(done)["status"] == "completed"
    assert cli(db_url, "audit", "archive", "--to", tmp_path / "b.jsonl").exit_code == 2
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("hello\n")
    for path, fragment in [(not_archive, "is not a pmoflow audit archive"), (tmp_path / "nope.jsonl", "cannot read"),
                           (existing, "is not a pmoflow audit archive")]:
        result = cli(db_url, "audit", "verify", "--file", path)
        assert result.exit_code == 1 and fragment in result.stderr and "Traceback" not in result.stderr
    assert cli(db_url, "audit", "verify", "1", "--file", not_archive).exit_code == 2
    with pytest.raises(InvalidInput):
        app.verify_archive(tmp_path)


def test_a_failed_removal_leaves_no_file_and_removes_nothing(finished, tmp_path, monkeypatch):
    app, done, ended, _ = finished
    path = tmp_path / "a.jsonl"

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(audit, "add_archive_event", broken)
    with pytest.raises(RuntimeError):
        app.archive("2999-01-01", path)
    assert not path.exists()
    assert counts(app, [done, ended])["instances"] == 2 and app.verify_record()["ok"]


def test_only_instances_finished_before_the_date_are_archived(finished, tmp_path):
    app, done, ended, running = finished
    result = app.archive("2000-01-01", tmp_path / "old.jsonl")
    assert result["instances"] == 0 and not (tmp_path / "old.jsonl").exists()
    assert counts(app, [done, ended, running])["instances"] == 3
