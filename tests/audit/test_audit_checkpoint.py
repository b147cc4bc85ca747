"""Checkpoints an auditor keeps, and archives: what even someone holding the audit key cannot rewrite unseen once a
checkpoint is out of their reach; signed archives, a forged or foreign archive, and a recorded archive whose file
is gone. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from insider import GATE, KEY_FILE, assert_reported, cli, delete_instance, rewrite, sql
from test_audit_archive import edit, rehash

from conftest import TEST_ORG
from pmoflow.engine import anchor, audit

pytestmark = pytest.mark.usefixtures("cli_handlers")


@pytest.fixture
def record(make_pmo, tmp_path, monkeypatch):
    """An anchored record with two finished gates and one waiting; a checkpoint taken of it."""
    monkeypatch.setenv(KEY_FILE, str(tmp_path / "audit.key"))
    app = make_pmo("bob")
    app.init(TEST_ORG)
    app.deploy([GATE])
    carol = make_pmo("carol")
    ids = []
    for project in ("Apollo", "Zeus"):
        ids.append(app.start("audit_gate", {"project": project, "score": 6})["instance_id"])
        [task] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == ids[-1]]
        carol.complete(task["id"], {"gateDecision": "Go"})
    ids.append(app.start("audit_gate", {"project": "Hermes", "score": 9})["instance_id"])
    point = tmp_path / "2027-q1.checkpoint"
    return app, ids, point


def reseal(app) -> None:
    """The insider who holds the key as well: every seal made again over the rewritten record."""
    sql(app, "DELETE FROM audit_seals")
    with app.db.transaction() as session:
        anchor.seal_existing(session, anchor.find_key(app.db.url)[0])


def test_a_checkpoint_is_signed_and_an_honest_record_extends_it(record, db_url):
    app, ids, point = record
    made = cli(db_url, "audit", "checkpoint", "--to", point)
    assert made.exit_code == 0 and f"written to {point}" in made.stdout, made.stderr
    saved = json.loads(point.read_text())
    assert saved["heads"][f"instance/{ids[0]}"][0] > 1 and saved["mac"]
    [task] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == ids[2]]
    assert cli(db_url, "claim", task["id"], user="carol").exit_code == 0  # history goes on after the checkpoint
    ok = cli(db_url, "audit", "verify", "--checkpoint", point)
    assert ok.exit_code == 0, ok.stderr
    again = cli(db_url, "audit", "checkpoint", "--to", point)
    assert again.exit_code == 1 and "exists already" in again.stderr


def test_what_the_key_holder_rewrites_shows_against_a_checkpoint(record, db_url):
    app, ids, point = record
    app.checkpoint(point)
    rewrite(app, f"instance/{ids[0]}", lambda events: events[2].update(actor="mallory"))
    rewrite(app, f"instance/{ids[1]}", keep=2)
    sql(app, "DELETE FROM task_candidates WHERE task_id IN (SELECT id FROM human_tasks WHERE instance_id = :i)",
        i=ids[1])
    sql(app, "DELETE FROM human_tasks WHERE instance_id = :i", i=ids[1])
    delete_instance(app, ids[2], seal=True)
    sql(app, "DELETE FROM event_facts")  # the key holder hides the facts too: they would tell on the rewrite
    with app.db.transaction() as session:
        audit.rebuild_facts(session)
    reseal(app)
    blind = app.verify_record()
    assert blind["ok"], blind["findings"]  # with database and key, a rewrite passes: the honest limit
    stderr = assert_reported(db_url, f"instance/{ids[0]}", "the history was re-written since", "--checkpoint", point)
    assert f"instance/{ids[1]}: the chain has 2 events" in stderr and "it was truncated since" in stderr
    assert f"instance/{ids[2]}: the checkpoint of" in stderr and "deleted from the database" in stderr


def test_an_edited_checkpoint_is_caught_and_a_foreign_file_refused(record, db_url, tmp_path):
    app, ids, point = record
    app.checkpoint(point)
    saved = json.loads(point.read_text())
    del saved["heads"][f"instance/{ids[0]}"]
    point.write_text(json.dumps(saved))
    assert_reported(db_url, "checkpoint", "the checkpoint's signature does not match", "--checkpoint", point)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    refused = cli(db_url, "audit", "verify", "--checkpoint", notes)
    assert refused.exit_code == 1 and "is not a pmoflow audit checkpoint" in refused.stderr


def test_a_checkpoint_needs_the_key(record, db_url, monkeypatch):
    app, _, point = record
    monkeypatch.delenv(KEY_FILE)
    refused = cli(db_url, "audit", "checkpoint", "--to", point)
    assert refused.exit_code == 1 and "a checkpoint is signed with the audit key" in refused.stderr
    assert not point.exists()


def test_archives_are_signed_and_each_recorded_archive_is_looked_for(record, db_url, tmp_path):
    app, ids, point = record
    app.checkpoint(point)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    written = app.archive("2999-01-01", shelf / "2027.pmoarchive")
    assert written["instance_ids"] == ids[:2]
    assert "signature" in json.loads((shelf / "2027.pmoarchive").read_text().splitlines()[-1])
    ok = cli(db_url, "audit", "verify", "--archives", shelf, "--checkpoint", point)
    assert ok.exit_code == 0, ok.stderr  # archived streams extend the checkpoint through their archive
    assert cli(db_url, "audit", "verify", "--file", shelf / "2027.pmoarchive").exit_code == 0
    (shelf / "2027.pmoarchive").rename(tmp_path / "elsewhere.pmoarchive")
    assert_reported(db_url, "archive", "archive 2027.pmoarchive (archive event 1) is missing from", "--archives", shelf)


def test_a_forged_archive_under_a_new_id_is_reported(record, db_url, tmp_path):
    app, ids, _ = record
    path = tmp_path / "2027.pmoarchive"
    app.archive("2999-01-01", path)

    def forge(lines):
        lines[0]["archive_id"] = "00000000-0000-0000-0000-000000000000"
        lines[1]["events"][3]["actor"] = "mallory"
        rehash(lines)

    edit(path, forge)
    result = cli(db_url, "audit", "verify", "--file", path)
    assert result.exit_code == 1
    assert "this database has no record of writing this archive: it is foreign" in result.stderr
    assert "the archive's signature does not match its content" in result.stderr
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    path.rename(shelf / "forged.pmoarchive")
    stderr = assert_reported(db_url, "archive", "forged.pmoarchive in", "--archives", shelf)
    assert "archive 2027.pmoarchive (archive event 1) is missing" in stderr
