"""Events SpiffWorkflow folds into one MultipleEventDefinition, run the way SpiffWorkflow runs them: an event-based
gateway whose message, timer or signal branch wins (the others cancelled), a start event with two message
definitions, a parallel-multiple start event that needs both. The message index (`message_waits`) and the timer
index (`next_due`) look inside the folded definition. Fixtures: tests/fixtures/fidelity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import FIXTURES, TEST_ORG

FIDELITY = FIXTURES / "fidelity"


@pytest.fixture
def app(initialised):
    return initialised("alice", TEST_ORG, FIDELITY)


def open_task(app, instance_id: int) -> dict:
    [task] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == instance_id]
    return task


def test_the_gateway_waits_for_its_message_and_its_timer_both_indexed(app):
    started = app.start("event_gateway")
    iid = started["instance_id"]
    assert app.messages() == [{"message": "go_ahead", "instance_id": iid, "process_id": "event_gateway",
                               "status": "running", "waiting_at": "egw_wait", "expects": {}}]
    due = datetime.fromisoformat(app.show(iid)["next_due"])
    assert timedelta(minutes=59) < due - datetime.now(UTC) <= timedelta(hours=1)


def test_the_message_branch_wins_and_the_timer_and_signal_are_cancelled(app):
    iid = app.start("event_gateway")["instance_id"]
    assert app.message("go_ahead")["delivered_to"] == [iid]
    shown = app.show(iid)
    assert shown["data"] == {"outcome": "message"}
    assert shown["next_due"] is None and app.messages() == []  # the timer no longer waits
    app.complete(open_task(app, iid)["id"], {"stop": True})  # the signal now finds nobody waiting for it
    shown = app.show(iid)
    assert (shown["status"], shown["data"]["outcome"]) == ("completed", "message")


def test_the_timer_branch_wins_when_the_worker_finds_it_due(app):
    iid = app.start("event_gateway")["instance_id"]
    assert app.acting_as("pmo.admin").run_due(now=datetime.now(UTC) + timedelta(minutes=30))["fired"] == []
    assert app.acting_as("pmo.admin").run_due(now=datetime.now(UTC) + timedelta(hours=2))["fired"] == [iid]
    assert app.show(iid)["data"] == {"outcome": "timer"}
    assert app.messages() == []  # the message is no longer waited for: sending it is refused
    with pytest.raises(Exception, match="go_ahead"):
        app.message("go_ahead")
    assert app.show(iid)["status"] == "running"  # the parallel branch's task is still open


def test_the_signal_branch_wins_when_the_other_branch_throws_it(app):
    iid = app.start("event_gateway")["instance_id"]
    app.complete(open_task(app, iid)["id"], {"stop": True})
    shown = app.show(iid)
    assert (shown["status"], shown["data"]["outcome"]) == ("completed", "signal")
    assert app.messages() == [] and shown["next_due"] is None


def test_either_message_of_a_multiple_start_event_starts_the_process(app):
    first = app.message("order_placed", {"item": "desk"})
    second = app.message("order_phoned", {"item": "chair"})
    assert first["delivered_to"] != second["delivered_to"]
    for result in (first, second):
        [iid] = result["delivered_to"]
        shown = app.show(iid)
        assert (shown["process_id"], shown["status"]) == ("multiple_start", "running")
        assert open_task(app, iid)["bpmn_id"] == "ms_handle"
        # SpiffWorkflow 3.2 does not copy a multiple start event's payload into the data (its
        # MultipleEventDefinition never calls the caught message's update_task_data): docs/conformance.md
        assert "order" not in shown["data"]


def test_a_parallel_multiple_start_event_waits_for_each_of_its_messages(app):
    [iid] = app.message("part_a_ready", {"part": "a"})["delivered_to"]
    assert app.show(iid)["status"] == "waiting"
    assert [(w["message"], w["instance_id"], w["waiting_at"]) for w in app.messages()] == \
        [("part_b_ready", iid, "ps_start")]  # the message it has caught is not waited for again
    assert app.message("part_b_ready", {"part": "b"})["delivered_to"] == [iid]
    assert app.messages() == []
    assert open_task(app, iid)["bpmn_id"] == "ps_handle"

