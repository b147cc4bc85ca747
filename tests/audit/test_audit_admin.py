"""Administrative acts (suspend, resume, terminate, skip, data, retry): each changes what it says, is recorded with
the data before and after and the actor, and is refused in plain words when it does not apply (exit 3 for a state
conflict). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import FIXTURES
from pmoflow.engine import clock, runtime
from pmoflow.engine.cli import main
from pmoflow.engine.errors import Conflict, InvalidInput, NotFound
from pmoflow.engine.models import HumanTask, ProcessInstance

GATE = FIXTURES / "audit_trail"


pytestmark = pytest.mark.usefixtures("cli_handlers")


@pytest.fixture
def gate(pmo, make_pmo):
    """The audit-trail fixture process deployed; bob (Project Manager) starts, carol (Quality Director) decides."""
    pmo.deploy([GATE])
    return make_pmo("bob"), make_pmo("carol")


def cli(db_url: str, *args, user: str = "bob"):
    for cache in (runtime._CACHE, runtime._SPECS):
        cache.clear()
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(
        main, ["--db", db_url, "--user", user, *[str(a) for a in args]])


def assert_refused(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr + result.stdout
    assert fragment in result.stderr, result.stderr


def last(app, instance_id: int, type_: str) -> dict:
    return [e for e in app.history(instance_id) if e["type"] == type_][-1]


def decide_task(app, instance_id: int) -> dict:
    [task] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == instance_id]
    return task


def test_suspend_holds_the_instance_and_resume_releases_it(gate, db_url):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    task = decide_task(bob, instance_id)
    assert bob.suspend(instance_id, reason="audit hold")["status"] == "suspended"
    event = last(bob, instance_id, "suspend")
    assert event["actor"] == "bob" and event["payload"]["reason"] == "audit hold"
    assert event["payload"]["before"]["status"] == "running"
    assert event["payload"]["before"]["open_tasks"][0]["bpmn_id"] == "gate_decision"
    assert event["payload"]["after"] == {"status": "suspended"}
    with pytest.raises(Conflict, match="is suspended"):
        carol.complete(task["id"], {"gateDecision": "Go"})
    with pytest.raises(Conflict, match="is suspended"):
        carol.claim(task["id"])
    later = datetime.now(UTC) + timedelta(days=6)  # the 5-day reminder is due, but the worker leaves it
    assert bob.acting_as("pmo.admin").run_due(later)["fired"] == []
    assert bob.resume(instance_id, reason="hold lifted")["status"] == "running"
    assert last(bob, instance_id, "resume")["payload"]["after"] == {"status": "running"}
    # timers that came due meanwhile fire now
    assert bob.acting_as("pmo.admin").run_due(later)["fired"] == [instance_id]
    carol.complete(task["id"], {"gateDecision": "Go"})
    assert bob.show(instance_id)["status"] == "completed"
    assert bob.verify_record(instance_id)["ok"]


def test_suspend_and_resume_refuse_what_does_not_apply(gate, db_url):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    assert_refused(cli(db_url, "resume", instance_id), 3, "it can be resumed only when suspended")
    assert cli(db_url, "suspend", instance_id, "--reason", "hold").exit_code == 0
    assert_refused(cli(db_url, "suspend", instance_id), 3, f"instance {instance_id} is suspended")
    assert_refused(cli(db_url, "complete", decide_task(bob, instance_id)["id"], "--data", '{"gateDecision": "Go"}',
                       user="carol"), 3, "is suspended")
    resumed = cli(db_url, "resume", instance_id, "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["status"] == "running"
    assert_refused(cli(db_url, "suspend", 999), 1, "no instance 999")
    assert_refused(cli(db_url, "suspend", instance_id, user="nobody"), 4, "unknown user")


def test_an_instance_in_error_suspended_resumes_into_error(gate):
    bob, _ = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 13})["instance_id"]
    assert bob.suspend(instance_id)["status"] == "suspended"
    assert bob.resume(instance_id)["status"] == "error"
    assert bob.show(instance_id)["error"]["bpmn_id"] == "compute_index"


def test_terminate_cancels_the_workflow_and_its_open_tasks(gate, db_url):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    task = decide_task(bob, instance_id)
    result = cli(db_url, "terminate", instance_id, "--reason", "project cancelled")
    assert result.exit_code == 0 and "terminated" in result.stdout
    shown = bob.show(instance_id)
    assert shown["status"] == "terminated" and shown["next_due"] is None
    assert [t["state"] for t in shown["tasks"]] == ["cancelled"]
    assert bob.tasks(all_tasks=True) == []
    types = [e["type"] for e in bob.history(instance_id)]
    assert types[-2:] == ["terminate", "task_cancelled"]
    payload = last(bob, instance_id, "terminate")["payload"]
    assert payload["reason"] == "project cancelled"
    assert payload["before"]["status"] == "running" and payload["before"]["data"]["project"] == "Apollo"
    assert payload["after"] == {"status": "terminated", "cancelled_tasks": [task["id"]]}
    with pytest.raises(Conflict):
        carol.complete(task["id"], {"gateDecision": "Go"})
    assert_refused(cli(db_url, "terminate", instance_id), 3, "is terminated")
    assert bob.acting_as("pmo.admin").run_due(datetime.now(UTC) + timedelta(days=30))["fired"] == []
    assert bob.verify_record(instance_id)["ok"]


def test_terminate_refuses_a_completed_instance_and_ends_one_in_error(gate, db_url):
    bob, carol = gate
    done = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    carol.complete(decide_task(bob, done)["id"], {"gateDecision": "Stop"})
    assert_refused(cli(db_url, "terminate", done), 3,
                   "is completed; it can be terminated only when running, waiting, in error or suspended")
    failed = bob.start("audit_gate", {"project": "Zeus", "score": 13})["instance_id"]
    assert bob.terminate(failed)["status"] == "terminated"
    before = last(bob, failed, "terminate")["payload"]["before"]
    assert before["status"] == "error" and before["error"]["bpmn_id"] == "compute_index"


def test_skip_marks_the_failed_task_done_with_data_and_runs_on(gate, db_url):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 13})["instance_id"]
    assert bob.show(instance_id)["status"] == "error"
    result = cli(db_url, "skip", instance_id, "--data", '{"index": 130}', "--reason", "index set by hand",
                 "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "running"
    types = [e["type"] for e in bob.history(instance_id)]
    assert types == ["instance_started", "error", "skip", "decision", "task_ready"]
    skip = last(bob, instance_id, "skip")
    assert skip["task"] == "compute_index" and skip["actor"] == "bob"
    assert skip["payload"]["reason"] == "index set by hand"
    assert skip["payload"]["before"]["status"] == "error"
    assert skip["payload"]["before"]["error"]["message"].startswith("ZeroDivisionError")
    assert skip["payload"]["before"]["data"] == {"project": "Apollo", "score": 13}
    assert skip["payload"]["after"] == {"status": "running", "data": {"project": "Apollo", "score": 13,
                                                                       "index": 130}}
    carol.complete(decide_task(bob, instance_id)["id"], {"gateDecision": "Go"})
    final = bob.show(instance_id)
    assert final["status"] == "completed" and final["data"]["index"] == 130
    assert_refused(cli(db_url, "skip", instance_id), 3, "is completed; it can be skipped only when in error")


def test_skip_refuses_a_gateway_and_changes_nothing(pmo, db_url):
    pmo.deploy([FIXTURES / "bad" / "condition_error.bpmn"])
    instance_id = pmo.start("cli_condition_error", {})["instance_id"]
    before = pmo.history(instance_id)
    assert_refused(cli(db_url, "skip", instance_id, user="alice"), 3, "is a gateway")
    assert pmo.history(instance_id) == before and pmo.show(instance_id)["status"] == "error"


def test_skip_after_a_decision_that_matched_no_rule(pmo, make_pmo, tmp_path):
    """The failed task already ran (its table matched nothing): skipping gives it the result by hand."""
    folder = tmp_path / "nodefault"
    shutil.copytree(GATE, folder)
    dmn = folder / "audit_gate_recommendation.dmn"
    dmn.write_text(re.sub(r'<rule id="Rule_default">.*?</rule>', "", dmn.read_text(), flags=re.S))
    pmo.deploy([folder])
    bob = make_pmo("bob")
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 2})["instance_id"]
    assert "matched no rule" in bob.show(instance_id)["error"]["message"]
    assert bob.skip(instance_id, {"recommendation": "Stop"})["status"] == "running"
    [task] = bob.tasks(all_tasks=True)
    assert make_pmo("carol").task(task["id"])["data"]["recommendation"] == "Stop"


def test_data_edit_changes_the_current_data_and_records_before_and_after(gate, db_url):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    result = cli(db_url, "data", instance_id, "--set", '{"project": "Apollo 11", "budget": 5}',
                 "--reason", "typo in the request", "--json")
    assert result.exit_code == 0, result.stderr
    edit = last(bob, instance_id, "data_edit")
    assert edit["payload"]["before"] == {"project": "Apollo"}
    assert edit["payload"]["after"] == {"project": "Apollo 11", "budget": 5}
    assert edit["payload"]["reason"] == "typo in the request" and "gate_decision" in edit["payload"]["tasks"]
    task = decide_task(bob, instance_id)
    assert carol.task(task["id"])["data"]["project"] == "Apollo 11"
    carol.complete(task["id"], {"gateDecision": "Go"})
    final = bob.show(instance_id)["data"]
    assert (final["project"], final["budget"]) == ("Apollo 11", 5)


def test_data_edit_refusals(gate, db_url):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    assert_refused(cli(db_url, "data", instance_id, "--set", "{}"), 1, "nothing to set")
    assert_refused(cli(db_url, "data", instance_id, "--set", "[1]"), 1, "must be a JSON object")
    assert_refused(cli(db_url, "data", instance_id, "--set", '{"lane_owners": {}}'), 1, "route tasks")
    assert_refused(cli(db_url, "data", instance_id, "--set", '{"typename": 1}'), 1, "reserved")
    assert_refused(cli(db_url, "data", instance_id, "--set", "{oops"), 1, "not valid JSON")
    failed = bob.start("audit_gate", {"project": "Zeus", "score": 13})["instance_id"]
    assert_refused(cli(db_url, "data", failed, "--set", '{"score": 1}'), 3, "retry")
    carol.complete(decide_task(bob, instance_id)["id"], {"gateDecision": "Go"})
    assert_refused(cli(db_url, "data", instance_id, "--set", '{"score": 1}'), 3, "is completed")
    with pytest.raises(NotFound):
        bob.edit_data("abc", {"score": 1})
    with pytest.raises(InvalidInput):
        bob.edit_data(instance_id, {"_x": 1})


def test_retry_records_the_data_before_and_after(gate):
    bob, _ = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 13})["instance_id"]
    with pytest.raises(InvalidInput, match="needs a reason"):
        bob.retry(instance_id, {"score": 12})
    assert bob.retry(instance_id, {"score": 12}, reason="the score was mistyped")["status"] == "running"
    retry = last(bob, instance_id, "retry")
    assert retry["payload"]["before"]["status"] == "error"
    assert retry["payload"]["before"]["data"]["score"] == 13
    assert retry["payload"]["after"] == {"status": "running", "data": {"project": "Apollo", "score": 12}}
    assert retry["payload"]["data"] == {"score": 12}  # what it always recorded stays


def test_every_administrative_act_is_in_the_record_with_its_actor_and_the_chain_verifies(gate, db_url):
    bob, _ = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    bob.suspend(instance_id, "a")
    bob.edit_data(instance_id, {"score": 10}, "b")
    bob.resume(instance_id, "c")
    bob.terminate(instance_id, "d")
    acts = bob.audit_events(instance=instance_id, types=["suspend", "data_edit", "resume", "terminate"])
    assert [(e["type"], e["actor"], e["payload"]["reason"]) for e in acts] == [
        ("suspend", "bob", "a"), ("data_edit", "bob", "b"), ("resume", "bob", "c"), ("terminate", "bob", "d")]
    assert all({"before", "after"} <= set(e["payload"]) for e in acts)
    assert bob.verify_record()["ok"]
    with bob.db.transaction() as s:
        rows = s.scalars(select(HumanTask.state).where(HumanTask.instance_id == instance_id)).all()
        assert rows == ["cancelled"]
        assert s.get(ProcessInstance, instance_id).status == "terminated"


def test_a_late_completion_is_marked_late(gate):
    bob, carol = gate
    instance_id = bob.start("audit_gate", {"project": "Apollo", "score": 9})["instance_id"]
    task = decide_task(bob, instance_id)
    due = datetime.fromisoformat(task["due"])
    with clock.frozen(due + timedelta(hours=1)):
        carol.complete(task["id"], {"gateDecision": "Go"})
    [late] = bob.audit_events(late=True)
    assert (late["instance_id"], late["type"], late["actor"]) == (instance_id, "task_completed", "carol")


def test_admin_commands_need_an_instance_id(gate, db_url):
    for command in ("suspend", "resume", "terminate", "skip"):
        assert_refused(cli(db_url, command, "x1"), 1, "ids are numbers")
    assert cli(db_url, "suspend").exit_code == 2


def test_the_bundled_path_exists():
    assert Path(GATE / "audit_gate.bpmn").is_file()
