"""Project closure's handlers that used to be scripts (workflows/closure.py): reading a gate's KILL, preparing who
acts and what a termination says, and the checklist and curation checks."""

from __future__ import annotations

import pytest

from pmoflow.workflows import closure

KILL = {"projectId": "PRJ-1", "projectTitle": "Billing", "pmUser": "pete", "sqaUser": "sam", "terminated": True,
        "rationale": "The market is gone.", "gateRef": "PRJ-1/G2"}


def test_a_kill_reads_as_a_terminated_closure_request():
    assert closure.kill_request(KILL) == {
        "projectId": "PRJ-1", "projectTitle": "Billing", "pmUser": "pete", "sqaUser": "sam", "sponsorUser": "",
        "closureType": "terminated", "contractType": "unknown", "gateRef": "PRJ-1/G2",
        "terminationRationale": "The market is gone.", "closureTrigger": "gate-kill"}
    bare = closure.kill_request({"projectId": "PRJ-1", "projectTitle": "Billing", "pmUser": "pete"})
    assert (bare["sqaUser"], bare["gateRef"], bare["terminationRationale"]) == ("", "", "")
    with pytest.raises(ValueError, match="missing pmUser"):
        closure.kill_request({"projectId": "PRJ-1", "projectTitle": "Billing"})


def prepare(closure_type="completed", pm=" pete ", sqa="sam ", sponsor="", gate="", rationale=""):
    return closure.prepare("PRJ-1", closure_type, pm, sqa, sponsor, gate, rationale)


def test_prepare_gives_each_lane_its_person():
    ready = prepare(sponsor=" sue ", rationale="ignored when not terminated")
    assert ready == {"pmUser": "pete", "sqaUser": "sam", "closureRef": "PRJ-1/closure", "terminated": False,
                     "terminationRationale": "",
                     "lane_owners": {"Project Manager": ["pete"], "SQA": ["sam"], "Sponsor": ["sue"]}}


def test_an_sqa_who_is_the_project_manager_leaves_the_audit_to_any_sqa():
    assert prepare(sqa="pete")["lane_owners"] == {"Project Manager": ["pete"]}
    assert prepare(sqa="")["lane_owners"] == {"Project Manager": ["pete"]}


def test_a_termination_keeps_its_rationale_or_gets_one():
    assert prepare("terminated", rationale="No budget")["terminationRationale"] == "No budget"
    assert prepare("terminated", gate="PRJ-1/G3", rationale=" ")["terminationRationale"] == (
        "Terminated at PRJ-1/G3; no rationale was given.")
    assert prepare("terminated")["terminationRationale"] == (
        "Terminated at the PMO's decision; no rationale was given.")


RULES = {"acceptanceRequired": True, "contractClosureRequired": True, "handoverRequired": True}


def check(rules=RULES, acceptance=None, closed=True, contract_ref="CTR-9", handover="HO-1", items=()):
    return closure.check_checklist(rules, "completed", "fixed-price", "Pete", acceptance or {}, closed, contract_ref,
                                   handover, list(items))


def test_the_checklist_rules_make_items_mandatory():
    assert check(acceptance={"ref": "ACC-1"}) == ""
    assert check() == ("The acceptance document is required for a completed fixed-price project: give its "
                       "reference, who accepted and when.")
    assert check(acceptance={"ref": "A"}, closed=False, contract_ref="") == (
        "The contracts must be closed before the project closes.")
    assert check(acceptance={"ref": "A"}, contract_ref=" ", handover="") == (
        "Give the contract closure record. Give the handover record of the deliverables.")
    relaxed = {"acceptanceRequired": False, "contractClosureRequired": False, "handoverRequired": False}
    assert check(relaxed, closed=False, contract_ref="", handover="") == ""


def test_no_open_item_stays_with_the_leaving_project_manager():
    items = [{"ref": "RISK-1", "owner": " pete "}, {"ref": "CR-2", "owner": "olga"}]
    assert check(acceptance={"ref": "A"}, items=items) == (
        "Open items must go to an owner who stays after closure, not the project manager: RISK-1.")


def test_every_lesson_gets_exactly_one_curation():
    lessons = [{"entryId": "LL-1"}, {"entryId": "LL-2"}]
    assert closure.check_curation(lessons, [{"entryId": "LL-2"}, {"entryId": "LL-1"}]) == ""
    assert closure.check_curation(lessons, [{"entryId": "LL-1"}, {"entryId": "LL-1"}, {"entryId": "LL-9"}]) == (
        "No decision for LL-2. No lesson LL-9 in this workshop (the lessons are LL-1, LL-2). Decide LL-1 once only.")
