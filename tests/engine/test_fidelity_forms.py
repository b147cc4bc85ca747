"""The SpiffWorkflow modeler's form conventions, through `complete` and `pmoflow test` alike: a user task's
`spiffworkflow:variableName` receives the whole submission; `options_from_task_data_var:NAME` takes a form's
choices (anyOf) and item schemas (items) from task data; a UI schema deploys beside its JSON schema (even with a
field called "description"); task data echoed back unchanged is accepted and dropped, a changed undeclared field
is refused; null passes for an optional field. Also plain exceptions raised inside SpiffWorkflow (not its own
exception types) put the instance in error at the task whose spec raised them. Fixtures: tests/fixtures/fidelity."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.scenario import run_tests

FIDELITY = FIXTURES / "fidelity"


@pytest.fixture
def app(initialised):
    return initialised("alice", TEST_ORG, FIDELITY)


def open_task(app, instance_id: int) -> dict:
    [task] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == instance_id]
    return task


def test_the_form_lands_under_the_user_tasks_variable_name(app):
    iid = app.start("user_forms")["instance_id"]
    task = open_task(app, iid)
    app.complete(task["id"], {"fruit": "pear", "basket": ["L", 2]})
    data = app.show(iid)["data"]
    assert data["choice"] == {"fruit": "pear", "basket": ["L", 2]}
    assert data["picked"] == "pear" and "fruit" not in data  # the next script read choice["fruit"]


def test_choices_come_from_task_data(app):
    iid = app.start("user_forms")["instance_id"]
    task = open_task(app, iid)
    with pytest.raises(InvalidInput) as refused:
        app.complete(task["id"], {"fruit": "banana"})
    assert refused.value.details == ["fruit: 'banana' is not valid under any of the given schemas"]
    with pytest.raises(InvalidInput) as refused:
        app.complete(task["id"], {"fruit": "apple", "basket": ["L", "two"]})  # basket_fields: a string, an integer
    assert refused.value.details == ["basket[1]: 'two' is not of type 'integer'"]
    assert open_task(app, iid)["state"] == "ready"


def test_task_data_echoed_back_unchanged_is_accepted_and_a_change_refused(app):
    iid = app.start("user_forms")["instance_id"]
    task = open_task(app, iid)
    with pytest.raises(InvalidInput, match="does not ask for: note"):
        app.complete(task["id"], {"fruit": "apple", "note": "rewritten"})
    with pytest.raises(InvalidInput, match="does not ask for: lane_owners"):
        app.complete(task["id"], {"fruit": "apple", "lane_owners": {"x": ["bob"]}})
    fruits = [{"value": "apple", "label": "Apple"}, {"value": "pear", "label": "Pear"}]
    app.complete(task["id"], {"fruit": "apple", "note": "kept", "fruits": fruits, "description": None})
    data = app.show(iid)["data"]
    assert data["choice"] == {"fruit": "apple", "description": None}  # the echo is dropped, the null kept
    assert data["note"] == "kept"


def test_null_passes_only_for_an_optional_field(app):
    iid = app.start("user_forms")["instance_id"]
    with pytest.raises(InvalidInput) as refused:
        app.complete(open_task(app, iid)["id"], {"fruit": None})
    assert "fruit: None is not of type 'string'" in refused.value.details


def test_the_ui_schema_is_stored_with_the_version(app):
    [process] = [p for p in app.processes() if p["process_id"] == "user_forms"]
    assert "forms/choose-uischema.json" in process["files"]


def test_pmoflow_test_applies_the_same_rules(tmp_path):
    for name in ("user_forms.bpmn", "choose.schema.json", "choose-uischema.json"):
        shutil.copy(FIDELITY / name, tmp_path / name)
    fruits = [{"value": "apple", "label": "Apple"}, {"value": "pear", "label": "Pear"}]
    cases = {
        "recorded": {"tasks": {"uf_choose": {"data": [{"fruit": "pear", "description": None, "note": "kept",
                                                       "fruits": fruits}]}},
                     "expected_output_json": {"picked": "pear", "choice": {"fruit": "pear", "description": None}}},
        "changes_data": {"tasks": {"uf_choose": {"data": [{"fruit": "pear", "note": "changed"}]}}},
        "not_a_choice": {"tasks": {"uf_choose": {"data": [{"fruit": "plum"}]}}},
    }
    (tmp_path / "test_user_forms.json").write_text(json.dumps(cases))
    results = {r.case: r for r in run_tests([tmp_path], handlers={})}
    assert results["recorded"].passed, results["recorded"].message
    assert "does not ask for: note" in results["changes_data"].message
    assert "fruit: 'plum' is not valid under any of the given schemas" in results["not_a_choice"].message


@pytest.mark.parametrize(("data", "task", "message"), [
    ({"mode": "collection", "items": 5}, "le_collection", "TypeError: 'int' object is not iterable"),
    ({"mode": "collection", "items": None}, "le_collection", "TypeError: 'NoneType' object is not iterable"),
    ({"mode": "cardinality", "reviewers": [1, 2]}, "le_cardinality", "the loop cardinality reviewers gave [1, 2]"),
])
def test_an_exception_raised_inside_spiffworkflow_is_an_error_of_its_task(app, data, task, message):
    started = app.start("library_error", data)
    assert started["status"] == "error"
    assert started["error"]["bpmn_id"] == task
    assert message in started["error"]["message"]
    [error] = [e for e in app.history(started["instance_id"]) if e["type"] == "error"]
    assert error["task"] == task


def test_the_failed_task_runs_again_with_corrected_data(app):
    iid = app.start("library_error", {"mode": "collection", "items": 5})["instance_id"]
    retried = app.retry(iid, {"items": [1, 2]}, reason="items must be a list")
    assert retried["status"] == "completed", retried
    assert app.show(iid)["data"]["out"] == [1, 2]
