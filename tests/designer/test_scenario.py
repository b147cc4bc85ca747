"""`pmoflow test`: process test cases in spiff-arena's format, run without a database (engine/scenario.py)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from pmoflow.engine import scenario
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.scenario import CaseResult, differences, run_tests

ROOT = Path(__file__).resolve().parents[2]
BPMN = ROOT / "bpmn"
INITIATION_TESTS = BPMN / "test_project_initiation.json"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "scenario"
SHIPPED = json.loads(INITIATION_TESTS.read_text(encoding="utf-8"))


def failure(results: list[CaseResult], case: str) -> str:
    [result] = [r for r in results if r.case == case]
    assert not result.passed, f"{case} passed: {result.message}"
    return result.message


def initiation_dir(tmp_path: Path, cases: dict) -> Path:
    """A copy of the initiation model with the given test cases beside it (forms come from the package)."""
    for name in ("project_initiation.bpmn", "charter_approval.dmn"):
        shutil.copy(BPMN / name, tmp_path / name)
    (tmp_path / "test_project_initiation.json").write_text(json.dumps(cases), encoding="utf-8")
    return tmp_path


def purchase_dir(tmp_path: Path, cases: dict) -> Path:
    """A copy of the purchase fixture (purchase.bpmn calls approval.bpmn) with the given test cases."""
    for file in FIXTURES.iterdir():
        if not file.name.startswith("test_"):
            shutil.copy(file, tmp_path / file.name)
    (tmp_path / "test_purchase.json").write_text(json.dumps(cases), encoding="utf-8")
    return tmp_path


def shipped(name: str) -> dict:
    return copy.deepcopy(SHIPPED[name])


def purchase(amount: int = 900, remaining: int = 1000, **tasks) -> dict:
    """A purchase case: the request, the mocked budget check, and the other tasks' data."""
    return {"tasks": {"purchase:purchase_start": {"data": [{"item": "Laptop", "amount": amount}]},
                      "purchase:check_budget": {"data": [{"budget": {"remaining": remaining}}]},
                      **{key: {"data": data} for key, data in tasks.items()}}}


# ---------------------------------------------------------------------------------------------------------
# The shipped cases
# ---------------------------------------------------------------------------------------------------------


def test_every_shipped_scenario_file_in_the_library_passes():
    results = run_tests([BPMN])
    assert results and all(r.passed for r in results), "\n".join(str(r) for r in results if not r.passed)


def test_the_shipped_initiation_cases_cover_every_branch_and_all_pass():
    results = run_tests([INITIATION_TESTS])
    assert [r.case for r in results] == list(SHIPPED)
    assert all(r.passed for r in results), "\n".join(str(r) for r in results if not r.passed)
    assert {r.file for r in results} == {str(INITIATION_TESTS)}
    covered = " ".join(SHIPPED)
    for branch in ("single_approver", "with_conditions", "intake_returns", "intake_rejects", "returns_the_charter",
                   "approver_rejects", "first_of_two_approvers_rejects", "no_pm_named", "sqa_must_be_independent",
                   "withdraws", "reminder", "escalation", "mocked_services"):
        assert branch in covered, branch
    ends = {r.message.removeprefix("completed at ") for r in results}
    assert {"end_authorised", "end_authorised_with_conditions", "end_rejected_at_intake",
            "end_rejected_by_approver", "end_withdrawn"} <= {e for m in ends for e in m.split(", ")}


def test_a_bpmn_file_or_its_test_file_can_be_named_directly():
    by_bpmn = run_tests([BPMN / "project_initiation.bpmn"])
    by_test = run_tests([INITIATION_TESTS])
    assert [r.case for r in by_bpmn] == [r.case for r in by_test] == list(SHIPPED)
    assert all(r.passed for r in by_bpmn + by_test)


def test_a_spiff_arena_style_file_with_process_id_prefixes_runs_with_every_service_mocked():
    results = run_tests([FIXTURES], handlers={})  # no handler at all: every service task must be mocked
    assert [(r.case, r.passed) for r in results] == [
        ("small_purchase_is_approved_automatically", True),
        ("large_purchase_is_reworked_then_approved", True),
        ("large_purchase_times_out", True),
    ], [str(r) for r in results]


# ---------------------------------------------------------------------------------------------------------
# Failures say which case, which task and what differs
# ---------------------------------------------------------------------------------------------------------


def test_a_wrong_expected_value_fails_naming_the_case_and_the_keys(tmp_path):
    case = shipped("authorised_by_a_single_approver")
    case["expected_output_json"]["outcome"] = "Rejected"
    case["expected_output_json"]["project"]["gatesPlanned"] = 5
    case["expected_output_json"]["noSuchKey"] = 1
    results = run_tests([initiation_dir(tmp_path, {"wrong_outcome": case})])
    message = failure(results, "wrong_outcome")
    assert "the process ended at end_authorised" in message
    assert 'outcome: expected "Rejected", got "Authorised"' in message
    assert "project.gatesPlanned: expected 5, got 3" in message
    assert "noSuchKey: expected 1, but the key is missing" in message
    assert "wrong_outcome: FAILED: " in str(results[0])


def test_a_user_task_without_data_fails_naming_the_task(tmp_path):
    case = shipped("authorised_by_a_single_approver")
    del case["tasks"]["approve_charter"]
    message = failure(run_tests([initiation_dir(tmp_path, {"no_approval": case})]), "no_approval")
    assert message.startswith("task approve_charter (")
    assert "is ready but the case gives no data for it" in message
    assert "'project_initiation:approve_charter' or 'approve_charter'" in message


def test_a_task_visited_more_often_than_it_has_data_fails_with_the_count(tmp_path):
    cases = {"one_round": purchase(**{"approval:decide": [{"decision": "Rework"}]})}
    message = failure(run_tests([purchase_dir(tmp_path, cases)], handlers={}), "one_round")
    assert message == ("task decide (Decide on the purchase) is ready for the 2nd time but the case gives "
                       "1 data entry for 'approval:decide'")


def test_invalid_form_data_fails_naming_the_field(tmp_path):
    case = shipped("authorised_by_a_single_approver")
    case["tasks"]["approve_charter"]["data"] = [{"approvalDecision": "Approve-with-conditions", "signature": "Avery"}]
    bad_start = shipped("intake_rejects_the_request")
    bad_start["tasks"]["project_initiation:start_request"]["data"][0]["targetEnd"] = "31/12/2027"
    extra = shipped("intake_rejects_the_request")
    extra["tasks"]["intake_review"]["data"][0]["riskLevel"] = "Changed"  # undeclared, and not what the data holds
    results = run_tests([initiation_dir(tmp_path, {"bad_approval": case, "bad_start": bad_start, "extra": extra})])
    message = failure(results, "bad_approval")
    assert message.startswith("task approve_charter (")
    assert "visit 1: the data does not fit form charter-approval.schema.json" in message
    assert "\n  conditions:" in message
    assert "\n  targetEnd:" in failure(results, "bad_start")
    assert failure(results, "extra").endswith("form intake-review.schema.json does not ask for: riskLevel; "
                                              "remove these fields")


def test_a_script_error_fails_with_the_task_line_and_message(tmp_path):
    cases = {"no_budget_left": purchase(remaining=0)}
    message = failure(run_tests([purchase_dir(tmp_path, cases)], handlers={}), "no_budget_left")
    assert message == ('task assess (Assess the request) failed, line 1 (share = amount / budget["remaining"]): '
                       "ZeroDivisionError: division by zero")


def test_a_failing_handler_fails_the_case_with_the_task(tmp_path):
    cases = {"handler_fails": {"tasks": {"purchase_start": {"data": [{"item": "Laptop", "amount": 900}]}}}}
    handlers = {"budget.check": lambda amount: 1 / 0}
    message = failure(run_tests([purchase_dir(tmp_path, cases)], handlers=handlers), "handler_fails")
    assert message.startswith("task check_budget (Check the budget) failed: ")
    assert "handler 'budget.check' failed: ZeroDivisionError: division by zero" in message


def test_an_unmocked_service_task_calls_its_handler_or_fails_naming_the_task(tmp_path):
    case = {"tasks": {"purchase_start": {"data": [{"item": "Stapler", "amount": 20}]}},
            "expected_output_json": {"budget": {"remaining": 5000}, "outcome": "Auto-approved"}}
    folder = purchase_dir(tmp_path, {"real_handler": case})
    [result] = run_tests([folder], handlers={"budget.check": lambda amount: {"remaining": 5000}})
    assert result.passed, result.message
    message = failure(run_tests([folder], handlers={}), "real_handler")
    assert message.startswith("service task check_budget (Check the budget) has no mock in the case and no handler "
                              "is registered for 'budget.check'")


def test_an_engine_loop_that_never_waits_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(scenario, "MAX_ENGINE_STEPS", 300)
    (tmp_path / "spin.bpmn").write_text(SPIN, encoding="utf-8")
    (tmp_path / "test_spin.json").write_text(json.dumps({"spins": {"tasks": {"spin_start": {"data": [{"n": 0}]}}}}))
    message = failure(run_tests([tmp_path]), "spins")
    assert message.startswith("stopped after 300 engine steps: the process loops without waiting for anyone")


SPIN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="spin_defs"
                  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="spin" isExecutable="true">
    <bpmn:startEvent id="spin_start"><bpmn:outgoing>s1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="count" name="Count">
      <bpmn:incoming>s1</bpmn:incoming><bpmn:incoming>s_again</bpmn:incoming><bpmn:outgoing>s2</bpmn:outgoing>
      <bpmn:script>n = n + 1</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="again_gw" default="s_again">
      <bpmn:incoming>s2</bpmn:incoming><bpmn:outgoing>s_again</bpmn:outgoing><bpmn:outgoing>s_done</bpmn:outgoing>
    </bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="s_done" sourceRef="again_gw" targetRef="spin_end">
      <bpmn:conditionExpression>n &lt; 0</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="s_again" sourceRef="again_gw" targetRef="count" />
    <bpmn:endEvent id="spin_end"><bpmn:incoming>s_done</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="s1" sourceRef="spin_start" targetRef="count" />
    <bpmn:sequenceFlow id="s2" sourceRef="count" targetRef="again_gw" />
  </bpmn:process>
</bpmn:definitions>
"""


# ---------------------------------------------------------------------------------------------------------
# Timers, mocks and the checks made before a case runs
# ---------------------------------------------------------------------------------------------------------


def test_a_timer_fires_only_at_the_visits_the_case_names(tmp_path):
    cases = {
        # first visit of "decide": Rework, timer left waiting; second visit: the timer fires
        "second_visit_times_out": {**purchase(**{"approval:decide": [{"decision": "Rework"}],
                                                 "approval:decide_timeout": [None, {}]}),
                                   "expected_output_json": {"outcome": "Declined", "rounds": 1}},
        # a timer nobody fires leaves the process waiting
        "never_decided": purchase(),
    }
    results = run_tests([purchase_dir(tmp_path, cases)], handlers={})
    assert results[0].passed, results[0].message
    message = failure(results, "never_decided")
    assert "task decide (Decide on the purchase) is ready but the case gives no data for it" in message


def test_an_empty_data_list_fails_at_the_first_visit(tmp_path):
    case = shipped("revision_not_done_in_10_days_withdraws_the_request")
    del case["tasks"]["tmr_revision_timeout"]
    case["tasks"]["revise_request"] = {"data": []}
    message = failure(run_tests([initiation_dir(tmp_path, {"waits": case})]), "waits")
    assert message.startswith("task revise_request (")
    assert message.endswith("is ready for the 1st time but the case gives 0 data entries for 'revise_request'")


def test_an_intermediate_timer_waits_until_the_case_fires_it(tmp_path):
    (tmp_path / "wait.bpmn").write_text(WAIT, encoding="utf-8")
    cases = {"stuck": {"tasks": {}},
             "fired": {"tasks": {"cool_off": {"data": [{}]}}, "expected_output_json": {"finished": True}}}
    (tmp_path / "test_wait.json").write_text(json.dumps(cases), encoding="utf-8")
    results = run_tests([tmp_path])
    assert failure(results, "stuck") == (
        'the process did not complete: after the start it waits for timer(s) cool_off (Cool off a week) '
        '(list one under tasks with {"data": [{}]} to fire it)')
    assert results[1].passed, results[1].message  # the manual task after the timer needs no data


WAIT = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="w_defs"
                  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="wait" isExecutable="true">
    <bpmn:startEvent id="w_start"><bpmn:outgoing>w1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="cool_off" name="Cool off a week">
      <bpmn:incoming>w1</bpmn:incoming><bpmn:outgoing>w2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"P7D"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:manualTask id="call" name="Call the customer">
      <bpmn:incoming>w2</bpmn:incoming><bpmn:outgoing>w3</bpmn:outgoing>
    </bpmn:manualTask>
    <bpmn:scriptTask id="done" name="Done">
      <bpmn:incoming>w3</bpmn:incoming><bpmn:outgoing>w4</bpmn:outgoing><bpmn:script>finished = True</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="w_end"><bpmn:incoming>w4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="w1" sourceRef="w_start" targetRef="cool_off" />
    <bpmn:sequenceFlow id="w2" sourceRef="cool_off" targetRef="call" />
    <bpmn:sequenceFlow id="w3" sourceRef="call" targetRef="done" />
    <bpmn:sequenceFlow id="w4" sourceRef="done" targetRef="w_end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_script_tasks_and_helpers_can_be_mocked(tmp_path):
    cases = {"mocked": {**purchase(remaining=0, **{"purchase:assess": [{"needs_approval": False, "share": 0}]}),
                        "mocks": {"process_initiator": "pat.buyer"},
                        "expected_output_json": {"outcome": "Auto-approved", "share": 0}},
             "initiator": {**purchase(amount=20), "mocks": {"process_initiator": "pat.buyer"},
                           "expected_output_json": {"requester": "pat.buyer"}}}
    results = run_tests([purchase_dir(tmp_path, cases)], handlers={})
    assert all(r.passed for r in results), [str(r) for r in results]


@pytest.mark.parametrize("case,expected", [
    ({"tasks": {"nope": {"data": [{}]}}}, "tasks: 'nope' names no task of process purchase"),
    ({"tasks": {"other_process:decide": {"data": [{}]}}}, "tasks: 'other_process:decide' names no task"),
    ({"tasks": {"needs_approval_gw": {"data": [{}]}}}, "'needs_approval_gw' is not a task that takes data"),
    ({"tasks": {"decide": [{}]}}, "tasks: 'decide' must be {\"data\": [...]}"),
    ({"tasks": {"decide": {"data": ["Approve"]}}}, "tasks: 'decide' entry 1 must be an object"),
    ({"tasks": {"decide_timeout": {"data": [1]}}}, "'decide_timeout' entry 1 must be an object or null"),
    ({"tasks": {"decide": {"data": [{"_secret": 1}]}}}, "reserved field name(s) _secret"),
    ({"tasks": {"decide": {"data": [{"datetime": 1}]}}}, "reserved field name(s) datetime"),
    ({"tasks": {}, "expected_output": {}}, "unknown key(s) expected_output in the case"),
    ({"tasks": {}, "mocks": []}, "'mocks' must be an object"),
    ([], "a test case must be a JSON object"),
])
def test_a_case_is_checked_before_it_runs(tmp_path, case, expected):
    message = failure(run_tests([purchase_dir(tmp_path, {"bad": case})], handlers={}), "bad")
    assert expected in message


def test_data_left_over_means_the_process_took_another_path(tmp_path):
    cases = {"leftover": {**purchase(amount=20, **{"approval:decide": [{"decision": "Approve"}]}),
                          "expected_output_json": {"outcome": "Auto-approved"}}}
    message = failure(run_tests([purchase_dir(tmp_path, cases)], handlers={}), "leftover")
    assert message == ("data left over:\n  task decide (Decide on the purchase): 1 data entry given but only 0 used "
                       "(the process did not take the path the case describes)")


# ---------------------------------------------------------------------------------------------------------
# Files and paths
# ---------------------------------------------------------------------------------------------------------


def test_file_level_problems_are_one_failed_result(tmp_path):
    (tmp_path / "test_orphan.json").write_text("{}")
    (tmp_path / "test_broken.json").write_text("{not json")
    (tmp_path / "broken.bpmn").write_text("<bpmn")
    (tmp_path / "test_bad_model.json").write_text(json.dumps({"c": {"tasks": {}}}))
    (tmp_path / "bad_model.bpmn").write_text("<bpmn")
    (tmp_path / "test_empty.json").write_text(json.dumps({"c": {}}))
    results = {Path(r.file).name: r for r in run_tests([tmp_path])}
    assert all(r.case == "-" and not r.passed for r in results.values())
    assert "cannot read the test file" in results["test_broken.json"].message
    assert "a test file is a JSON object of case name -> case" in results["test_orphan.json"].message
    assert results["test_empty.json"].message == "no empty.bpmn next to the test file"
    assert results["test_bad_model.json"].message.startswith("bad_model.bpmn does not parse: ")
    assert "not well-formed XML" in results["test_bad_model.json"].message


def test_usage_errors_raise(tmp_path):
    with pytest.raises(InvalidInput, match="no such file or folder"):
        run_tests([tmp_path / "missing"])
    with pytest.raises(InvalidInput, match="no test files"):
        run_tests([tmp_path])
    (tmp_path / "lonely.bpmn").write_text("<x/>")
    with pytest.raises(InvalidInput, match="no test file test_lonely.json next to it"):
        run_tests([tmp_path / "lonely.bpmn"])
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(InvalidInput, match="not a .bpmn file"):
        run_tests([tmp_path / "notes.txt"])


# ---------------------------------------------------------------------------------------------------------
# Comparing the final data
# ---------------------------------------------------------------------------------------------------------


def test_expected_output_is_a_recursive_subset():
    actual = {"a": 1, "b": {"c": [1, {"d": True, "e": 2}], "f": "x"}, "g": 2.0}
    assert differences({}, actual) == []
    assert differences({"b": {"c": [1, {"d": True}]}, "g": 2}, actual) == []
    assert differences({"b": {"c": [1]}}, actual) == ['b.c: expected [1], got [1, {"d": true, "e": 2}]']
    assert differences({"b": {"c": [1, {"d": 1}]}}, actual) == ["b.c[1].d: expected 1, got true"]
    assert differences({"a": "1"}, actual) == ['a: expected "1", got 1']
    assert differences({"b": {"f": {"x": 1}}}, actual) == ['b.f: expected an object {"x": 1}, got "x"']
    assert differences({"z": None}, actual) == ["z: expected null, but the key is missing"]
