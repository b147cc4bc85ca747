"""Correlation values longer than message_waits' column: the wait stores a digest of them, so PostgreSQL keeps it as
SQLite does, `pmoflow messages` lists it, and a message with the same long values still reaches exactly it."""

from __future__ import annotations

import pytest
from test_messages import MESSAGES, ask, instance_of, only_task

from conftest import TEST_ORG
from pmoflow.engine.errors import InvalidInput

LONG = "K" * 600  # a business key whose canonical JSON is over the column's 500 characters


@pytest.fixture
def app(initialised, make_pmo):
    initialised("alice", TEST_ORG, MESSAGES)
    return make_pmo


def test_a_long_correlation_value_waits_is_listed_and_is_matched(app):
    asked = ask(app, LONG)
    assert asked["status"] == "waiting"
    carol = app("carol")
    [waiting] = carol.messages()
    assert waiting["instance_id"] == asked["request"] and waiting["waiting_at"] == "wait_answer"
    assert list(waiting["expects"]) == ["digest"] and waiting["expects"]["digest"].startswith("sha256:")
    with pytest.raises(InvalidInput, match="matches no instance waiting"):
        carol.message("review_answered", {"verdict": "no"}, {"ticket": "L" * 600})
    assert carol.show(asked["request"])["status"] == "waiting"
    result = carol.message("review_answered", {"verdict": "yes"}, {"ticket": LONG})
    assert result["delivered_to"] == [asked["request"]]
    assert carol.show(asked["request"])["data"]["answer"] == {"verdict": "yes", "ticket": LONG}
    assert carol.messages() == []


def test_the_answering_process_finds_the_long_keyed_asker(app):
    first, second = ask(app, LONG), ask(app, "L" * 600)
    carol = app("carol")
    answers = {carol.show(i["instance_id"])["data"]["request"]["ticket"]: i["instance_id"]
               for i in instance_of(carol, "review_answer")}
    carol.complete(only_task(carol, answers[LONG])["id"], {"verdict": "fine"})
    assert carol.show(first["request"])["data"]["answer"]["verdict"] == "fine"
    assert "answer" not in carol.show(second["request"])["data"]
