"""Messages between instances, drawn the SpiffWorkflow-modeler way: a send task with messagePayload starts the
answering process through its message start event; the answer (a throw event) comes back to the one asking
instance whose correlation value matches; messages nobody takes are errors, never silent drops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import TEST_ORG
from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import Event, MessageWait, ProcessInstance

MESSAGES = Path(__file__).parents[2] / "docs" / "examples" / "designer" / "messages"


@pytest.fixture
def app(initialised, make_pmo):
    initialised("alice", TEST_ORG, MESSAGES)
    return make_pmo


def ask(make_pmo, ticket: str, question: str = "Is the plan sound?") -> dict:
    """bob (a Project Manager) asks for a review: the send task starts an answering instance."""
    bob = make_pmo("bob")
    started = bob.start("review_request")
    task = only_task(bob, started["instance_id"])
    result = bob.complete(task["id"], {"ticket": ticket, "question": question})
    return {"request": started["instance_id"], **result}


def only_task(app, instance_id: int) -> dict:
    tasks = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == instance_id]
    assert len(tasks) == 1, tasks
    return tasks[0]


def instance_of(app, process_id: str) -> list[dict]:
    return app.instances(process=process_id)


def events(app, instance_id: int, kind: str) -> list[dict]:
    return [e for e in app.history(instance_id) if e["type"] == kind]


def snapshot(app) -> tuple:
    with app.db.transaction() as s:
        return (s.scalar(select(func.count()).select_from(Event)),
                s.scalar(select(func.count()).select_from(ProcessInstance)),
                s.scalar(select(func.count()).select_from(MessageWait)))


def test_a_send_task_starts_the_receiving_process_owned_by_the_sender(app):
    asked = ask(app, "T-1")
    assert asked["status"] == "waiting"  # at the catch event, for the answer
    carol = app("carol")
    [answer] = instance_of(carol, "review_answer")
    assert answer["started_by"] == "bob"  # the user whose action sent the message
    shown = carol.show(answer["instance_id"])
    assert shown["data"]["request"] == {"ticket": "T-1", "question": "Is the plan sound?"}
    [started] = events(carol, answer["instance_id"], "instance_started")
    assert started["payload"]["by_message"] == "review_asked"
    assert started["payload"]["from_instance"] == asked["request"]
    [sent] = events(carol, asked["request"], "message_sent")
    assert sent["payload"]["to_instance"] == answer["instance_id"]
    assert sent["payload"]["correlation"] == {"ticket": "T-1"}
    assert sent["task"] == "ask"
    [waiting] = carol.messages()
    assert waiting == {"message": "review_answered", "instance_id": asked["request"], "process_id": "review_request",
                       "status": "waiting", "waiting_at": "wait_answer", "expects": {"ticket": "T-1"}}


def test_the_answer_reaches_only_the_instance_whose_correlation_matches(app):
    first, second = ask(app, "T-1"), ask(app, "T-2")
    carol = app("carol")
    answers = {carol.show(i["instance_id"])["data"]["request"]["ticket"]: i["instance_id"]
               for i in instance_of(carol, "review_answer")}
    task = only_task(carol, answers["T-2"])
    carol.complete(task["id"], {"verdict": "rework the schedule"})
    assert carol.show(second["request"])["data"]["answer"] == {"ticket": "T-2", "verdict": "rework the schedule"}
    assert "answer" not in carol.show(first["request"])["data"]
    assert carol.show(first["request"])["status"] == "waiting"
    [received] = events(carol, second["request"], "message_received")
    assert received["actor"] == "carol"
    assert received["payload"]["from_instance"] == answers["T-2"]
    assert received["payload"]["correlation"] == {"ticket": "T-2"}
    assert [t["name"] for t in app("bob").tasks()] == ["Read the answer"]
    # the audit record finds message events by their correlation, like any payload field
    found = carol.audit_events(types=["message_received"], where=["correlation.ticket=T-2"], process="review_request")
    assert [e["instance_id"] for e in found] == [second["request"]]


def test_the_receiving_process_keeps_its_duties_against_the_sender(app):
    ask(app, "T-1")
    alice = app("alice")  # alice is a Quality Director too, but did not send it: she may review
    [answer] = instance_of(alice, "review_answer")
    task = only_task(alice, answer["instance_id"])
    bob_is_not_qd = app("bob")
    with pytest.raises(Exception, match="Quality Director|may not"):
        bob_is_not_qd.complete(task["id"], {"verdict": "fine"})
    alice.complete(task["id"], {"verdict": "fine"})


def test_a_message_from_outside_is_delivered_by_correlation(app):
    asked = ask(app, "T-9")
    carol = app("carol")
    result = carol.message("review_answered", {"verdict": "approved by phone"}, {"ticket": "T-9"})
    assert result["delivered_to"] == [asked["request"]]
    data = carol.show(asked["request"])["data"]
    assert data["answer"] == {"verdict": "approved by phone", "ticket": "T-9"}
    # the value may come in the data under the property's name instead of --correlate
    again = ask(app, "T-10")
    assert carol.message("review_answered", {"verdict": "ok", "ticket": "T-10"})["delivered_to"] == [again["request"]]


@pytest.mark.parametrize("name, data, correlate, error, match", [
    ("no_such_message", {}, {}, NotFound, "no deployed process sends or waits for a message named 'no_such_message'"),
    ("review_answered", {"verdict": "x"}, {}, InvalidInput, "lacks the correlation value.*ticket.*--correlate"),
    ("review_answered", {"verdict": "x"}, {"ticket": "T-404"}, InvalidInput, "matches no instance waiting"),
    ("review_answered", ["not", "an", "object"], {}, InvalidInput, "must be a JSON object"),
])
def test_a_message_nobody_takes_is_refused_and_changes_nothing(app, name, data, correlate, error, match):
    ask(app, "T-1")
    carol = app("carol")
    before = snapshot(carol)
    with pytest.raises(error, match=match):
        carol.message(name, data, correlate)
    assert snapshot(carol) == before


def test_an_answer_whose_asker_is_gone_puts_the_sender_in_error_and_retry_sends_it_again(app):
    asked = ask(app, "T-5")
    alice, carol = app("alice"), app("carol")
    alice.terminate(asked["request"], reason="withdrawn")
    [answer] = instance_of(carol, "review_answer")
    task = only_task(carol, answer["instance_id"])
    result = carol.complete(task["id"], {"verdict": "fine"})
    assert result["status"] == "error"
    error = carol.show(answer["instance_id"])["error"]
    assert error["bpmn_id"] == "answer"
    assert "review_answered" in error["message"] and "T-5" in error["message"]
    assert "matches no instance waiting" in error["message"]
    # once an instance waits for it again, retrying the failed throw event delivers it
    renewed = ask(app, "T-5")
    [_, answer_2] = sorted(i["instance_id"] for i in instance_of(carol, "review_answer"))
    assert alice.retry(answer["instance_id"])["status"] == "completed"
    assert carol.show(renewed["request"])["data"]["answer"]["verdict"] == "fine"
    assert carol.show(answer_2)["status"] == "running"  # the second answerer was left alone


def test_a_message_waiting_instance_that_is_suspended_is_named(app):
    asked = ask(app, "T-3")
    alice = app("alice")
    alice.suspend(asked["request"], reason="on hold")
    with pytest.raises(InvalidInput, match=f"instance {asked['request']} waits for it but is suspended"):
        alice.message("review_answered", {"verdict": "x"}, {"ticket": "T-3"})


def test_two_open_receivers_make_an_ambiguous_message_an_error(make_pmo, tmp_path):
    """A receiver that expects no values takes any message of its name: with two such, which one? Refused."""
    app = make_pmo("alice")
    app.init(TEST_ORG)
    source = (MESSAGES / "review_request.bpmn").read_text()
    # the same asker without a correlation property: its wait expects nothing
    start = source.index("  <bpmn:correlationProperty id=")
    end = source.index("</bpmn:correlationProperty>") + len("</bpmn:correlationProperty>\n")
    folder = tmp_path / "open"
    folder.mkdir()
    # (its own message id: correlation properties attach to message ids, across the files of one deploy)
    opened = (source[:start] + source[end:]).replace('"review_answered" name', '"open_answered" name')
    opened = opened.replace('messageRef="review_answered"', 'messageRef="open_answered"')
    (folder / "open_request.bpmn").write_text(opened)
    app.deploy([folder, MESSAGES / "review_answer.bpmn"])
    bob = make_pmo("bob")
    for ticket in ("A", "B"):
        started = bob.start("review_request")
        bob.complete(only_task(bob, started["instance_id"])["id"], {"ticket": ticket, "question": "?"})
    with pytest.raises(InvalidInput, match="matches more than one waiting instance"):
        app.message("review_answered", {"verdict": "x"})


def test_cli_message_and_messages(app, db_url):
    asked = ask(app, "T-77")
    runner = CliRunner()
    base = ["--db", db_url, "--user", "carol"]
    listed = runner.invoke(main, [*base, "messages", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)[0]["expects"] == {"ticket": "T-77"}
    refused = runner.invoke(main, [*base, "message", "review_answered", "--correlate", "ticket=T-1"])
    assert refused.exit_code == 1
    assert "matches no instance waiting" in refused.stderr and "Traceback" not in refused.output
    bad = runner.invoke(main, [*base, "message", "review_answered", "--correlate", "ticket"])
    assert bad.exit_code == 1 and "--correlate takes KEY=VALUE" in bad.stderr
    sent = runner.invoke(main, [*base, "message", "review_answered", "--data", '{"verdict": "ok"}',
                                "--correlate", "ticket=T-77"])
    assert sent.exit_code == 0, sent.stderr
    assert f"delivered to instance {asked['request']}" in sent.output


def test_a_message_start_event_with_a_form_refuses_a_payload_that_does_not_fit(app):
    carol = app("carol")
    before = snapshot(carol)
    with pytest.raises(InvalidInput, match="does not fit form review-request.schema.json") as refused:
        carol.message("review_asked", {"ticket": "T-8"})
    assert any(d.startswith("question") for d in refused.value.details)
    assert snapshot(carol) == before
    # sent by an instance, the refusal puts the sender in error at the send task, saying which field
    asked = ask(app, "T-8", question="")
    assert asked["status"] == "error"
    error = carol.show(asked["request"])["error"]
    assert (error["bpmn_id"], error["type"]) == ("ask", "MessageRefused")
    assert "question" in error["message"] and "review-request.schema.json" in error["message"]
    assert instance_of(carol, "review_answer") == []


def test_the_report_timelines_say_what_was_sent_and_received(app):
    asked = ask(app, "T-4")
    carol = app("carol")
    [answer] = instance_of(carol, "review_answer")
    sent = carol.report(asked["request"])
    started = carol.report(answer["instance_id"])
    assert any(f"sent review_asked (ticket='T-4') to instance {answer['instance_id']}" in line
               for line in _timeline(sent))
    assert any("by message review_asked" in line for line in _timeline(started))
    assert any(f"received review_asked (ticket='T-4') from instance {asked['request']}" in line
               for line in _timeline(started))


def _timeline(report: dict) -> list[str]:
    return [entry["summary"] for entry in report["timeline"]]
