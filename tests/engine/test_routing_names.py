"""Names that route a task (lane_owners, lane_roles) are checked as the task becomes ready: a name the database could
not store (too long, a NUL, blank) puts the instance in error at that task, with the reason, on SQLite and
PostgreSQL alike, instead of a DataError at save that strands the command with nothing recorded."""

from __future__ import annotations

import pytest

from conftest import FIXTURES

ROUTING = FIXTURES / "routing"


@pytest.mark.parametrize("reviewer, at, problem", [
    ("x" * 200, "rbs_review", "is longer than 120 characters"),
    ("   ", "rbs_review", "is empty"),
    # the script turns ~ into a NUL character (submitted data may not hold one): refused as the script's result
    ("bad~name", "rbs_route", "NUL"),
])
def test_an_unstorable_routing_name_is_an_error_at_the_task(pmo, make_pmo, reviewer, at, problem):
    pmo.deploy([ROUTING])
    bob = make_pmo("bob")
    good = bob.start("routed_by_script", {"reviewer": "carol"})
    assert good["status"] == "running"
    [task] = [t for t in make_pmo("carol").tasks() if t["instance_id"] == good["instance_id"]]
    assert task["candidates"] == ["carol"]
    bad = bob.start("routed_by_script", {"reviewer": reviewer})
    assert bad["status"] == "error"
    shown = pmo.show(bad["instance_id"])
    assert shown["error"]["bpmn_id"] == at and problem in shown["error"]["message"]
    assert shown["tasks"] == []
    assert [e["type"] for e in pmo.history(bad["instance_id"])][-1] == "error"
