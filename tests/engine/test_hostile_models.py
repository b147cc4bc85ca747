"""Hostile model code (issue 10): whatever a designer's script, condition, decision, timer, parameter or loop
does, the command answers within its bounds and the instance is in error at that task, saying why; innocent
instances beside poisoned ones run untouched, in a command and in one worker pass.

Every case is a branch of tests/fixtures/hostile/hostile.bpmn, chosen by the start data's `case` (the branch's
task id). The limits are set low here (half a second, 64 MB, 300 engine steps, 50 instances) so the file
runs in seconds; the time bound asserted is only a hang guard.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine import parser, runtime, serialization
from pmoflow.engine.cli import main as cli_main
from pmoflow.engine.errors import InvalidInput, InvalidProcess
from pmoflow.engine.models import ProcessInstance
from pmoflow.engine.workflow import PmoflowWorkflow

HOSTILE = FIXTURES / "hostile"
HANG_GUARD = 30  # seconds: far above the limits, only there to fail instead of hanging
LIMITS = {"PMOFLOW_SCRIPT_SECONDS": "0.5", "PMOFLOW_SCRIPT_MEMORY_MB": "64", "PMOFLOW_MAX_ENGINE_STEPS": "300",
          "PMOFLOW_MAX_INSTANCES": "50"}
TIME = "time limit of 0.5 s"
MEMORY = "memory limit of 64 MB"

# case (the branch's task id) -> (the task the instance is in error at, what the error says)
POISONED = {
    # hangs and blow-ups inside C code, and a script that catches its own timeout
    "caught_timeout": ("caught_timeout", TIME),
    "redos": ("redos", TIME),
    "huge_power": ("huge_power", TIME),
    "huge_sum": ("huge_sum", TIME),
    "huge_string": ("huge_string", MEMORY),
    "memory_hog": ("memory_hog", MEMORY),
    # the same in a gateway condition, a timer expression, a service parameter and a DMN input
    "redos_condition": ("redos_condition", TIME),
    "redos_timer": ("redos_timer", TIME),
    "redos_parameter": ("redos_parameter", TIME),
    "redos_decision": ("redos_decision", TIME),
    # whatever a script raises
    "system_exit": ("system_exit", "SystemExit"),
    "keyboard_interrupt": ("keyboard_interrupt", "KeyboardInterrupt"),
    "value_error": ("value_error", "ValueError: 1"),
    # values task data cannot hold, refused at the task that made them
    "store_regex": ("store_regex", "p: a Pattern cannot be stored"),
    "store_huge_int": ("store_huge_int", "beyond the 64-bit integer range"),
    "store_self_list": ("store_self_list", "contains itself"),
    "store_bytes": ("store_bytes", "b: a bytes cannot be stored"),
    "store_tuple_keys": ("store_tuple_keys", "keys must be text"),
    "store_deep": ("store_deep", "nested more than 100 levels deep"),
    "store_typename": ("store_typename", "'typename' is reserved"),
    "store_nan": ("store_nan", "not a finite number"),
    "store_nul": ("store_nul", "NUL character"),
    # shared state
    "uuid_mutation": ("uuid_mutation", "scripts may change only lists and dicts, not a type"),
    # loops that never wait, and more instances than anyone meant
    "endless_cycle": ({"cycle_again", "cycle_round"}, "more than 300 engine steps in a row"),
    "always_loop": ("always_loop", "more than 300 engine steps in a row"),
    "huge_cardinality": ("huge_cardinality", "asks for 100,000 instances; at most 50"),
    "huge_collection": ("huge_collection", "items has 100,000 items, and the multi-instance task 'each_item'"),
    "far_timer_runtime": ("far_timer_runtime", "more than 10 years away"),
}
INNOCENT = ("innocent_fast", "innocent_sandbox")


@pytest.fixture(autouse=True)
def tight_limits(monkeypatch) -> None:
    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def hostile(initialised):
    return initialised("alice", TEST_ORG, HOSTILE)


def assert_in_error_at(app, instance_id: int, case: str) -> None:
    tasks, reason = POISONED[case]
    shown = app.show(instance_id)
    assert shown["status"] == "error", (case, shown["status"])
    error = shown["error"]
    assert error["bpmn_id"] in ({tasks} if isinstance(tasks, str) else tasks), (case, error)
    assert reason in error["message"], (case, error["message"])
    assert [e["type"] for e in app.history(instance_id)][-1] == "error"


def assert_innocent_ran(app, instance_id: int) -> None:
    shown = app.show(instance_id)
    assert shown["status"] == "running", shown.get("error")
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"] == ["after"]


@pytest.mark.parametrize("case", sorted(POISONED))
def test_a_poisoned_model_ends_in_error_at_its_task_within_bounds(hostile, case):
    began = time.monotonic()
    started = hostile.start("hostile", {"case": case, "wait": False})
    assert time.monotonic() - began < HANG_GUARD
    assert started["status"] == "error"
    assert_in_error_at(hostile, started["instance_id"], case)


def test_innocent_models_run_on_both_paths(hostile):
    for case in INNOCENT:
        started = hostile.start("hostile", {"case": case, "wait": False})
        assert_innocent_ran(hostile, started["instance_id"])
    data = hostile.show(started["instance_id"])["data"]
    assert data["squares"] == [i * i for i in range(10)] and 0 <= data["r"] < 1 and len(data["u"]) == 32


def test_a_script_cannot_change_what_the_next_instance_gets(hostile):
    """One instance set uuid.UUID.hex (issue 10): refused, and the next instance's uuid4().hex is its own."""
    attack = hostile.start("hostile", {"case": "uuid_mutation", "wait": False})
    assert attack["status"] == "error"
    later = [hostile.start("hostile", {"case": "innocent_sandbox", "wait": False})["instance_id"] for _ in range(2)]
    values = [hostile.show(i)["data"]["u"] for i in later]
    assert "attacker" not in values and len(set(values)) == 2


def test_one_worker_pass_fires_every_innocent_instance_and_puts_each_poisoned_one_in_error(hostile):
    """Poisoned instances of every kind among innocent ones, all waiting on a one-day timer; one pass."""
    cases = [case for i, poisoned in enumerate(sorted(POISONED)) for case in (poisoned, INNOCENT[i % 2])]
    started = {hostile.start("hostile", {"case": case, "wait": True})["instance_id"]: case for case in cases}
    assert {hostile.show(i)["status"] for i in started} == {"waiting"}
    began = time.monotonic()
    result = hostile.acting_as("pmo.admin").run_due(datetime.now(UTC) + timedelta(days=2))
    assert time.monotonic() - began < HANG_GUARD * 3
    poisoned = {i for i, case in started.items() if case in POISONED}
    assert set(result["errors"]) == poisoned
    assert set(result["fired"]) == set(started) - poisoned
    for instance_id, case in started.items():
        if case in POISONED:
            assert_in_error_at(hostile, instance_id, case)
        else:
            assert_innocent_ran(hostile, instance_id)


def test_an_instance_whose_state_cannot_be_loaded_is_put_in_error_and_the_worker_goes_on(hostile):
    """State edited in the database so that it no longer loads: the pass marks that instance in error (without
    loading it) and fires the others; the next pass does not try it again."""
    started = [hostile.start("hostile", {"case": "innocent_fast", "wait": True})["instance_id"] for _ in range(3)]
    broken = {started[0]: "{not json", started[1]: '{"serializer_version": "1.5", "tasks": {}}'}
    with hostile.db.transaction() as session:
        for instance_id, state in broken.items():
            session.execute(update(ProcessInstance).where(ProcessInstance.id == instance_id).values(state=state))
    runtime._CACHE.clear()  # as a fresh worker process would, read the state from the row
    result = hostile.acting_as("pmo.admin").run_due(datetime.now(UTC) + timedelta(days=2))
    assert set(result["errors"]) == set(broken) and result["fired"] == [started[2]]
    for instance_id in broken:
        shown = hostile.instances(status="error")
        assert instance_id in [i["instance_id"] for i in shown]
        assert [e["type"] for e in hostile.history(instance_id)][-1] == "error"
    assert_innocent_ran(hostile, started[2])
    again = hostile.acting_as("pmo.admin").run_due(datetime.now(UTC) + timedelta(days=3))
    assert again["errors"] == [] and again["fired"] == []


def test_validate_flags_timers_beyond_ten_years_at_their_lines():
    began = time.monotonic()
    findings = parser.lint([HOSTILE / "validate"], handlers=set(), roles=None, form_dirs=[])
    assert time.monotonic() - began < HANG_GUARD  # P99999999Y once made SpiffWorkflow count its months for minutes
    errors = {(f.element_id, f.line): f.message for f in findings if f.severity == "error"}
    assert set(errors) == {("far_duration", 9), ("far_date", 13), ("far_cycle", 17)}
    assert all("more than 10 years away" in message for message in errors.values())


def test_a_process_with_a_far_timer_is_not_deployed(hostile):
    with pytest.raises(InvalidProcess) as refused:
        hostile.deploy([HOSTILE / "validate" / "far_timers.bpmn"])
    assert sum("more than 10 years away" in line for line in refused.value.details) == 3
    assert "far_timers" not in [p["process_id"] for p in hostile.processes()]


def test_a_form_feeding_a_multi_instance_task_more_items_than_allowed_is_refused(hostile):
    """SpiffWorkflow would start one instance per item, each with a copy of the data, inside the completion."""
    instance_id = hostile.start("hostile", {"case": "collect", "wait": False})["instance_id"]
    [task] = [t for t in hostile.show(instance_id)["tasks"] if t["state"] == "ready"]
    with pytest.raises(InvalidInput, match="items has 100,000 items"):
        hostile.complete(task["id"], {"items": list(range(100_000))})
    assert hostile.show(instance_id)["status"] == "running"  # nothing changed
    hostile.complete(task["id"], {"items": [1, 2, 3]})
    assert_innocent_ran(hostile, instance_id)


def test_a_plain_exception_outside_any_task_still_puts_the_instance_in_error(hostile, monkeypatch):
    def overflow(self):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(PmoflowWorkflow, "refresh_timers", overflow)
    started = hostile.start("hostile", {"case": "innocent_fast", "wait": False})
    assert started["status"] == "error"
    assert "OverflowError" in started["error"]["type"] and "out of range" in started["error"]["message"]


@pytest.mark.parametrize("case", ["system_exit", "keyboard_interrupt", "value_error", "store_regex", "redos"])
def test_through_the_cli_a_poisoned_start_is_an_instance_error_not_a_crash(hostile, cli_handlers, case):
    """Issue 10: these ended in "unexpected failure", or for SystemExit in exit 0 with nothing stored."""
    runner = CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None})
    result = runner.invoke(cli_main, ["--db", str(hostile.db.url), "--user", "alice", "start", "hostile",
                                      "--data", json.dumps({"case": case, "wait": False})])
    assert result.exit_code == 1, result.output
    assert f"is in error at task {case}" in result.stderr and "unexpected" not in result.stderr
    [instance] = hostile.instances(process="hostile")
    assert_in_error_at(hostile, instance["instance_id"], case)


def test_an_instance_whose_state_cannot_be_saved_is_put_in_error_and_the_pass_goes_on(hostile, monkeypatch):
    """A state the serializer refuses (nothing a script leaves gets this far: refused at its task): the firing
    rolls back, the instance is put in error with its last saved state, and the other instance fires."""
    poisoned = hostile.start("hostile", {"case": "innocent_fast", "wait": True, "tag": "poison"})["instance_id"]
    innocent = hostile.start("hostile", {"case": "innocent_fast", "wait": True})["instance_id"]
    real_dump = serialization.dump_state

    def dump(workflow):
        if any(t.data.get("tag") == "poison" for t in workflow.tasks.values()):
            raise TypeError("Object of type Pattern is not JSON serializable")
        return real_dump(workflow)

    monkeypatch.setattr(serialization, "dump_state", dump)
    result = hostile.run_due(datetime.now(UTC) + timedelta(days=2))
    assert result["errors"] == [poisoned] and result["fired"] == [innocent]
    monkeypatch.setattr(serialization, "dump_state", real_dump)
    shown = hostile.show(poisoned)
    assert shown["status"] == "error" and "state cannot be saved" in shown["error"]["message"]
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"] == []  # as stored: at the timer
    assert "timer_fired" not in [e["type"] for e in hostile.history(poisoned)]
    assert_innocent_ran(hostile, innocent)
