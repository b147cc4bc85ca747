"""A multi-instance collection brought by a message is size-checked where the payload lands (runtime `receive`):
too many items put the instance in error at the catching task, before any instance of the task after it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TEST_ORG

FIXTURE = Path(__file__).parents[1] / "fixtures" / "fan_out_message"


@pytest.fixture
def app(initialised, monkeypatch):
    monkeypatch.setenv("PMOFLOW_MAX_INSTANCES", "5")
    return initialised("alice", TEST_ORG, FIXTURE)


@pytest.mark.parametrize("process, message, payload, catcher", [
    ("fan_merged", "fan_batch", {f"k{i}": i for i in range(10)}, "fm_catch"),  # a catch event's messageVariable
    ("fan_variable", "fan_list", {f"k{i}": i for i in range(10)}, "fv_receive"),  # a receive task's
])
def test_an_oversized_collection_in_a_message_is_an_error_at_the_catching_task(app, process, message, payload,
                                                                              catcher):
    started = app.start(process, {})
    assert started["status"] == "waiting"
    app.message(message, payload)
    shown = app.show(started["instance_id"])
    assert shown["status"] == "error"
    assert shown["error"]["bpmn_id"] == catcher
    assert "items has 10 items" in shown["error"]["message"] and "at most 5" in shown["error"]["message"]
    assert not {"doubled", "seen"} & set(shown["data"])  # no instance of the multi-instance task ran


def test_a_collection_within_the_limit_fans_out(app):
    started = app.start("fan_merged", {})
    app.message("fan_batch", {"a": 1, "b": 2, "c": 3})  # the payload (an object) is the collection
    shown = app.show(started["instance_id"])
    assert shown["status"] == "completed", shown.get("error")
    assert shown["data"]["doubled"] == {"a": 2, "b": 4, "c": 6}
