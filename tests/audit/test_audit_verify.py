"""Tampering with the audit log directly in the database is caught by `audit verify`, in each of four ways, in
instances' chains and in the deployment chains; findings name the instance (or process) and the sequence."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from pmoflow.engine import audit, cli
from pmoflow.engine.models import ProcessDefinition


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


def test_audit_verify_on_the_command_line(finished, db_url, cli_handlers):
    app, first, _ = finished
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["--db", db_url, "audit", "verify"])
    assert ok.exit_code == 0 and "every chain intact" in ok.stdout
    sql(app, "UPDATE events SET payload = :p WHERE instance_id = :i AND seq = 1", i=first,
        p=json.dumps({"data": {"title": "forged"}}))
    bad = runner.invoke(cli.main, ["--db", db_url, "audit", "verify", str(first)])
    assert bad.exit_code == 1
    assert f"instance/{first}: event 1 was altered after it was written" in bad.stderr


# -- the deployment chains, and findings by instance and sequence ----------------------------------------------

def test_findings_name_the_instance_and_the_sequence(finished):
    app, first, second = finished
    sql(app, "UPDATE events SET actor = 'mallory' WHERE instance_id = :i AND seq = 3", i=first)
    [finding] = app.verify_record()["findings"]
    assert finding == {"stream": f"instance/{first}", "kind": "instance", "instance_id": first, "process_id": None,
                       "seq": 3, "problem": "event 3 was altered after it was written"}
    assert app.verify_record(second)["ok"]
    sql(app, "DELETE FROM events WHERE instance_id = :i AND seq >= 2", i=second)
    [tail] = app.verify_record(second)["findings"]
    assert (tail["instance_id"], tail["seq"]) == (second, 2)


def test_an_altered_deployment_event_is_caught(finished):
    app, first, _ = finished
    sql(app, "UPDATE events SET actor = 'mallory' WHERE stream = 'definition/simple' AND seq = 1")
    [finding] = app.verify_record()["findings"]
    assert (finding["kind"], finding["process_id"], finding["seq"]) == ("definition", "simple", 1)
    assert finding["problem"] == "event 1 was altered after it was written"
    assert app.verify_record(first)["findings"] == [finding]  # an instance's check covers its process's deployments


def test_stored_process_files_changed_after_deployment_are_caught(finished):
    app, _, _ = finished
    with app.db.transaction() as s:
        definition = s.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == "simple"))
        definition.sources = {**definition.sources, "simple.bpmn": definition.sources["simple.bpmn"].replace(
            "total = amount * 2", "total = amount * 20")}
    [finding] = app.verify_record()["findings"]
    assert finding["process_id"] == "simple" and finding["seq"] == 1
    assert finding["problem"] == "the stored files of version 1 were changed after deployment"


def test_a_removed_deployment_event_is_caught(finished):
    app, _, _ = finished
    sql(app, "DELETE FROM events WHERE stream = 'definition/simple'")
    [finding] = app.verify_record()["findings"]
    assert finding["problem"] == "version 1 has no deployment event (removed?)"


def test_a_deployment_event_for_other_files_is_caught(finished):
    app, _, _ = finished
    with app.db.transaction() as s:
        definition = s.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == "simple"))
        definition.content_hash = audit.definition_content_hash({"other.bpmn": "<x/>"})
        definition.sources = {"other.bpmn": "<x/>"}
    [finding] = app.verify_record()["findings"]
    assert finding["problem"] == "version 1 does not match its deployment event (content hash differs)"


def test_events_of_an_instance_whose_row_was_deleted_are_caught(finished):
    app, first, _ = finished
    sql(app, "DELETE FROM task_candidates WHERE task_id IN (SELECT id FROM human_tasks WHERE instance_id = :i)",
        i=first)
    sql(app, "DELETE FROM human_tasks WHERE instance_id = :i", i=first)
    sql(app, "DELETE FROM process_instances WHERE id = :i", i=first)
    [finding] = app.verify_record()["findings"]
    assert finding["instance_id"] == first and "no longer in the database" in finding["problem"]


def test_the_content_hash_is_the_one_the_parser_computes(pmo):
    with pmo.db.transaction() as s:
        for definition in s.scalars(select(ProcessDefinition)):
            assert audit.definition_content_hash(definition.sources) == definition.content_hash


def test_audit_verify_reports_deployments_on_the_command_line(finished, db_url, cli_handlers):
    app, first, _ = finished
    sql(app, "UPDATE events SET payload = :p WHERE stream = 'definition/simple' AND seq = 1",
        p=json.dumps({"content_hash": "0" * 64, "files": []}))
    result = CliRunner().invoke(cli.main, ["--db", db_url, "audit", "verify", "--json"])
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)["findings"]
    assert (finding["stream"], finding["seq"]) == ("definition/simple", 1)
    assert "definition/simple: event 1 was altered after it was written" in result.stderr
