"""The hostile corpus: an insider with database access (raw SQL, pmoflow's own hash function) rewrites each part of
the record, and `audit verify` reports it (exit 1, a line naming the stream), on SQLite and PostgreSQL. What the
hash links alone would have passed is caught by the seals made with the audit key (kept outside the database);
what decides behaviour without being an event (spec, state, facts, roles, candidates) is re-derived and compared.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from insider import GATE, KEY_FILE, assert_reported, cli, delete_instance, events_of, problems, rewrite, sql

from conftest import TEST_ORG
from pmoflow.engine import anchor

pytestmark = pytest.mark.usefixtures("cli_handlers")


@pytest.fixture
def record(make_pmo, db_url, tmp_path, monkeypatch):
    """An anchored record: a completed gate (bob started it, carol decided), a gate waiting for its decision."""
    monkeypatch.setenv(KEY_FILE, str(tmp_path / "audit.key"))
    app = make_pmo("bob")
    app.init(TEST_ORG)
    app.deploy([GATE])
    carol = make_pmo("carol")
    done = app.start("audit_gate", {"project": "Apollo", "score": 6})["instance_id"]
    [task] = app.tasks(all_tasks=True)
    carol.complete(task["id"], {"gateDecision": "Go"})
    open_ = app.start("audit_gate", {"project": "Hermes", "score": 9})["instance_id"]
    [waiting] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == open_]
    verdict = app.verify_record()
    assert verdict["ok"] and verdict["anchoring"]["checked"], verdict
    return app, done, open_, waiting["id"]


def test_an_honest_record_verifies_with_its_seals_checked(record, db_url):
    result = cli(db_url, "audit", "verify")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: ") and "sealed with the audit key since" in result.stdout


def test_a_rehashed_chain_with_its_head_moved_is_caught(record, db_url):
    app, done, *_ = record

    def backdate(events):
        events[0]["at"] -= timedelta(days=30)

    rewrite(app, f"instance/{done}", backdate)
    assert_reported(db_url, f"instance/{done}", "re-written (re-hashed) without the audit key")


def test_a_truncated_chain_with_its_head_moved_is_caught(record, db_url):
    app, done, *_ = record
    rewrite(app, f"instance/{done}", keep=3)
    assert_reported(db_url, f"instance/{done}", "events were added or removed without the audit key")


def test_a_deleted_instance_is_caught_by_its_seal_and_by_the_register(record, db_url):
    app, done, open_, _ = record
    delete_instance(app, done)
    assert_reported(db_url, f"instance/{done}", "its events are gone: deleted from the database")
    delete_instance(app, open_, seal=True)
    assert_reported(db_url, "anchor/register", "instances were deleted with their seals")


def test_a_forged_seal_is_caught(record, db_url):
    app, done, *_ = record
    rewrite(app, f"instance/{done}", keep=4)
    [head] = sql(app, "SELECT hash FROM events WHERE stream = :s AND seq = 4", s=f"instance/{done}")
    sql(app, "UPDATE audit_seals SET seq = 4, hash = :h WHERE stream = :s", h=head[0], s=f"instance/{done}")
    assert_reported(db_url, f"instance/{done}", "the seal was changed without the audit key")


def test_the_spec_that_runs_is_checked_against_its_deployment(record, db_url):
    app, *_ = record
    sql(app, "UPDATE process_definitions SET spec = replace(spec, 'Decide the gate', 'Wave it through') "
             "WHERE process_id = 'audit_gate'")
    assert_reported(db_url, "definition/audit_gate", "the stored spec of version 1 (what runs) was changed")
    [(spec,)] = sql(app, "SELECT spec FROM process_definitions WHERE process_id = 'audit_gate'")

    def agree(events):
        events[0]["payload"]["spec_hash"] = anchor.spec_hash(spec)

    rewrite(app, "definition/audit_gate", agree)  # the deployment event re-hashed to match the edited spec
    assert_reported(db_url, "definition/audit_gate", "re-written (re-hashed) without the audit key")


@pytest.mark.parametrize("edit, words", [
    ("UPDATE process_instances SET state = replace(state, 'Hermes', 'Zeus') WHERE id = :i", "its state"),
    ("UPDATE process_instances SET status = 'completed' WHERE id = :i", "its state, status or definition"),
    ("UPDATE process_instances SET started_by = 'carol' WHERE id = :i", "its state, status or definition"),
])
def test_instance_state_is_bound_to_its_last_event(record, db_url, edit, words):
    app, _, open_, _ = record
    sql(app, edit, i=open_)
    assert_reported(db_url, f"instance/{open_}", words)


@pytest.mark.parametrize("edit", [
    "UPDATE event_facts SET value = 'Stop' WHERE key = 'data.gateDecision'",
    "DELETE FROM event_facts WHERE key = '@role' AND value = 'Quality Director'",
    "INSERT INTO event_facts (event_id, key, value) SELECT id, '@late', 'true' FROM events "
    "WHERE type = 'task_completed'",
])
def test_the_facts_index_is_re_derived_from_the_events(record, db_url, edit):
    app, done, *_ = record
    sql(app, edit)
    assert_reported(db_url, f"instance/{done}", "the facts index of event")


@pytest.mark.parametrize("edit, words", [
    ("INSERT INTO task_candidates (task_id, kind, name) VALUES (:t, 'role', 'Sponsor')", "its candidates"),
    ("DELETE FROM task_candidates WHERE task_id = :t", "its candidates"),
    ("UPDATE human_tasks SET assignee = 'dave' WHERE id = :t", "its assignee"),
    ("UPDATE human_tasks SET form = NULL WHERE id = :t", "its form"),
    ("UPDATE human_tasks SET state = 'cancelled' WHERE id = :t", "its state"),
])
def test_the_inbox_is_re_derived_from_the_events(record, db_url, edit, words):
    app, _, open_, task = record
    sql(app, edit, t=task)
    assert_reported(db_url, f"instance/{open_}", f"task {task}: {words}")


def test_a_deleted_open_task_is_caught(record, db_url):
    app, _, open_, task = record
    sql(app, "DELETE FROM task_candidates WHERE task_id = :t", t=task)
    sql(app, "DELETE FROM human_tasks WHERE id = :t", t=task)
    assert_reported(db_url, f"instance/{open_}", f"task {task} was offered")


def test_roles_are_checked_against_the_organisation_chain(record, db_url):
    app, *_ = record
    sql(app, "INSERT INTO user_roles (user_name, role) VALUES ('dave', 'PMO Administrator')")
    assert_reported(db_url, "organisation", "user dave: roles in the database differ")
    [loaded] = [e for e in events_of(app, "organisation") if e["type"] == "organisation_loaded"]

    def grant(events):
        events[-1]["payload"]["added"]["dave"]["roles"].append("PMO Administrator")

    rewrite(app, "organisation", grant)  # the chain re-hashed to say dave always was an administrator
    assert loaded["seq"] == len(events_of(app, "organisation"))
    assert_reported(db_url, "organisation", "re-written (re-hashed) without the audit key")


def test_a_rehash_passes_the_links_but_not_the_key(record, db_url, monkeypatch):
    """Why the key matters: without it the same rewrite verifies, and verify says plainly it did not check."""
    app, done, *_ = record
    rewrite(app, f"instance/{done}", lambda events: events[1].update(actor="mallory"))
    monkeypatch.delenv(KEY_FILE)
    blind = cli(db_url, "audit", "verify")
    assert blind.exit_code == 1 and "facts index" in blind.stderr  # mallory holds no role: the facts tell
    assert "anchoring NOT checked: this record is sealed with an audit key, and no audit key is configured" \
        in blind.stderr


def test_problems_name_the_stream_once(record):
    app, done, open_, task = record
    sql(app, "UPDATE process_instances SET status = 'terminated' WHERE id = :i", i=open_)
    sql(app, "UPDATE human_tasks SET assignee = 'dave' WHERE id = :t", t=task)
    rewrite(app, f"instance/{done}", keep=2)
    found = problems(app)
    assert set(found) == {f"instance/{done}", f"instance/{open_}"}


def test_every_honest_act_keeps_the_record_verifying(record, make_pmo, db_url, tmp_path):
    """Claims, delegation, administrative acts, a new version and a migration, an archive, an organisation reload:
    each keeps seals, tasks, facts and roles in step, so verify stays ok with its seals checked."""
    app, done, open_, task = record
    carol, alice = make_pmo("carol"), make_pmo("alice")
    carol.claim(task)
    carol.unclaim(task)
    carol.claim(task)
    carol.delegate(task, "alice")
    app.suspend(open_, "waiting for the sponsor")
    app.resume(open_, "the sponsor answered")
    app.edit_data(open_, {"project": "Hermes II"}, reason="renamed by the board")
    second = tmp_path / "v2"
    second.mkdir()
    for source in GATE.iterdir():
        (second / source.name).write_text(source.read_text().replace("Gate passed", "Gate passed (v2)"))
    app.deploy([second])
    app.migrate(open_, 2, reason="the wording changed")
    alice.complete([t for t in alice.tasks() if t["instance_id"] == open_][0]["id"], {"gateDecision": "Go"})
    third = app.start("audit_gate", {"project": "Zeus", "score": 13})["instance_id"]
    app.terminate(third, "withdrawn")
    app.archive("2999-01-01", tmp_path / "all.pmoarchive")
    org = tmp_path / "org.toml"
    org.write_text(TEST_ORG.read_text().replace('roles = ["Sponsor"]', 'roles = ["Sponsor", "SQA"]'))
    app.init(org)
    result = cli(db_url, "audit", "verify", "--archives", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "sealed with the audit key since it began" in result.stdout
