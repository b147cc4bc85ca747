"""The engine's properties: versions, transactions, locking, data traps, sandbox, timers, long loops."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import FIXTURES
from pmoflow.engine import audit, runtime, serialization
from pmoflow.engine.errors import Conflict, InvalidInput, InvalidProcess, PermissionDenied
from pmoflow.engine.models import Event, HumanTask, ProcessInstance
from pmoflow.engine.services.context import load_run


def snapshot(app, instance_id: int) -> dict:
    """Everything stored about one instance, to prove a failed command changed nothing."""
    with app.db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        tasks = [(t.id, t.state, t.assignee) for t in s.scalars(select(HumanTask).where(
            HumanTask.instance_id == instance_id).order_by(HumanTask.id))]
        events = s.scalar(select(func.count(Event.id)).where(Event.instance_id == instance_id))
        return {"lock": inst.lock_version, "state": inst.state, "status": inst.status, "tasks": tasks,
                "events": events}


def only_task(app, bpmn_id: str, instance_id: int) -> dict:
    [task] = [t for t in app.tasks(all_tasks=True) if t["bpmn_id"] == bpmn_id and t["instance_id"] == instance_id]
    return task


# -- deployment and versions ---------------------------------------------------------------------------

def test_unchanged_files_make_no_new_version_and_changed_ones_do(pmo, tmp_path):
    assert [p["created"] for p in pmo.deploy([FIXTURES / "simple.bpmn"])] == [False]
    running = pmo.start("simple", {"title": "old", "amount": 2})
    changed = tmp_path / "simple.bpmn"
    changed.write_text((FIXTURES / "simple.bpmn").read_text().replace("total = amount * 2", "total = amount * 3"))
    for form in ("simple-start.schema.json", "review.schema.json"):
        (tmp_path / form).write_text((FIXTURES / form).read_text())
    [v2] = pmo.deploy([changed])
    assert (v2["version"], v2["created"]) == (2, True)
    newer = pmo.start("simple", {"title": "new", "amount": 2})
    assert pmo.show(running["instance_id"])["version"] == 1
    assert pmo.show(running["instance_id"])["data"]["total"] == 4
    assert pmo.show(newer["instance_id"])["data"]["total"] == 6
    pmo.complete(only_task(pmo, "review", running["instance_id"])["id"], {"approved": False})
    assert pmo.show(running["instance_id"])["status"] == "completed"


def test_invalid_bpmn_lists_every_error_with_line_and_element_and_stores_nothing(pmo, tmp_path):
    broken = tmp_path / "broken.bpmn"
    text = (FIXTURES / "simple.bpmn").read_text()
    text = text.replace("total = amount * 2", "total = = 2").replace(
        "<bpmn:conditionExpression>approved == True", "<bpmn:conditionExpression>approved ==")
    broken.write_text(text)
    for form in ("simple-start.schema.json", "review.schema.json"):
        (tmp_path / form).write_text((FIXTURES / form).read_text())
    before = pmo.processes()
    with pytest.raises(InvalidProcess) as err:
        pmo.deploy([broken])
    assert len(err.value.details) == 2
    script_line = text.splitlines().index("      <bpmn:script>total = = 2") + 1
    column = text.splitlines()[script_line - 1].index("= 2") + 1  # the second '=', where Python stops
    assert f"{broken}:{script_line}:{column}: error: compute: script: syntax error: invalid syntax" in err.value.details
    assert any(":approved_gw" not in d and "f_approved: condition" in d for d in err.value.details)
    assert pmo.processes() == before


def test_reserved_ids_and_unquoted_timers_are_refused(pmo, tmp_path):
    bad = tmp_path / "bad.bpmn"
    bad.write_text((FIXTURES / "sla.bpmn").read_text().replace('"P2D"', "P2D").replace('id="sla_end"', 'id="End"')
                   .replace('targetRef="sla_end"', 'targetRef="End"'))
    with pytest.raises(InvalidProcess) as err:
        pmo.validate([bad])
    text = "\n".join(err.value.details)
    assert "End: the ids 'Start' and 'End' are reserved" in text
    assert 'approve_timeout: timer value P2D is not quoted' in text and 'write "P2D"' in text


# -- one command, one transaction ------------------------------------------------------------------------

def test_a_crash_after_the_state_write_stores_neither_state_nor_audit(pmo, monkeypatch):
    started = pmo.start("simple", {"title": "abc", "amount": 2})
    instance_id = started["instance_id"]
    task_id = only_task(pmo, "review", instance_id)["id"]
    before = snapshot(pmo, instance_id)
    original_save = runtime.Run.save

    def save_then_crash(self):
        original_save(self)  # state, projection and events are flushed to the database...
        raise RuntimeError("simulated crash before commit")  # ...and the transaction dies

    monkeypatch.setattr(runtime.Run, "save", save_then_crash)
    with pytest.raises(RuntimeError):
        pmo.complete(task_id, {"approved": True})
    monkeypatch.undo()
    assert snapshot(pmo, instance_id) == before
    pmo.complete(task_id, {"approved": True})  # the in-process cache did not keep the half-done step
    assert pmo.show(instance_id)["status"] == "completed"


def test_a_failing_audit_write_rolls_back_the_state_change(pmo, monkeypatch):
    instance_id = pmo.start("simple", {"title": "abc", "amount": 2})["instance_id"]
    task_id = only_task(pmo, "review", instance_id)["id"]
    before = snapshot(pmo, instance_id)
    original_add = audit.InstanceLog.add

    def add_or_fail(self, type_, *args, **kwargs):
        if type_ == "service_called":
            raise RuntimeError("audit store broken")
        return original_add(self, type_, *args, **kwargs)

    monkeypatch.setattr(audit.InstanceLog, "add", add_or_fail)
    with pytest.raises(RuntimeError):
        pmo.complete(task_id, {"approved": True})
    monkeypatch.undo()
    assert snapshot(pmo, instance_id) == before


# -- concurrency -------------------------------------------------------------------------------------------

def test_two_users_completing_one_task_at_once_exactly_one_wins(pmo, make_pmo):
    instance_id = pmo.start("sla", {})["instance_id"]
    pmo.complete(only_task(pmo, "prepare", instance_id)["id"], {})
    task_id = only_task(pmo, "approve", instance_id)["id"]
    contenders = [make_pmo("carol"), make_pmo("carol")]
    barrier, results = threading.Barrier(2), []

    def attempt(app):
        barrier.wait()
        try:
            results.append(app.complete(task_id, {})["status"])
        except Conflict as exc:
            results.append(f"conflict: {exc}")

    threads = [threading.Thread(target=attempt, args=(app,)) for app in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.split(":")[0] for r in results) == ["completed", "conflict"]
    completions = [e for e in pmo.history(instance_id) if e["type"] == "task_completed" and e["task"] == "approve"]
    assert len(completions) == 1


def test_a_stale_workflow_save_is_a_conflict_not_a_lost_update(pmo, make_pmo):
    """Optimistic locking at the row: a save based on an old version of the instance loses."""
    instance_id = pmo.start("simple", {"title": "abc", "amount": 2})["instance_id"]
    with pmo.db.transaction() as s:
        stale_version = s.get(ProcessInstance, instance_id).lock_version
    pmo.claim(only_task(pmo, "review", instance_id)["id"])  # bumps the version
    with pytest.raises(Conflict), pmo.db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        s.expunge(inst)
        inst.lock_version = stale_version
        inst = s.merge(inst)
        inst.status = "waiting"
        s.flush()


# -- data traps ------------------------------------------------------------------------------------------

def test_a_script_changing_nested_data_leaves_earlier_tasks_alone(pmo):
    instance_id = pmo.start("nested_data", {"p": {"team": {"lead": "a"}}})["instance_id"]
    runtime._CACHE.clear()
    with pmo.db.transaction() as s:
        run = load_run(pmo._ctx, s, s.get(ProcessInstance, instance_id), "test")
        script = next(t for t in run.workflow.tasks.values() if t.task_spec.bpmn_id == "script_nested")
        assert script.parent.data["p"]["team"]["lead"] == "a"
        assert script.data["p"]["team"]["lead"] == "b" and script.data["copy_lead"] == "b"


def test_dates_and_decimals_survive_a_save_and_a_cold_load(pmo):
    instance_id = pmo.start("typed_data", {})["instance_id"]
    runtime._CACHE.clear()
    data = pmo.show(instance_id)["data"]
    assert data["d"] == "2027-01-31" and data["amount"] == "1.50" and data["when"].startswith("2027-01-31T09:00")
    with pmo.db.transaction() as s:
        run = load_run(pmo._ctx, s, s.get(ProcessInstance, instance_id), "test")
        task = run.workflow.last_task
        assert repr(task.data["amount"]) == "Decimal('1.50')"


@pytest.mark.parametrize("data", [{"typename": "x"}, {"nested": {"typename": "BpmnWorkflow"}},
                                  {"items": [{"typename": 1}]}])
def test_a_typename_key_is_refused_anywhere_in_submitted_data(pmo, data):
    with pytest.raises(InvalidInput, match="typename"):
        pmo.start("nested_data", data)
    assert pmo.instances() == []


def test_a_loop_past_the_spiffworkflow_depth_limit_runs_to_its_real_end(pmo):
    """300 iterations of 3 tasks pass SpiffWorkflow's iterator depth of 1000: without the fix the workflow
    silently completes early."""
    instance_id = pmo.start("long_loop", {"iterations": 300})["instance_id"]
    shown = pmo.show(instance_id)
    assert shown["status"] == "running" and shown["data"]["i"] == 300
    runtime._CACHE.clear()
    pmo.complete(only_task(pmo, "confirm", instance_id)["id"], {})
    assert pmo.show(instance_id)["status"] == "completed"


# -- sandbox and errors ----------------------------------------------------------------------------------

def test_a_script_that_loops_forever_is_stopped_and_the_instance_is_in_error(pmo, monkeypatch):
    monkeypatch.delenv("PMOFLOW_SCRIPT_SECONDS")  # the real default (conftest raises it for the other tests)
    result = pmo.start("forever", {})
    assert result["status"] == "error"
    assert result["error"]["bpmn_id"] == "script_forever"
    assert "time limit" in result["error"]["message"]


def test_a_failing_handler_reports_its_own_error_and_retry_runs_it_again(pmo):
    result = pmo.start("failing_service", {"reason": "ledger offline"})
    assert result["status"] == "error"
    assert result["error"]["message"] == "handler 'test.fail' failed: RuntimeError: ledger offline"
    assert [e["type"] for e in pmo.history(result["instance_id"])][-1] == "error"
    again = pmo.retry(result["instance_id"])
    assert again["status"] == "error"  # still failing: stays in error, recorded again
    types = [e["type"] for e in pmo.history(result["instance_id"])]
    assert types.count("error") == 2 and "retry" in types


def test_retry_with_corrected_data_continues_the_instance(pmo):
    result = pmo.start("simple", {"title": "abc", "amount": 13})
    assert result["status"] == "error" and result["error"]["line"] == 3
    with pytest.raises(InvalidInput, match="needs a reason"):
        pmo.retry(result["instance_id"], {"amount": 4})
    again = pmo.retry(result["instance_id"], {"amount": 4}, reason="the amount was mistyped")
    assert again["status"] == "running"
    assert pmo.show(result["instance_id"])["data"]["total"] == 8


# -- tasks, duties and inboxes ---------------------------------------------------------------------------

def test_segregation_of_duties_refuses_the_starter_and_the_preparer_and_records_it(pmo, make_pmo):
    instance_id = pmo.start("sla", {})["instance_id"]  # alice: Project Manager and Quality Director
    bob = make_pmo("bob")
    bob.complete(only_task(bob, "prepare", instance_id)["id"], {})
    approve = only_task(pmo, "approve", instance_id)["id"]
    with pytest.raises(PermissionDenied, match="segregation of duties.*started this instance"):
        pmo.complete(approve, {})
    refused = [e for e in pmo.history(instance_id) if e["type"] == "duty_refused"]
    assert refused and refused[0]["actor"] == "alice"
    carol = make_pmo("carol")
    carol.complete(approve, {})
    completed = [e for e in carol.history(instance_id) if e["type"] == "task_completed" and e["task"] == "approve"]
    assert completed[0]["payload"]["duty_checks"] == [
        {"rule": "performer differs from starter", "result": "passed"},
        {"rule": "performer differs from prepare", "result": "passed"}]


def test_inboxes_read_the_projection_only(pmo, make_pmo, monkeypatch):
    instance_id = pmo.start("sla", {})["instance_id"]
    runtime._CACHE.clear()
    monkeypatch.setattr(serialization, "load_state", lambda *a: pytest.fail("an inbox query loaded a workflow"))
    assert [t["bpmn_id"] for t in make_pmo("bob").tasks()] == ["prepare"]
    assert make_pmo("carol").tasks() == []
    assert only_task(pmo, "prepare", instance_id)["candidates"] == ["Project Manager"]


# -- timers ----------------------------------------------------------------------------------------------

def test_timers_fire_once_when_due_and_not_before(pmo, make_pmo):
    instance_id = pmo.start("sla", {})["instance_id"]
    make_pmo("bob").complete(only_task(pmo, "prepare", instance_id)["id"], {})
    task = only_task(pmo, "approve", instance_id)
    due = datetime.fromisoformat(task["due"])
    assert timedelta(days=2) - timedelta(minutes=1) < due - datetime.now(UTC) <= timedelta(days=2)
    assert pmo.acting_as("pmo.admin").run_due(due - timedelta(minutes=1))["fired"] == []
    assert pmo.acting_as("pmo.admin").run_due(due + timedelta(seconds=1))["fired"] == [instance_id]
    assert pmo.acting_as("pmo.admin").run_due(due + timedelta(days=1))["fired"] == []
    shown = pmo.show(instance_id)
    assert shown["status"] == "completed"
    assert [t["state"] for t in shown["tasks"]] == ["completed", "cancelled"]
    types = [e["type"] for e in pmo.history(instance_id)]
    assert types[-3:] == ["timer_fired", "task_cancelled", "instance_completed"]


def test_the_audit_chain_of_an_instance_verifies(pmo):
    instance_id = pmo.start("simple", {"title": "abc", "amount": 2})["instance_id"]
    pmo.complete(only_task(pmo, "review", instance_id)["id"], {"approved": True})
    with pmo.db.transaction() as s:
        events = audit.history(s, instance_id)
        assert audit.verify_stream(events) is None
        events[2].payload = {"data": {"approved": False}}
        assert audit.verify_stream(events) == "event 3 was altered after it was written"
        s.rollback()


def test_the_packaged_library_files_exist():
    assert (Path(__file__).parents[2] / "bpmn" / "project_initiation.bpmn").is_file()
