"""The quality gate's handlers (workflows/gate.py) as plain functions: the round assessment, the decision check, the
escalation ladder and the corrective-action contract that used to be scripts in bpmn/quality_gate.bpmn, and the
checklists and profiles read from workflows/data (which the gate request form offers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmoflow.workflows import gate, policy

FORMS = Path(__file__).resolve().parents[2] / "forms"
CHECKLIST = {"mustMeet": ["Design reviewed and approved", "Test plan approved"]}
CM_OK = {"ok": True, "tagExists": True, "unauthorisedChanges": 0, "baselineTag": "PRJ-1-G2-BL"}
METRICS = {"minIndex": 0.93, "shouldScorePct": 70.0}


def sqa(ncs=(), recommendation="Ready"):
    ncs = list(ncs)
    return {"ncs": ncs, "recommendation": recommendation,
            "majorNCs": len([n for n in ncs if n["grade"] == "Major"]),
            "minorNCs": len([n for n in ncs if n["grade"] == "Minor"])}


def nc(id_, grade):
    return {"id": id_, "grade": grade, "clause": "PPQA", "requirement": "r", "evidence": "e", "description": "d"}


def assess(must_meet, cm=CM_OK, audit=None, high=0, round_=1, findings=(), rounds=()):
    return gate.assess(CHECKLIST, must_meet, cm, audit or sqa(), METRICS, high, round_, list(findings), list(rounds))


def test_a_clean_round_has_no_gaps_and_is_recorded():
    met = [{"criterion": " design REVIEWED and approved ", "met": True}, {"criterion": "Test plan approved",
                                                                          "met": True}]
    result = assess(met)
    assert (result["mustMeetGaps"], result["mustMeetAll"], result["openMajorNC"], result["minorNCOrHighRisk"]) == (
        [], True, 0, False)
    assert (result["minSpiCpi"], result["shouldScorePct"], result["gateFindings"]) == (0.93, 70.0, [])
    assert result["gateRounds"] == [{"round": 1, "sqaRecommendation": "Ready", "majorNCs": 0, "minorNCs": 0,
                                     "mustMeetGaps": [], "baseline": "PRJ-1-G2-BL", "baselineOk": True,
                                     "minSpiCpi": 0.93, "shouldScorePct": 70.0}]


def test_unreported_unmet_and_extra_criteria_and_a_failed_baseline_are_gaps():
    must_meet = [{"criterion": "Test plan approved", "met": False}, {"criterion": "Own criterion", "met": False}]
    bad_tag = {**CM_OK, "ok": False, "unauthorisedChanges": 2}
    assert assess(must_meet, cm=bad_tag)["mustMeetGaps"] == [
        "Design reviewed and approved", "Test plan approved", "Own criterion",
        "Baseline PRJ-1-G2-BL: 2 unauthorised change(s)"]
    no_tag = {**CM_OK, "ok": False, "tagExists": False}
    result = assess([], cm=no_tag, high=1)
    assert result["mustMeetGaps"][-1] == "Baseline PRJ-1-G2-BL: missing or incomplete"
    assert result["mustMeetAll"] is False and result["minorNCOrHighRisk"] is True


def test_a_later_rounds_nc_replaces_the_earlier_one_and_observations_get_no_capa():
    first = assess([], audit=sqa([nc("NC-1", "Major"), nc("NC-2", "Minor")]))
    second = assess([], audit=sqa([nc("NC-1", "Minor"), nc("OBS-1", "Observation")]), round_=2,
                    findings=first["gateFindings"], rounds=first["gateRounds"])
    assert [(f["id"], f["grade"], f["round"]) for f in second["gateFindings"]] == [
        ("NC-2", "Minor", 1), ("NC-1", "Minor", 2)]
    assert [r["round"] for r in second["gateRounds"]] == [1, 2]
    assert second["openMajorNC"] == 0 and second["minorNCOrHighRisk"] is True


def check(decision="GO", recommendation="GO", pd=False, conditions=(), justification=""):
    return gate.check_decision(decision, recommendation, "all criteria met", pd, 2, list(conditions), "2027-06-30",
                               justification)


def test_a_decision_following_the_recommendation_stands():
    assert check() == {"overridden": False, "lateConditions": [], "error": ""}


def test_an_override_needs_a_justification():
    refused = check("HOLD", justification="  ")
    assert refused["overridden"] is True
    assert refused["error"] == ("The decision HOLD differs from the recommendation GO (all criteria met): give an "
                                "override justification, or follow the recommendation.")
    assert check("HOLD", justification="Budget freeze")["error"] == ""


def test_after_two_recycles_only_kill_or_hold():
    assert check("RECYCLE", "KILL", pd=True, justification="x")["error"].startswith(
        "After 2 recycles with a must-meet criterion still failing, the Project Director confirms KILL")
    assert check("HOLD", "KILL", pd=True, justification="x")["error"] == ""


def test_conditions_are_due_by_the_next_gate():
    conditions = [{"text": "Fix A", "due": "2027-06-30"}, {"text": "Fix B", "due": "2027-07-01"}]
    late = check("CONDITIONAL_GO", "CONDITIONAL_GO", conditions=conditions)
    assert late["lateConditions"] == ["Fix B"]
    assert late["error"] == "Conditions are due by the next gate (2027-06-30); these are not: Fix B."
    assert check("GO", "GO", conditions=conditions)["lateConditions"] == []


@pytest.mark.parametrize(("role", "up"), [
    ("Senior Project Manager", "Assistant Project Director"),
    ("Assistant Project Director", "Project Director"),
    ("Project Director", "Project Director"),
    ("Quality Director", "Project Director"),
])
def test_the_decision_climbs_the_gate_ladder(role, up):
    assert gate.escalate_decider(role) == up


def test_capa_findings_follow_the_call_contract():
    found = [{**nc("NC-1", "Major"), "round": 2, "extra": "dropped"}]
    assert gate.capa_findings(found, "PRJ-1/G2") == [
        {"id": "NC-1", "grade": "Major", "clause": "PPQA", "requirement": "r", "evidence": "e", "description": "d",
         "source": "gate", "sourceRef": "PRJ-1/G2 round 2"}]


def test_the_lite_profile_tailors_the_checklist_by_the_data_file():
    full, lite = gate.load_checklist("G1", "Full"), gate.load_checklist("G1", "Lite")
    assert "Estimates reviewed by a second estimator" in full["shouldMeet"]
    assert "Estimates reviewed by a second estimator" not in lite["shouldMeet"]
    assert lite["mustMeet"] == full["mustMeet"]
    with pytest.raises(ValueError, match="unknown gate profile 'Huge'; expected one of Full, Standard, Lite"):
        gate.load_checklist("G1", "Huge")


def test_the_gate_request_form_offers_the_gates_and_profiles_of_the_data_files():
    form = json.loads((FORMS / "gate-request.schema.json").read_text(encoding="utf-8"))["properties"]
    assert form["gateId"]["enum"] == list(policy.load("gate_checklists"))
    assert form["gateProfile"]["enum"] == list(policy.load("gate_profiles"))
