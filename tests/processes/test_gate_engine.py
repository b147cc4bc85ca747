"""Scenario tests of the quality gate review run by the pmoflow engine, through the Python API, on a real database.

Every test starts from the bundled demo organisation and process library (the ``demo_pmo`` fixture) and acts as
the demo users who would do each step: the PMO's Senior Project Manager (sara.spm) schedules the gate, the
project manager (pete.pm) presents the package, the SQA (sam.sqa) audits, the configuration engineer's and the
measurement analyst's checks run as services, the chair of the gate profile decides (Standard: the Assistant
Project Director, alex.apd; after two recycles the Project Director, pat.director), the Quality Director
(quinn.qd) assigns SQAs and countersigns. Major and Minor NCs run the corrective action process (a call
activity) before the gate closes. Timers are fired with ``run_due(now)``; dates are counted from today so the
timers lie in the future whatever day the tests run. Each test runs on SQLite and, when PMOFLOW_TEST_PG_URL is
set, on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from lxml import etree
from scenario_helpers import (
    after,
    assert_completed,
    assert_in_order,
    complete,
    gateways_on_loops,
    inbox,
    open_tasks,
    task_for,
)
from test_capa_engine import QD, close_capa, run_capa, services

from conftest import People
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PermissionDenied
from pmoflow.workflows.gate import load_checklist

PROCESS = "quality_gate"
SECRETARY, PM, SQA, APD, PD = "sara.spm", "pete.pm", "sam.sqa", "alex.apd", "pat.director"
BPMN = Path(__file__).resolve().parents[2] / "bpmn" / "quality_gate.bpmn"
CL = load_checklist("G2", "Standard")
TODAY = date.today()


def day(n: int) -> str:
    return (TODAY + timedelta(days=n)).isoformat()


def at_nine(iso_day: str, days: float = 0) -> datetime:
    """09:00 UTC of a day (when the gate's date timers fire), moved by `days`."""
    return datetime.combine(date.fromisoformat(iso_day), time(9), UTC) + timedelta(days=days)


# ---------------------------------------------------------------------------------------------------------
# Form data (valid unless a test changes it)
# ---------------------------------------------------------------------------------------------------------


def request(**extra) -> dict:
    data = {"projectId": "PRJ-2027-0A1B2C", "projectTitle": "Customer portal replacement", "gateId": "G2",
            "gateProfile": "Standard", "plannedGateDate": day(10), "nextGateDate": day(120), "pmUser": PM,
            "sqaUser": SQA, "projectTeam": [PM, "kim.dev", "lee.ops"]}
    data.update(extra)
    return data


def package(**extra) -> dict:
    data = {
        "deliverables": [{"doc": d, "version": "1.0", "cmTag": "PRJ-2027-0A1B2C-G2", "status": "Baselined"}
                         for d in CL["deliverables"]],
        "spi": 0.97, "cpi": 1.02, "openRisks": {"high": 1, "medium": 3, "low": 5}, "highRisksWithoutResponse": 0,
        "openDefects": {"critical": 0, "major": 2, "minor": 7},
        "mustMeet": [{"criterion": c, "met": True, "evidence": "https://docs.example.org/g2/" + str(i)}
                     for i, c in enumerate(CL["mustMeet"])],
        "shouldMeet": [{"criterion": c, "score": 8} for c in CL["shouldMeet"]],
        "resourcesForNextStage": True, "businessCaseStillValid": True,
    }
    data.update(extra)
    return data


FAILED_MUST_MEET = package(mustMeet=[{"criterion": CL["mustMeet"][0], "met": False}] + [
    {"criterion": c, "met": True, "evidence": "https://docs.example.org/g2"} for c in CL["mustMeet"][1:]])


def nc(i: int, grade: str) -> dict:
    return {"id": f"NC-{i}", "grade": grade, "clause": "CMMI PPQA SP1.2",
            "requirement": "Design reviews are held per the review procedure with records",
            "evidence": f"No minutes for design review {i}", "description": f"Design review {i} has no record"}


def audit(ncs=(), recommendation: str = "Ready") -> dict:
    return {"checklist": [{"criterion": c, "result": "C"} for c in CL["auditCriteria"]], "ncs": list(ncs),
            "sqaRecommendation": recommendation, "auditSummary": "Design stage audited against the G2 criteria."}


def decide(decision: str, signer: str = "Alex Assistant-Director", **extra) -> dict:
    return {"gateDecision": decision, "chairSignature": signer, **extra}


def conditions() -> list[dict]:
    return [{"text": "Security review of the design", "owner": PM, "due": day(30)},
            {"text": "Performance budget allocated", "owner": "kim.dev", "due": day(60)}]


def verification(met: bool = True, hold_until: str | None = None) -> dict:
    results = [{"text": c["text"], "met": met or i == 0, "evidence": "Report " + str(i)}
               for i, c in enumerate(conditions())]
    return {"conditionResults": results, **({"holdReviewDate": hold_until} if hold_until else {})}


RECYCLE = decide("RECYCLE", recycleTargetStage="Design", recycleGaps="The design review is not approved.")

JUSTIFICATION = "The gatekeepers accept the risk: the sponsor needs the release."

# ---------------------------------------------------------------------------------------------------------
# Helpers (shared ones: scenario_helpers.py; CAPA steps: test_capa_engine.py; `people`: conftest.py)
# ---------------------------------------------------------------------------------------------------------


def start(people: People, data: dict | None = None, user: str = SECRETARY) -> int:
    result = people(user).start(PROCESS, data or request())
    assert (result["status"], result["error"]) == ("running", None)
    return result["instance_id"]


def assessed(people: People, iid: int, pack: dict, sqa_audit: dict, pm: str = PM) -> dict:
    """The project manager presents the package, the SQA audits it; returns the data the chair sees."""
    complete(people(pm), iid, "gate_package", pack)
    complete(people(SQA), iid, "sqa_audit", sqa_audit)
    [decision] = [t for t in people(SECRETARY).show(iid)["tasks"] if t["state"] == "ready"]
    assert decision["bpmn_id"] == "gate_decision"
    return people(SECRETARY).task(decision["id"])["data"]


def shown_data(app: Pmoflow, iid: int) -> dict:
    return app.show(iid)["data"]


def decisions(history: list[dict]) -> list[dict]:
    return [e["payload"] for e in history if e["type"] == "decision" and "GateRecommendation" in
            e["payload"]["decision"]]


# ---------------------------------------------------------------------------------------------------------
# GO and CONDITIONAL_GO
# ---------------------------------------------------------------------------------------------------------


def test_go_on_a_clean_gate(people):
    sara, pete, paula, sam, alex, pat, quinn = (people(u) for u in (
        SECRETARY, PM, "paula.pm", SQA, APD, PD, QD))
    iid = start(people)

    # the package: the project manager named, no other Project Manager
    package_task = task_for(pete, iid, "gate_package")
    assert (package_task["lane"], package_task["candidates"], package_task["candidate_kind"]) == (
        "Project Manager", [PM], "user")
    assert inbox(paula, iid) == inbox(sara, iid) == inbox(sam, iid) == []
    data = pete.task(package_task["id"])["data"]
    assert data["gateChecklist"] == CL and data["chairRole"] == "Assistant Project Director"
    complete(pete, iid, "gate_package", package())

    # the assessment round: only the SQA audit waits for a person; the CM and metrics services already ran
    audit_task = task_for(sam, iid, "sqa_audit")
    assert (audit_task["lane"], audit_task["candidates"]) == ("SQA", [SQA])
    assert open_tasks(sara, iid) == [("sqa_audit", [SQA])]
    history = sara.history(iid)
    assert [e["task"] for e in services(history)] == ["load_checklist", "check_baseline", "metrics_snapshot"]
    complete(sam, iid, "sqa_audit", audit())

    # the chair of the Standard profile decides; the Project Director is not asked
    decision = task_for(alex, iid, "gate_decision")
    assert (decision["lane"], decision["candidates"], decision["candidate_kind"]) == (
        "Project Director", ["Assistant Project Director"], "role")
    assert inbox(pat, iid) == inbox(pete, iid) == inbox(quinn, iid) == []
    assert abs(after(decision["created_at"], 5) - after(decision["due"], 0)) < timedelta(minutes=1)
    seen = alex.task(decision["id"])["data"]
    assert (seen["recommendation"], seen["recommendationReason"], seen["pdMustConfirm"]) == (
        "GO", "Every criterion is met.", False)
    assert seen["cmCheck"]["ok"] and seen["sqaAudit"]["recommendation"] == "Ready"
    complete(alex, iid, "gate_decision", decide("GO"))

    data = assert_completed(sara, iid, "GO")
    assert (data["nextStage"]["stageOpened"], data["nextStage"]["budgetTrancheReleased"]) == ("G3", True)
    assert data["nextStage"]["baselineRequest"] == {"process": "configuration_baseline",
                                                     "baselineTag": "PRJ-2027-0A1B2C-G2-BL", "status": "requested"}
    assert data["capaFindings"] == [] and data["capaResults"] == []
    assert [(d["recommendation"], d["decision"], d["overridden"]) for d in data["gateDecisions"]] == [
        ("GO", "GO", False)]
    history = sara.history(iid)
    assert_in_order(history, [
        ("instance_started", None), ("service_called", "load_checklist"), ("task_completed", "gate_package"),
        ("service_called", "check_baseline"), ("service_called", "metrics_snapshot"),
        ("task_completed", "sqa_audit"), ("decision", "recommend"), ("task_completed", "gate_decision"),
        ("service_called", "open_next_stage"), ("instance_completed", None),
    ])
    [rule] = decisions(history)
    assert rule["hit_policy"] == "FIRST" and [r["id"] for r in rule["matched_rules"]] == ["Rule_go"]
    assert rule["inputs"] == {"Business case still valid": True, "All must-meet criteria met": True,
                              "Open Major NCs": 0, "Recycles so far": 0, "Resources for the next stage": True,
                              "min(SPI, CPI)": 0.97, "Minor NC or unmitigated high risk": False,
                              "Should-meet score %": 80.0}
    completed = {e["task"]: e for e in history if e["type"] == "task_completed"}
    assert {t: e["actor"] for t, e in completed.items()} == {"gate_package": PM, "sqa_audit": SQA,
                                                             "gate_decision": APD}
    assert completed["gate_decision"]["payload"]["duty_checks"] == [
        {"rule": "performer differs from gate_package", "result": "passed"}]
    assert [e for e in history if e["task"] in ("capa_per_nc", "containment")] == []


def test_conditional_go_the_timer_starts_the_sqa_verification(people):
    sara, alex, sam = people(SECRETARY), people(APD), people(SQA)
    iid = start(people)
    seen = assessed(people, iid, package(spi=0.85), audit())
    assert (seen["recommendation"], seen["minSpiCpi"]) == ("CONDITIONAL_GO", 0.85)
    complete(alex, iid, "gate_decision", decide("CONDITIONAL_GO", conditions=conditions()))

    # the next stage is open; nobody has a task until the earliest condition falls due
    shown = sara.show(iid)
    assert shown["status"] == "waiting" and open_tasks(sara, iid) == []
    assert shown["data"]["nextStage"]["actionItems"] == [{**c, "status": "open"} for c in conditions()]
    assert after(shown["next_due"], 0) == at_nine(day(30))
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(30), -0.5))["fired"] == []
    fired = sara.acting_as("pmo.admin").run_due(at_nine(day(30), 0.1))
    assert (fired["fired"], fired["errors"]) == ([iid], [])
    verify = task_for(sam, iid, "verify_conditions")
    assert verify["candidates"] == [SQA]
    complete(sam, iid, "verify_conditions", verification())

    data = assert_completed(sara, iid, "CONDITIONAL_GO")
    assert data["conditionsUnmet"] == [] and data["holdCount"] == 0
    history = sara.history(iid)
    assert_in_order(history, [("task_completed", "gate_decision"), ("service_called", "open_next_stage"),
                              ("timer_fired", "wait_conditions"), ("task_completed", "verify_conditions"),
                              ("instance_completed", None)])


def test_an_unmet_condition_holds_the_gate_until_the_review_date(people):
    sara, pete, alex, sam = people(SECRETARY), people(PM), people(APD), people(SQA)
    iid = start(people)
    assessed(people, iid, package(spi=0.85), audit())
    complete(alex, iid, "gate_decision", decide("CONDITIONAL_GO", conditions=conditions()))
    sara.acting_as("pmo.admin").run_due(at_nine(day(30), 0.1))
    with pytest.raises(InvalidInput) as refused:  # an unmet condition needs the date of the next review
        sam.complete(task_for(sam, iid, "verify_conditions")["id"], verification(met=False))
    assert [d.split(":")[0] for d in refused.value.details] == ["holdReviewDate"]
    complete(sam, iid, "verify_conditions", verification(met=False, hold_until=day(75)))

    # HOLD: the project waits until the review date, then the package comes back to the project manager
    shown = sara.show(iid)
    assert shown["status"] == "waiting" and shown["data"]["gateDecision"] == "HOLD"
    assert shown["data"]["conditionsUnmet"] == ["Performance budget allocated"]
    assert after(shown["next_due"], 0) == at_nine(day(75))
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(74)))["fired"] == []
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(75), 0.1))["fired"] == [iid]
    assert inbox(pete, iid) == ["gate_package"]
    seen = assessed(people, iid, package(), audit())
    assert seen["gateRound"] == 2
    complete(alex, iid, "gate_decision", decide("GO"))

    data = assert_completed(sara, iid, "GO")
    assert (data["holdCount"], data["recycleCount"], data["gateRound"]) == (1, 0, 2)
    history = sara.history(iid)
    assert [e["task"] for e in history if e["type"] == "timer_fired"] == ["wait_conditions", "wait_hold"]
    assert [e["task"] for e in services(history)].count("open_next_stage") == 2


def test_conditional_go_and_hold_wait_without_open_tasks(people):
    """While a gate waits for a date nobody has a task: the conditions' verification and the HOLD review."""
    sara, pete, alex, sam = people(SECRETARY), people(PM), people(APD), people(SQA)
    conditional = start(people)
    assessed(people, conditional, package(spi=0.85), audit())
    complete(alex, conditional, "gate_decision", decide("CONDITIONAL_GO", conditions=conditions()))
    shown = sara.show(conditional)
    assert (shown["status"], open_tasks(sara, conditional)) == ("waiting", [])
    assert shown["data"]["conditionsCheckAt"] == day(30) + "T09:00:00+00:00"
    assert shown["data"]["nextStage"]["actionItems"] == [{**c, "status": "open"} for c in conditions()]
    assert [e["payload"]["taken"] for e in sara.history(conditional) if e["task"] == "gw_conditional"] == [
        ["Schedule the verification"]]

    hold = start(people)
    assessed(people, hold, package(resourcesForNextStage=False), audit())
    complete(alex, hold, "gate_decision", decide("HOLD", holdReviewDate=day(40)))
    shown = sara.show(hold)
    assert (shown["status"], open_tasks(sara, hold)) == ("waiting", [])
    assert (shown["data"]["holdReviewAt"], shown["data"]["holdCount"]) == (day(40) + "T09:00:00+00:00", 1)
    assert inbox(pete, hold) == inbox(sam, hold) == []


def test_the_worker_indexes_a_date_timer(people):
    """Regression: engine/runtime.py next_due() once kept only event types containing 'Timer', so a timeDate timer
    (TimeDateEventDefinition) got no next_due and no worker fired it: a gate on HOLD waited forever."""
    sara, alex = people(SECRETARY), people(APD)
    iid = start(people)
    assessed(people, iid, package(resourcesForNextStage=False), audit())
    complete(alex, iid, "gate_decision", decide("HOLD", holdReviewDate=day(40)))
    assert after(sara.show(iid)["next_due"], 0) == at_nine(day(40))
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(40), -0.1))["fired"] == []
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(40), 0.1))["fired"] == [iid]


# ---------------------------------------------------------------------------------------------------------
# HOLD, RECYCLE, KILL
# ---------------------------------------------------------------------------------------------------------


def test_hold_waits_for_the_review_date_then_the_package_again(people):
    sara, pete, alex = people(SECRETARY), people(PM), people(APD)
    iid = start(people)
    seen = assessed(people, iid, package(resourcesForNextStage=False), audit())
    assert (seen["recommendation"], seen["recommendationReason"]) == (
        "HOLD", "The resources for the next stage are not secured.")
    with pytest.raises(InvalidInput) as refused:
        alex.complete(task_for(alex, iid, "gate_decision")["id"], decide("HOLD"))
    assert [d.split(":")[0] for d in refused.value.details] == ["holdReviewDate"]
    complete(alex, iid, "gate_decision", decide("HOLD", holdReviewDate=day(40)))
    assert sara.show(iid)["status"] == "waiting" and inbox(pete, iid) == []
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(39)))["fired"] == []
    assert sara.acting_as("pmo.admin").run_due(at_nine(day(40), 0.1))["fired"] == [iid]
    assessed(people, iid, package(), audit())
    complete(alex, iid, "gate_decision", decide("GO"))
    data = assert_completed(sara, iid, "GO")
    assert [(d["recommendation"], d["decision"]) for d in data["gateDecisions"]] == [("HOLD", "HOLD"), ("GO", "GO")]
    assert [e["task"] for e in sara.history(iid) if e["type"] == "timer_fired"] == ["wait_hold"]


def test_recycle_goes_straight_back_to_the_package(people):
    sara, pete, alex = people(SECRETARY), people(PM), people(APD)
    iid = start(people)
    seen = assessed(people, iid, FAILED_MUST_MEET, audit())
    assert (seen["recommendation"], seen["mustMeetGaps"]) == ("RECYCLE", [CL["mustMeet"][0]])
    complete(alex, iid, "gate_decision", RECYCLE)
    assert inbox(pete, iid) == ["gate_package"]  # no timer
    rework = pete.task(task_for(pete, iid, "gate_package")["id"])["data"]
    assert (rework["recycleCount"], rework["recycleGaps"]) == (1, "The design review is not approved.")
    assessed(people, iid, package(), audit())
    complete(alex, iid, "gate_decision", decide("GO"))
    data = assert_completed(sara, iid, "GO")
    assert (data["recycleCount"], data["gateRound"]) == (1, 2)
    assert [r["mustMeetGaps"] for r in data["gateRounds"]] == [[CL["mustMeet"][0]], []]
    # a new assessment subprocess each round: two joins, two SQA audits, no early join
    history = sara.history(iid)
    assert [e["task"] for e in history if e["type"] == "task_completed"] == [
        "gate_package", "sqa_audit", "gate_decision", "gate_package", "sqa_audit", "gate_decision"]
    assert [e["task"] for e in services(history)].count("check_baseline") == 2


@pytest.mark.parametrize("final", ["KILL", "HOLD"])
def test_after_two_recycles_the_pd_confirms_kill_or_chooses_hold(people, final):
    sara, alex, pat = people(SECRETARY), people(APD), people(PD)
    iid = start(people)
    for round_ in (1, 2):
        seen = assessed(people, iid, FAILED_MUST_MEET, audit())
        assert (seen["recommendation"], seen["recycleCount"]) == ("RECYCLE", round_ - 1)
        complete(alex, iid, "gate_decision", RECYCLE)

    seen = assessed(people, iid, FAILED_MUST_MEET, audit())
    assert (seen["recommendation"], seen["pdMustConfirm"], seen["recycleCount"]) == ("KILL", True, 2)
    decision = task_for(pat, iid, "gate_decision")  # the Project Director, not the profile's chair
    assert decision["candidates"] == ["Project Director"] and inbox(alex, iid) == []
    complete(pat, iid, "gate_decision", decide("GO", "Pat Director", overrideJustification=JUSTIFICATION))
    sent_back = pat.task(task_for(pat, iid, "gate_decision")["id"])["data"]
    assert sent_back["decisionError"].startswith("After 2 recycles")

    if final == "KILL":
        complete(pat, iid, "gate_decision", decide("KILL", "Pat Director", killRationale="No approvable design."))
        data = assert_completed(sara, iid, "KILLED")
        closure = handed_to_closure(sara, iid, "pat.director")
        assert (closure["terminated"], closure["rationale"]) == (True, "No approvable design.")
        assert "nextStage" not in data
    else:
        hold = decide("HOLD", "Pat Director", holdReviewDate=day(20))
        # an override of KILL needs a justification: the one given with the refused GO does not count
        complete(pat, iid, "gate_decision", hold)
        returned = pat.task(task_for(pat, iid, "gate_decision")["id"])["data"]
        assert returned["decisionError"].startswith("The decision HOLD differs from the recommendation KILL")
        assert returned["returnedDecision"]["gateDecision"] == "HOLD" and returned["overrideJustification"] == ""
        complete(pat, iid, "gate_decision", {**hold, "overrideJustification": JUSTIFICATION})
        sara.acting_as("pmo.admin").run_due(at_nine(day(20), 0.1))
        seen = assessed(people, iid, package(), audit())
        assert (seen["recommendation"], seen["deciderRole"]) == ("GO", "Assistant Project Director")
        complete(alex, iid, "gate_decision", decide("GO"))
        data = assert_completed(sara, iid, "GO")
        assert data["gateDecisions"][2] | {"signature": None} == {
            "round": 3, "recommendation": "KILL", "decision": "HOLD", "overridden": True,
            "overrideJustification": JUSTIFICATION, "chairRole": "Project Director", "signature": None,
            "sqaRecommendation": "Ready"}
    rules = [d["matched_rules"][0]["id"] for d in decisions(sara.history(iid))]
    assert rules[:3] == ["Rule_must_meet", "Rule_must_meet", "Rule_recycled_twice"]


def test_an_invalid_business_case_is_killed(people):
    sara, alex = people(SECRETARY), people(APD)
    iid = start(people)
    seen = assessed(people, iid, package(businessCaseStillValid=False), audit())
    assert (seen["recommendation"], seen["pdMustConfirm"]) == ("KILL", False)
    with pytest.raises(InvalidInput) as refused:
        alex.complete(task_for(alex, iid, "gate_decision")["id"], decide("KILL"))
    assert [d.split(":")[0] for d in refused.value.details] == ["killRationale"]
    complete(alex, iid, "gate_decision", decide("KILL", killRationale="The market is gone."))
    assert_completed(sara, iid, "KILLED")
    closure = handed_to_closure(sara, iid, "alex.apd")
    assert (closure["gateRef"], closure["rationale"]) == ("PRJ-2027-0A1B2C/G2", "The market is gone.")


def handed_to_closure(app: Pmoflow, iid: int, decider: str) -> dict:
    """A KILL sends closure_requested: it starts one project closure, owned by whoever decided the KILL,
    waiting for the project manager's checklist. Returns the closure request it received."""
    [sent] = [e for e in app.history(iid) if e["type"] == "message_sent"]
    assert (sent["task"], sent["payload"]["message"]) == ("request_closure", "closure_requested")
    closure = sent["payload"]["to_instance"]
    shown = app.show(closure)
    assert (shown["process_id"], shown["started_by"], shown["status"]) == ("project_closure", decider, "running")
    assert [t["lane"] for t in shown["tasks"] if t["state"] == "ready"] == ["Project Manager"]
    [received] = [e for e in app.history(closure) if e["type"] == "message_received"]
    assert received["payload"]["from_instance"] == iid
    return shown["data"]["closureRequest"]


# ---------------------------------------------------------------------------------------------------------
# Override, countersignature, veto
# ---------------------------------------------------------------------------------------------------------


def test_an_override_needs_a_justification(people):
    sara, alex = people(SECRETARY), people(APD)
    iid = start(people)
    seen = assessed(people, iid, package(highRisksWithoutResponse=2), audit())
    assert seen["recommendation"] == "CONDITIONAL_GO"
    decision = task_for(alex, iid, "gate_decision")
    with pytest.raises(InvalidInput, match="does not ask for: recommendation"):  # nor may the chair rewrite it
        alex.complete(decision["id"], {**decide("GO"), "recommendation": "GO"})

    complete(alex, iid, "gate_decision", decide("GO"))  # no justification: sent back, with the reason
    again = task_for(alex, iid, "gate_decision")
    assert again["id"] != decision["id"]
    error = alex.task(again["id"])["data"]["decisionError"]
    assert error == ("The decision GO differs from the recommendation CONDITIONAL_GO (A Minor nonconformity or a "
                     "high risk without response is open.): give an override justification, or follow the "
                     "recommendation.")
    complete(alex, iid, "gate_decision", decide("GO", overrideJustification=JUSTIFICATION))

    data = assert_completed(sara, iid, "GO")
    assert data["gateDecisions"][0]["overridden"] is True
    assert data["gateDecisions"][0]["overrideJustification"] == JUSTIFICATION
    history = sara.history(iid)
    assert [e["payload"]["taken"] for e in history if e["task"] == "gw_decision_valid"] == [
        ["gw_decision_merge"], ["Record the decision"]]
    assert [e["payload"]["data"].get("overrideJustification") for e in history
            if e["type"] == "task_completed" and e["task"] == "gate_decision"] == [None, JUSTIFICATION]


def test_conditions_are_due_by_the_next_gate(people):
    sara, alex = people(SECRETARY), people(APD)
    iid = start(people)
    assessed(people, iid, package(spi=0.8), audit())
    late = [{**conditions()[0], "due": day(200)}]
    complete(alex, iid, "gate_decision", decide("CONDITIONAL_GO", conditions=late))
    error = alex.task(task_for(alex, iid, "gate_decision")["id"])["data"]["decisionError"]
    assert error == f"Conditions are due by the next gate ({day(120)}); these are not: Security review of the design."
    complete(alex, iid, "gate_decision", decide("CONDITIONAL_GO", conditions=conditions()))
    assert sara.show(iid)["status"] == "waiting"


@pytest.mark.parametrize("answer", ["Accept risk", "Veto"])
def test_a_go_against_an_sqa_not_ready_needs_the_qd(people, answer):
    sara, pete, alex, quinn = people(SECRETARY), people(PM), people(APD), people(QD)
    iid = start(people)
    assessed(people, iid, package(), audit(recommendation="Not-ready"))
    complete(alex, iid, "gate_decision", decide("GO"))
    sign = task_for(quinn, iid, "qd_countersign")
    assert (sign["lane"], sign["candidates"]) == ("Quality Director", ["Quality Director"])
    assert sara.show(iid)["status"] == "running" and "nextStage" not in shown_data(sara, iid)
    complete(quinn, iid, "qd_countersign", {"countersignDecision": answer, "countersignRationale": "Reviewed.",
                                            "qdSignature": "Quinn Quality-Director"})
    if answer == "Accept risk":
        data = assert_completed(sara, iid, "GO")
        assert data["gateDecisions"][0]["qdCountersign"] == "Accept risk"
    else:  # the veto turns the GO into RECYCLE: the package comes back
        assert inbox(pete, iid) == ["gate_package"]
        data = pete.task(task_for(pete, iid, "gate_package")["id"])["data"]
        assert (data["gateDecision"], data["recycleCount"], data["recycleGaps"]) == (
            "RECYCLE", 1, "Quality veto: Reviewed.")
        assessed(people, iid, package(), audit())
        complete(alex, iid, "gate_decision", decide("GO"))  # the SQA is satisfied now: no countersignature
        data = assert_completed(sara, iid, "GO")
        assert [d.get("qdCountersign") for d in data["gateDecisions"]] == ["Veto", None]


# ---------------------------------------------------------------------------------------------------------
# Corrective actions per NC (call activity)
# ---------------------------------------------------------------------------------------------------------


def test_major_and_minor_ncs_each_get_a_corrective_action_before_the_gate_closes(people):
    sara, pete, sam, alex, quinn = people(SECRETARY), people(PM), people(SQA), people(APD), people(QD)
    iid = start(people)
    assessed(people, iid, package(), audit([nc(1, "Major"), nc(9, "Observation")], "Not-ready"))
    complete(alex, iid, "gate_decision", RECYCLE)
    seen = assessed(people, iid, package(), audit([nc(2, "Minor")], "Ready-with-conditions"))
    assert seen["recommendation"] == "CONDITIONAL_GO"
    complete(alex, iid, "gate_decision", decide("GO", overrideJustification=JUSTIFICATION))

    # the gate is open until both corrective actions close: one call per NC, the observation gets none
    shown = sara.show(iid)
    assert shown["status"] == "running" and "outcome" not in shown["data"]
    assert [(f["id"], f["grade"], f["sourceRef"]) for f in shown["data"]["capaFindings"]] == [
        ("NC-1", "Major", "PRJ-2027-0A1B2C/G2 round 1"), ("NC-2", "Minor", "PRJ-2027-0A1B2C/G2 round 2")]
    assert (shown["data"]["capaAuditor"], shown["data"]["capaAuditee"]) == (SQA, PM)
    assert open_tasks(sara, iid) == [("containment", [PM]), ("containment", [PM])]
    tasks = [t for t in pete.tasks() if t["instance_id"] == iid]
    assert [(t["bpmn_id"], t["lane"], t["process_id"]) for t in tasks] == [("containment", "Auditee", PROCESS)] * 2
    assert sorted(pete.task(t["id"])["data"]["capaFinding"]["id"] for t in tasks) == ["NC-1", "NC-2"]
    assert inbox(sam, iid) == []
    history = sara.history(iid)
    opened = [e["payload"]["result"] for e in services(history, "open_capa")]
    assert sorted((o["findingId"], o["grade"], o["auditor"], o["auditee"], o["source"]) for o in opened) == [
        ("NC-1", "Major", SQA, PM, "gate"), ("NC-2", "Minor", SQA, PM, "gate")]
    timing = [e["payload"] for e in history if e["type"] == "decision" and "CAPATiming" in e["payload"]["decision"]]
    assert sorted(d["inputs"]["Grade"] for d in timing) == ["Major", "Minor"]

    # the project manager acts, the SQA who audited verifies; each corrective action on its own timer
    for fid in ("NC-1", "NC-2"):
        run_capa(people, iid, auditor=SQA, auditee=PM, finding_id=fid)
    assert sara.show(iid)["status"] == "waiting" and open_tasks(sara, iid) == []
    assert sara.acting_as("pmo.admin").run_due(after(sara.show(iid)["next_due"], 1))["fired"] == [iid]  # Minor: P60D
    assert open_tasks(sara, iid) == [("check_effectiveness", [SQA])]
    close_capa(people, iid, auditor=SQA, finding_id="NC-2")
    assert sara.show(iid)["status"] == "waiting"  # the Major one still runs
    assert sara.acting_as("pmo.admin").run_due(after(sara.show(iid)["next_due"], 1))["fired"] == [iid]  # Major: P90D
    close_capa(people, iid, auditor=SQA, grade="Major", finding_id="NC-1")
    assert inbox(quinn, iid) == []

    data = assert_completed(sara, iid, "GO")
    results = sorted(data["capaResults"], key=lambda r: r["findingId"])
    assert [{k: v for k, v in r.items() if k != "closedOn"} for r in results] == [
        {"findingId": "NC-1", "grade": "Major", "status": "Closed", "cycles": 1, "effective": True},
        {"findingId": "NC-2", "grade": "Minor", "status": "Closed", "cycles": 1, "effective": True}]
    assert not {"capaFinding", "capaResult", "rootCause", "actions"} & set(data)  # only the contract comes back
    history = sara.history(iid)
    done = [(e["task"], e["actor"]) for e in history if e["type"] == "task_completed"]
    assert done.count(("containment", PM)) == done.count(("close_capa", SQA)) == 2
    assert done.count(("countersign_capa", QD)) == 1
    assert_in_order(history, [("task_completed", "gate_decision"), ("service_called", "open_next_stage"),
                              ("service_called", "open_capa"), ("task_completed", "close_capa"),
                              ("task_completed", "countersign_capa"), ("instance_completed", None)])


# ---------------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------------


def test_the_sqa_must_be_independent_of_the_project(people):
    sara, quinn, sam = people(SECRETARY), people(QD), people(SQA)
    iid = start(people, request(sqaUser="kim.dev"))
    assign = task_for(quinn, iid, "assign_sqa")
    assert open_tasks(sara, iid) == [("assign_sqa", ["Quality Director"])]
    assert quinn.task(assign["id"])["data"]["sqaValidationError"] == (
        "kim.dev is on the project team (or manages the project): the SQA must be independent of the project. "
        "Assign another SQA.")
    complete(quinn, iid, "assign_sqa", {"sqaUser": PM})  # the project manager: refused again
    assert inbox(quinn, iid) == ["assign_sqa"]
    complete(quinn, iid, "assign_sqa", {"sqaUser": SQA})
    assert inbox(people(PM), iid) == ["gate_package"]
    complete(people(PM), iid, "gate_package", package())
    assert task_for(sam, iid, "sqa_audit")["candidates"] == [SQA]
    assert [e["payload"]["taken"] for e in sara.history(iid) if e["task"] == "gw_sqa_independent"] == [
        ["Assign an SQA"], ["Assign an SQA"], ["Load the gate checklist"]]


def test_the_chair_may_not_be_the_project_manager(people):
    """Lite profile: a Senior Project Manager chairs. Sara manages this small project herself, so the engine refuses
    her the decision on her own package; after 5 days it goes to the Assistant Project Director."""
    sara, alex = people(SECRETARY), people(APD)
    iid = start(people, request(gateProfile="Lite", pmUser=SECRETARY, projectTeam=[SECRETARY, "kim.dev"]))
    lite = load_checklist("G2", "Lite")
    complete(sara, iid, "gate_package", package(
        deliverables=[{"doc": d, "version": "1.0", "cmTag": "T", "status": "Approved"} for d in lite["deliverables"]],
        shouldMeet=[{"criterion": c, "score": 9} for c in lite["shouldMeet"]]))
    complete(people(SQA), iid, "sqa_audit", audit())
    decision = [t for t in sara.show(iid)["tasks"] if t["state"] == "ready"][0]
    assert (decision["bpmn_id"], decision["candidates"], decision["excluded"]) == (
        "gate_decision", ["Senior Project Manager"], [SECRETARY])
    assert inbox(sara, iid) == []
    before = sara.show(iid), sara.history(iid)
    with pytest.raises(PermissionDenied, match="segregation of duties") as refused:
        sara.complete(decision["id"], decide("GO", "Sara Senior-PM"))
    assert "performed task gate_package" in refused.value.message
    with pytest.raises(PermissionDenied, match="segregation of duties"):
        sara.claim(decision["id"])
    after_show, after_history = sara.show(iid), sara.history(iid)
    assert after_history[:-2] == before[1] and after_show["tasks"] == before[0]["tasks"]
    assert [(e["type"], e["actor"], e["payload"]["rule"]) for e in after_history[-2:]] == [
        ("duty_refused", SECRETARY, "performer differs from gate_package")] * 2

    # nobody else holds the role: after 5 days the decision climbs to the Assistant Project Director
    assert sara.acting_as("pmo.admin").run_due(after(decision["due"], -0.5))["fired"] == []
    assert sara.acting_as("pmo.admin").run_due(after(decision["due"], 0.1))["fired"] == [iid]
    escalated = task_for(alex, iid, "gate_decision")
    assert escalated["candidates"] == ["Assistant Project Director"]
    assert alex.task(escalated["id"])["data"]["decisionEscalations"] == 1
    complete(alex, iid, "gate_decision", decide("GO"))
    data = assert_completed(sara, iid, "GO")
    assert data["gateDecisions"][0]["chairRole"] == "Assistant Project Director"
    assert_in_order(sara.history(iid), [("timer_fired", "tmr_decision_escalation"),
                                        ("task_cancelled", "gate_decision"), ("task_ready", "gate_decision"),
                                        ("task_completed", "gate_decision")])


def test_only_the_pmo_schedules_a_gate_and_the_request_is_checked(people):
    pete, sara = people(PM), people(SECRETARY)
    with pytest.raises(PermissionDenied, match="Senior Project Manager"):
        pete.start(PROCESS, request())
    with pytest.raises(InvalidInput) as refused:
        sara.start(PROCESS, request(gateId="G9", projectTeam=[], nextGateDate="next year"))
    assert sorted(d.split(":")[0] for d in refused.value.details) == ["gateId", "nextGateDate", "projectTeam"]
    assert sara.instances(process=PROCESS) == []


def test_evidence_is_required_for_a_nonconforming_criterion(people):
    sam = people(SQA)
    iid = start(people)
    complete(people(PM), iid, "gate_package", package())
    bad = audit()
    bad["checklist"][1] = {"criterion": bad["checklist"][1]["criterion"], "result": "NC"}
    with pytest.raises(InvalidInput) as refused:
        sam.complete(task_for(sam, iid, "sqa_audit")["id"], bad)
    assert [d.split(":")[0] for d in refused.value.details] == ["checklist[1].evidence"]
    bad["checklist"][1]["evidence"] = "No review record for WP-3"
    complete(sam, iid, "sqa_audit", bad)


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}


def test_no_loop_runs_through_a_parallel_join():
    """SpiffWorkflow 3.2 fires a parallel join early when a loop brings a token back to it: the join sits in an
    embedded subprocess that starts afresh each round, and no cycle of the process passes through it."""
    root = etree.parse(str(BPMN)).getroot()
    process = root.find("bpmn:process", NS)
    for container in [process, *process.iterfind(".//bpmn:subProcess", NS)]:
        assert gateways_on_loops(*(container.findall(f"bpmn:{kind}", NS)
                                   for kind in ("sequenceFlow", "boundaryEvent", "parallelGateway"))) == []
    joins = [gw.get("id") for gw in root.iterfind(".//bpmn:parallelGateway", NS)]
    assert joins == ["split_assessment", "join_assessment"]
    assert [gw.getparent().get("id") for gw in root.iterfind(".//bpmn:parallelGateway", NS)] == [
        "gate_assessment"] * 2


def test_every_exclusive_gateway_has_a_default_and_the_call_maps_each_nc():
    root = etree.parse(str(BPMN)).getroot()
    flows = {f.get("id"): f for f in root.iterfind(".//bpmn:sequenceFlow", NS)}
    for gw in root.iterfind(".//bpmn:exclusiveGateway", NS):
        outgoing = [flows[o.text] for o in gw.findall("bpmn:outgoing", NS)]
        if len(outgoing) > 1:
            assert gw.get("default") in {f.get("id") for f in outgoing}, gw.get("id")
    call = root.find(".//bpmn:callActivity", NS)
    assert call.get("calledElement") == "corrective_action"
    loop = call.find("bpmn:multiInstanceLoopCharacteristics", NS)
    assert loop.get("isSequential") in (None, "false")
    assert (loop.findtext("bpmn:loopDataInputRef", namespaces=NS), loop.find("bpmn:inputDataItem", NS).get("name"),
            loop.findtext("bpmn:loopDataOutputRef", namespaces=NS),
            loop.find("bpmn:outputDataItem", NS).get("name")) == ("capaFindings", "capaFinding", "capaResults",
                                                                  "capaResult")
    duties = {el.getparent().getparent().getparent().get("id"): el.get("value")
              for el in root.iterfind(".//spiffworkflow:property[@name='sodDifferentFrom']", NS)}
    assert duties == {"sqa_audit": "gate_package", "gate_decision": "gate_package",
                      "qd_countersign": "gate_package", "verify_conditions": "gate_package"}
    lanes = [lane.get("name") for lane in root.iterfind(".//bpmn:lane", NS)]
    assert lanes == ["Senior Project Manager", "Project Manager", "SQA", "Configuration Engineer",
                     "Measurement Analyst", "Project Director", "Quality Director"]


def test_init_deploys_the_gate_and_the_corrective_action(demo_pmo):
    deployed = {p["process_id"]: p for p in demo_pmo.processes()}
    assert {"quality_gate", "corrective_action", "project_initiation"} <= set(deployed)
    assert {"quality_gate.bpmn", "corrective_action.bpmn", "gate_recommendation.dmn", "capa_timing.dmn",
            "forms/gate-decision.schema.json", "forms/capa-closure.schema.json",
            } <= set(deployed["quality_gate"]["files"])
    assert {"corrective_action.bpmn", "capa_timing.dmn"} <= set(deployed["corrective_action"]["files"])
    assert "gate_recommendation.dmn" not in deployed["corrective_action"]["files"]
