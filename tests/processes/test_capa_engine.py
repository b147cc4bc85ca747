"""Scenario tests of the corrective action process (CAPA, ISO 9001 10.2) run by the pmoflow engine, through the
Python API, on a real database.

Every test starts from the bundled demo organisation and process library (the ``demo_pmo`` fixture) and acts as
the demo users who would do each step: an Internal Auditor (ian.auditor) opens the corrective action for a
nonconformity found in Olga's process (olga.owner, Auditee), the Quality Director (quinn.qd) rules on disputes and
countersigns Major findings. Timers are fired with ``run_due(now)``. Each test runs on SQLite and, when
PMOFLOW_TEST_PG_URL is set, on PostgreSQL. The form builders and helpers here are reused by
test_gate_engine.py, whose gates call this process once per nonconformity.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree
from scenario_helpers import after, assert_in_order, inbox, open_tasks

from conftest import People
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PermissionDenied

PROCESS = "corrective_action"
AUDITOR, AUDITEE, QD = "ian.auditor", "olga.owner", "quinn.qd"
BPMN = Path(__file__).resolve().parents[2] / "bpmn" / "corrective_action.bpmn"

# ---------------------------------------------------------------------------------------------------------
# Form data (valid unless a test changes it)
# ---------------------------------------------------------------------------------------------------------


def finding(grade: str = "Minor", fid: str = "NC-7", source: str = "audit", ref: str = "AUD-2027-03") -> dict:
    return {"id": fid, "grade": grade, "clause": "ISO 9001 7.5.3",
            "requirement": "Documented information is controlled",
            "evidence": "Work instruction WI-12 at line 2 is revision B; revision D is approved.",
            "description": "An obsolete work instruction is in use.", "source": source, "sourceRef": ref}


def opening(grade: str = "Minor", auditor: str = AUDITOR, auditee: str = AUDITEE) -> dict:
    return {"capaFinding": finding(grade), "capaAuditor": auditor, "capaAuditee": auditee}


CONTAIN = {"containmentAction": "Withdrew revision B from line 2 and issued revision D",
           "consequencesHandled": "Re-inspected the 40 units built with revision B; none affected",
           "containedOn": "2027-03-10"}
RCA = {"rcaMethod": "5-Why", "similarNCsElsewhere": False,
       "rootCause": "Superseded revisions are not withdrawn: the release procedure has no withdrawal step."}
RCA_HUMAN_ERROR = {"rcaMethod": "5-Why", "rootCause": "Human error by the operator on the late shift.",
                   "similarNCsElsewhere": False}
ACTIONS = [{"desc": "Add a withdrawal step to the release procedure", "owner": AUDITEE, "due": "2027-04-15"},
           {"desc": "Audit every line for superseded documents", "owner": AUDITEE, "due": "2027-04-30"}]
PLAN = {"actions": ACTIONS, "updateRisks": False, "qmsChangeNeeded": False}
PLAN_QMS = {"actions": ACTIONS, "updateRisks": False, "qmsChangeNeeded": True,
            "qmsChangeDescription": "Release procedure QP-04: add the withdrawal step"}
ACCEPT = {"planDecision": "Accept"}
RETURN = {"planDecision": "Return", "planReviewComment": "Say why the error was possible."}
DONE = {"actionResults": [{"action": a["desc"], "evidence": "Record " + str(i), "completedOn": "2027-04-20"}
                          for i, a in enumerate(ACTIONS)]}
VERIFIED = {"implementationVerified": True}
EFFECTIVE = {"effective": True, "recordsSampled": 30, "recurrences": 0, "effectivenessEvidence": "30 stations OK"}
INEFFECTIVE = {"effective": False, "recordsSampled": 30, "recurrences": 2, "effectivenessEvidence": "Line 4: rev C"}
CLOSE = {"closureSummary": "Withdrawal step added; no recurrence.", "auditorSignature": "Ian Internal-Auditor"}
COUNTERSIGN = {"countersignDecision": "Countersign", "qdSignature": "Quinn Quality-Director"}

# ---------------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in scenario_helpers.py; the `people` fixture is in conftest.py)
# ---------------------------------------------------------------------------------------------------------


def task_for(app: Pmoflow, instance_id: int, bpmn_id: str, finding_id: str | None = None) -> dict:
    """The one task `bpmn_id` of the instance in the acting user's inbox (of the corrective action of
    `finding_id`, when an instance runs several). Not the one of scenario_helpers.py: picking by finding, and
    naming the finding when none or several match, are the corrective action's own."""
    found = [t for t in app.tasks() if t["instance_id"] == instance_id and t["bpmn_id"] == bpmn_id]
    if finding_id is not None:
        found = [t for t in found if app.task(t["id"])["data"]["capaFinding"]["id"] == finding_id]
    assert len(found) == 1, f"{app.user} has {inbox(app, instance_id)}, not one {bpmn_id} ({finding_id})"
    return found[0]


def complete(app: Pmoflow, instance_id: int, bpmn_id: str, data: dict, finding_id: str | None = None) -> dict:
    """Complete the task `bpmn_id` of the instance from the acting user's inbox."""
    result = app.complete(task_for(app, instance_id, bpmn_id, finding_id)["id"], data)
    assert result["error"] is None, result["error"]
    return result


def services(history: list[dict], task: str | None = None) -> list[dict]:
    return [e for e in history if e["type"] == "service_called" and task in (None, e["task"])]


def ready_since(app: Pmoflow, instance_id: int, bpmn_id: str) -> str:
    """When the newest open task `bpmn_id` of the instance became ready."""
    return [t for t in app.show(instance_id)["tasks"] if t["bpmn_id"] == bpmn_id and t["state"] == "ready"][-1][
        "created_at"]


def fire_effectiveness_timer(app: Pmoflow, instance_id: int, days: int) -> None:
    """Nothing before `days` after the implementation was verified; the check opens after it."""
    due = app.show(instance_id)["next_due"]
    assert app.acting_as("pmo.admin").run_due(after(due, -1))["fired"] == []
    assert app.acting_as("pmo.admin").run_due(after(due, 1))["fired"] == [instance_id]
    verified = [e for e in app.history(instance_id) if e["type"] == "task_completed"
                and e["task"] == "verify_implementation"][-1]
    assert abs(after(due, 0) - after(verified["at"], days)) < timedelta(minutes=1)


def run_capa(people: People, iid: int, auditor: str = AUDITOR, auditee: str = AUDITEE, grade: str = "Minor",
             finding_id: str | None = None) -> None:
    """From a ready containment to a closed corrective action, first time right."""
    complete(people(auditee), iid, "containment", CONTAIN, finding_id)
    complete(people(auditee), iid, "root_cause", RCA, finding_id)
    complete(people(auditee), iid, "plan_actions", PLAN, finding_id)
    complete(people(auditor), iid, "review_plan", ACCEPT, finding_id)
    complete(people(auditee), iid, "implement_actions", DONE, finding_id)
    complete(people(auditor), iid, "verify_implementation", VERIFIED, finding_id)


def close_capa(people: People, iid: int, auditor: str = AUDITOR, grade: str = "Minor",
               finding_id: str | None = None) -> None:
    """From a ready effectiveness check to the closure (and the countersignature of a Major finding)."""
    complete(people(auditor), iid, "check_effectiveness", EFFECTIVE, finding_id)
    complete(people(auditor), iid, "close_capa", CLOSE, finding_id)
    if grade == "Major":
        complete(people(QD), iid, "countersign_capa", COUNTERSIGN, finding_id)


def start(people: People, data: dict, user: str = AUDITOR) -> int:
    result = people(user).start(PROCESS, data)
    assert (result["status"], result["error"]) == ("running", None)
    return result["instance_id"]


def assert_closed(app: Pmoflow, iid: int, grade: str = "Minor", cycles: int = 1) -> dict:
    shown = app.show(iid)
    assert (shown["status"], shown["error"], shown["next_due"]) == ("completed", None, None)
    result = shown["data"]["capaResult"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", result.pop("closedOn"))
    assert result == {"findingId": "NC-7", "grade": grade, "status": "Closed", "cycles": cycles, "effective": True}
    assert open_tasks(app, iid) == []
    return shown["data"]


# ---------------------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------------------


def test_minor_nonconformity_closed_by_the_auditor(people):
    ian, olga, quinn, sam = people(AUDITOR), people(AUDITEE), people(QD), people("sam.sqa")
    iid = start(people, opening("Minor"))

    # the auditee, and only her, contains it
    containment = task_for(olga, iid, "containment")
    assert (containment["lane"], containment["candidates"], containment["candidate_kind"]) == (
        "Auditee", [AUDITEE], "user")
    assert inbox(ian, iid) == inbox(quinn, iid) == inbox(sam, iid) == []
    data = olga.task(containment["id"])["data"]
    assert data["lane_owners"] == {"Internal Auditor": [AUDITOR], "Auditee": [AUDITEE]}
    assert re.fullmatch(r"CAPA-NC-7-[0-9A-F]{6}", data["capaRecord"]["capaId"])
    assert (data["planDue"], data["implementDue"], data["effectivenessDelay"], data["closer"]) == (
        "P28D", "P90D", "P60D", "Internal Auditor")
    complete(olga, iid, "containment", CONTAIN)
    complete(olga, iid, "root_cause", RCA)

    plan = task_for(olga, iid, "plan_actions")  # due when the plan-due timer (P28D) fires
    assert abs(after(plan["created_at"], 28) - after(plan["due"], 0)) < timedelta(minutes=1)
    complete(olga, iid, "plan_actions", PLAN)
    review = task_for(ian, iid, "review_plan")
    assert (review["lane"], review["candidates"]) == ("Internal Auditor", [AUDITOR])
    assert ian.task(review["id"])["data"]["rootCauseWarnings"] == []
    complete(ian, iid, "review_plan", ACCEPT)

    implement = task_for(olga, iid, "implement_actions")  # due at the reminder, 3 days before P90D
    assert abs(after(implement["created_at"], 87) - after(implement["due"], 0)) < timedelta(minutes=1)
    complete(olga, iid, "implement_actions", DONE)
    assert ian.task(task_for(ian, iid, "verify_implementation")["id"])["data"]["implementationGaps"] == []
    complete(ian, iid, "verify_implementation", VERIFIED)

    # the effectiveness period: the instance waits, nobody has a task
    shown = ian.show(iid)
    assert shown["status"] == "waiting" and open_tasks(ian, iid) == []
    fire_effectiveness_timer(ian, iid, 60)
    assert inbox(ian, iid) == ["check_effectiveness"] and inbox(olga, iid) == []
    close_capa(people, iid)

    data = assert_closed(ian, iid)
    assert data["planReviews"] == [{"cycle": 1, "round": 1, "by": "auditor", "decision": "Accept", "comment": ""}]
    assert not [e for e in ian.history(iid) if e["type"] == "message_sent"]  # no QMS change: no proposal
    assert inbox(quinn, iid) == []  # a Minor finding needs no countersignature

    history = ian.history(iid)
    found = assert_in_order(history, [
        ("instance_started", None), ("service_called", "open_capa"), ("decision", "decide_timing"),
        ("task_completed", "containment"), ("task_completed", "root_cause"), ("task_completed", "plan_actions"),
        ("task_completed", "review_plan"), ("task_completed", "implement_actions"),
        ("task_completed", "verify_implementation"), ("timer_fired", "wait_effectiveness"),
        ("task_completed", "check_effectiveness"), ("task_completed", "close_capa"), ("instance_completed", None),
    ])
    decision = found[2]["payload"]
    assert "CAPATiming" in decision["decision"] and decision["hit_policy"] == "UNIQUE"
    assert decision["inputs"] == {"Grade": "Minor"}
    assert [r["id"] for r in decision["matched_rules"]] == ["Rule_minor"]
    closed = {e["task"]: e for e in history if e["type"] == "task_completed"}
    assert {t: e["actor"] for t, e in closed.items()} == {
        "containment": AUDITEE, "root_cause": AUDITEE, "plan_actions": AUDITEE, "implement_actions": AUDITEE,
        "review_plan": AUDITOR, "verify_implementation": AUDITOR, "check_effectiveness": AUDITOR,
        "close_capa": AUDITOR}
    assert closed["close_capa"]["payload"]["duty_checks"] == [
        {"rule": "performer differs from implement_actions", "result": "passed"}]
    assert closed["review_plan"]["payload"]["duty_checks"] == [
        {"rule": "performer differs from plan_actions", "result": "passed"}]


def test_major_nonconformity_needs_the_qd_countersignature(people):
    ian, olga, quinn = people(AUDITOR), people(AUDITEE), people(QD)
    iid = start(people, opening("Major"))
    complete(olga, iid, "containment", CONTAIN)
    complete(olga, iid, "root_cause", RCA)
    complete(olga, iid, "plan_actions", PLAN_QMS)
    complete(ian, iid, "review_plan", ACCEPT)
    implement = task_for(olga, iid, "implement_actions")  # Major: P60D, the reminder 3 days before
    assert abs(after(implement["created_at"], 57) - after(implement["due"], 0)) < timedelta(minutes=1)
    complete(olga, iid, "implement_actions", DONE)
    complete(ian, iid, "verify_implementation", VERIFIED)
    fire_effectiveness_timer(ian, iid, 90)
    complete(ian, iid, "check_effectiveness", EFFECTIVE)
    complete(ian, iid, "close_capa", CLOSE)

    # not closed until the Quality Director countersigns; a refusal sends it back to the effectiveness check
    assert ian.show(iid)["status"] == "running"
    sign = task_for(quinn, iid, "countersign_capa")
    assert (sign["lane"], sign["candidates"]) == ("Quality Director", ["Quality Director"])
    complete(quinn, iid, "countersign_capa", {"countersignDecision": "Refuse", "countersignComment": "Sample line 4.",
                                              "qdSignature": "Quinn Quality-Director"})
    assert inbox(ian, iid) == ["check_effectiveness"] and inbox(quinn, iid) == []
    close_capa(people, iid, grade="Major")

    data = assert_closed(ian, iid, "Major")
    assert data["closer"] == "Quality Director"
    history = ian.history(iid)
    # the QMS change went to process improvement (#9) as a proposal, the auditee who owns the plan submitting it
    [sent] = [e for e in history if e["type"] == "message_sent"]
    assert (sent["task"], sent["payload"]["message"]) == ("request_qms_change", "improvement_proposed")
    proposal = ian.show(sent["payload"]["to_instance"])
    assert (proposal["process_id"], proposal["data"]["proposalIn"]["source"]) == ("process_improvement", "CAPA")
    assert proposal["data"]["proposalIn"]["reference"] == data["capaRecord"]["capaId"]
    assert proposal["data"]["proposalIn"]["submitter"] == data["capaAuditee"]
    decision = [e for e in history if e["type"] == "decision"][0]["payload"]
    assert [r["id"] for r in decision["matched_rules"]] == ["Rule_major"]
    assert [e["task"] for e in services(history)] == ["open_capa"]
    signed = [e for e in history if e["type"] == "task_completed" and e["task"] == "countersign_capa"]
    assert [(e["actor"], e["payload"]["data"]["countersignDecision"]) for e in signed] == [
        (QD, "Refuse"), (QD, "Countersign")]


# ---------------------------------------------------------------------------------------------------------
# Loops
# ---------------------------------------------------------------------------------------------------------


def test_the_third_plan_return_goes_to_the_quality_director(people):
    """Rework loop: the auditor may return the plan twice; the third return goes to the Quality Director, and so
    does every later one in the same cycle."""
    ian, olga, quinn = people(AUDITOR), people(AUDITEE), people(QD)
    iid = start(people, opening("Minor"))
    complete(olga, iid, "containment", CONTAIN)
    complete(olga, iid, "root_cause", RCA_HUMAN_ERROR)
    complete(olga, iid, "plan_actions", PLAN)
    review = ian.task(task_for(ian, iid, "review_plan")["id"])["data"]
    assert review["rootCauseWarnings"] and "human error" in review["rootCauseWarnings"][0]

    for round_ in (1, 2):
        complete(ian, iid, "review_plan", RETURN)
        assert inbox(olga, iid) == ["root_cause"] and inbox(quinn, iid) == []
        rework = olga.task(task_for(olga, iid, "root_cause")["id"])["data"]
        assert (rework["planRound"], rework["planReviews"][-1]["comment"]) == (round_, RETURN["planReviewComment"])
        complete(olga, iid, "root_cause", RCA)
        complete(olga, iid, "plan_actions", PLAN)
    complete(ian, iid, "review_plan", RETURN)  # the third return
    assert inbox(olga, iid) == [] and inbox(ian, iid) == []
    dispute = task_for(quinn, iid, "resolve_plan_dispute")
    assert dispute["candidates"] == ["Quality Director"]

    # the Quality Director returns it with a direction; the auditor's next return comes straight back
    complete(quinn, iid, "resolve_plan_dispute", {"qdPlanDecision": "Return", "qdDirection": "Add line 4."})
    complete(olga, iid, "root_cause", RCA)
    complete(olga, iid, "plan_actions", PLAN)
    complete(ian, iid, "review_plan", RETURN)
    complete(quinn, iid, "resolve_plan_dispute", {"qdPlanDecision": "Accept", "qdDirection": "Adequate now."})
    assert inbox(olga, iid) == ["implement_actions"]

    data = olga.task(task_for(olga, iid, "implement_actions")["id"])["data"]
    assert [(r["round"], r["by"], r["decision"]) for r in data["planReviews"]] == [
        (1, "auditor", "Return"), (2, "auditor", "Return"), (3, "auditor", "Return"),
        (3, "Quality Director", "Return"), (4, "auditor", "Return"), (4, "Quality Director", "Accept")]
    gateways = [e["payload"]["taken"] for e in ian.history(iid) if e["task"] == "gw_plan_decision"]
    assert gateways == [["gw_rca_merge"]] * 2 + [["Rule on the plan dispute"]] * 2


def test_ineffective_actions_start_a_new_cycle_from_the_root_cause(people):
    ian, olga = people(AUDITOR), people(AUDITEE)
    iid = start(people, opening("Minor"))
    run_capa(people, iid)
    fire_effectiveness_timer(ian, iid, 60)
    complete(ian, iid, "check_effectiveness", INEFFECTIVE)

    # cycle 2 starts at the root cause (containment is not repeated), with fresh plan rounds
    assert inbox(olga, iid) == ["root_cause"] and inbox(ian, iid) == []
    data = olga.task(task_for(olga, iid, "root_cause")["id"])["data"]
    assert (data["capaCycle"], data["planRound"]) == (2, 0)
    assert data["effectivenessChecks"] == [{"cycle": 1, "effective": False, "recordsSampled": 30, "recurrences": 2,
                                            "evidence": "Line 4: rev C"}]
    complete(olga, iid, "root_cause", RCA)
    complete(olga, iid, "plan_actions", PLAN)
    complete(ian, iid, "review_plan", ACCEPT)
    complete(olga, iid, "implement_actions", DONE)
    complete(ian, iid, "verify_implementation", VERIFIED)
    fire_effectiveness_timer(ian, iid, 60)  # a new effectiveness period
    close_capa(people, iid)

    data = assert_closed(ian, iid, cycles=2)
    assert [c["effective"] for c in data["effectivenessChecks"]] == [False, True]
    history = ian.history(iid)
    assert [e["task"] for e in history if e["type"] == "timer_fired"] == ["wait_effectiveness"] * 2
    assert [e["task"] for e in history if e["type"] == "task_ready"].count("containment") == 1
    assert [e["payload"]["taken"] for e in history if e["task"] == "gw_effective"] == [
        ["gw_cycle_merge"], ["Close and sign"]]


def test_implementation_not_verified_goes_back_to_the_auditee(people):
    ian, olga = people(AUDITOR), people(AUDITEE)
    iid = start(people, opening("Minor"))
    complete(olga, iid, "containment", CONTAIN)
    complete(olga, iid, "root_cause", RCA)
    complete(olga, iid, "plan_actions", PLAN)
    complete(ian, iid, "review_plan", ACCEPT)
    complete(olga, iid, "implement_actions", {"actionResults": DONE["actionResults"][:1]})
    verify = ian.task(task_for(ian, iid, "verify_implementation")["id"])["data"]
    assert verify["implementationGaps"] == [ACTIONS[1]["desc"]]
    with pytest.raises(InvalidInput) as refused:  # a refusal must say what is missing
        ian.complete(task_for(ian, iid, "verify_implementation")["id"], {"implementationVerified": False})
    assert [d.split(":")[0] for d in refused.value.details] == ["verificationComment"]
    complete(ian, iid, "verify_implementation", {"implementationVerified": False,
                                                 "verificationComment": "The line audit is missing."})
    assert inbox(olga, iid) == ["implement_actions"]
    complete(olga, iid, "implement_actions", DONE)
    complete(ian, iid, "verify_implementation", VERIFIED)
    fire_effectiveness_timer(ian, iid, 60)
    close_capa(people, iid)
    assert assert_closed(ian, iid)["implementationGaps"] == []


# ---------------------------------------------------------------------------------------------------------
# Timers: the plan due date and the implementation ladder
# ---------------------------------------------------------------------------------------------------------


def test_late_plan_and_implementation_climb_the_escalation_ladder(people):
    """Major: the plan is due 14 days after its task opens (the Quality Director is told); the implementation
    gets a reminder at day 57, the Quality Director at day 60, the Project Director and management review at
    day 88. Each is non-interrupting: the auditee's task stays open."""
    ian, olga = people(AUDITOR), people(AUDITEE)
    iid = start(people, opening("Major"))
    complete(olga, iid, "containment", CONTAIN)
    complete(olga, iid, "root_cause", RCA)
    opened = ready_since(ian, iid, "plan_actions")
    assert ian.acting_as("pmo.admin").run_due(after(opened, 13))["fired"] == []
    assert ian.acting_as("pmo.admin").run_due(after(opened, 15))["fired"] == [iid]
    assert inbox(olga, iid) == ["plan_actions"]  # still hers
    [notice] = services(ian.history(iid), "notify_plan_overdue")
    assert notice["actor"] == "worker"
    assert (notice["payload"]["result"]["level"], notice["payload"]["result"]["recipientsRole"],
            notice["payload"]["result"]["recipientsUsers"]) == ("plan-overdue", ["Quality Director"], [AUDITEE])
    complete(olga, iid, "plan_actions", PLAN)
    complete(ian, iid, "review_plan", ACCEPT)

    started = ready_since(ian, iid, "implement_actions")
    ladder = [(56, []), (58, ["reminder"]), (61, ["reminder", "overdue"]), (87, ["reminder", "overdue"]),
              (89, ["reminder", "overdue", "management-review"])]
    for day, levels in ladder:
        ian.acting_as("pmo.admin").run_due(after(started, day))
        history = ian.history(iid)
        sent = [e["payload"]["result"] for e in history if e["type"] == "service_called"
                and e["task"] in ("remind_auditee", "escalate_to_qd", "escalate_to_pd")]
        assert [s["level"] for s in sent] == levels, day
        assert inbox(olga, iid) == ["implement_actions"]
    reminder, overdue, management = sent
    assert (reminder["recipientsUsers"], reminder["recipientsRole"]) == ([AUDITEE], [])
    assert overdue["recipientsRole"] == ["Quality Director"] and not overdue["flaggedForManagementReview"]
    assert management["recipientsRole"] == ["Project Director", "Quality Director"]
    assert management["flaggedForManagementReview"] is True
    assert [e["task"] for e in history if e["type"] == "timer_fired"] == [
        "tmr_plan_due", "tmr_implement_reminder", "tmr_implement_overdue", "tmr_implement_management"]
    assert not [e for e in history if e["type"] == "task_cancelled"]

    complete(olga, iid, "implement_actions", DONE)
    complete(ian, iid, "verify_implementation", VERIFIED)
    fire_effectiveness_timer(ian, iid, 90)
    close_capa(people, iid, grade="Major")
    data = assert_closed(ian, iid, "Major")
    assert data["managementReviewNotice"]["flaggedForManagementReview"] is True


# ---------------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------------


def test_the_auditor_may_not_review_their_own_plan(people):
    """Segregation of duties: an auditor named as the auditee too does the auditee's steps, but the engine refuses
    them the review of the plan they made. (The review stays in their inbox: they are the one person named.)"""
    ian = people(AUDITOR)
    iid = start(people, opening("Minor", auditor=AUDITOR, auditee=AUDITOR))
    complete(ian, iid, "containment", CONTAIN)
    complete(ian, iid, "root_cause", RCA)
    complete(ian, iid, "plan_actions", PLAN)
    review = [t for t in ian.show(iid)["tasks"] if t["state"] == "ready"][0]
    assert (review["bpmn_id"], review["candidates"]) == ("review_plan", [AUDITOR])
    before = ian.show(iid), ian.history(iid)
    with pytest.raises(PermissionDenied, match="segregation of duties") as refused:
        ian.complete(review["id"], ACCEPT)
    assert "performed task plan_actions" in refused.value.message
    shown, history = ian.show(iid), ian.history(iid)
    assert history[:-1] == before[1] and shown["tasks"] == before[0]["tasks"]
    assert (history[-1]["type"], history[-1]["actor"], history[-1]["payload"]["rule"]) == (
        "duty_refused", AUDITOR, "performer differs from plan_actions")


def test_only_the_named_people_act(people):
    olga, pete, quinn = people(AUDITEE), people("pete.pm"), people(QD)
    iid = start(people, opening("Minor"))
    containment = task_for(olga, iid, "containment")
    for user in (pete, quinn, people(AUDITOR)):
        with pytest.raises(PermissionDenied, match="olga.owner"):
            user.complete(containment["id"], CONTAIN)
    complete(olga, iid, "containment", CONTAIN)


def test_only_an_internal_auditor_opens_a_corrective_action_and_the_finding_is_checked(people):
    sam, ian = people("sam.sqa"), people(AUDITOR)
    with pytest.raises(PermissionDenied, match="Internal Auditor"):
        sam.start(PROCESS, opening())
    bad = opening()
    bad["capaFinding"] = {**finding("Observation"), "evidence": ""}
    with pytest.raises(InvalidInput) as refused:
        ian.start(PROCESS, bad)
    assert sorted({d.split(":")[0] for d in refused.value.details}) == ["capaFinding.evidence", "capaFinding.grade"]
    with pytest.raises(InvalidInput, match="does not ask for: lane_owners"):
        ian.start(PROCESS, {**opening(), "lane_owners": {"Auditee": [AUDITOR]}})
    assert ian.instances(process=PROCESS) == []

    olga = people(AUDITEE)
    iid = start(people, opening())
    complete(olga, iid, "containment", CONTAIN)
    root_cause = task_for(olga, iid, "root_cause")
    for bad, field in (({**RCA, "rootCause": "Operator error."}, "rootCause"),  # at least 30 characters
                       ({**RCA, "similarNCsElsewhere": True}, "similarNCs")):  # where, when there are similar ones
        with pytest.raises(InvalidInput) as refused:
            olga.complete(root_cause["id"], bad)
        assert [d.split(":")[0] for d in refused.value.details] == [field]


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


def test_the_call_contract_and_the_duties_are_in_the_model():
    root = etree.parse(str(BPMN)).getroot()
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
          "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core"}
    process = root.find("bpmn:process", ns)
    assert process.get("id") == PROCESS
    io = process.find("bpmn:ioSpecification", ns)
    assert [d.get("name") for d in io.findall("bpmn:dataInput", ns)] == ["capaFinding", "capaAuditor", "capaAuditee"]
    assert [d.get("name") for d in io.findall("bpmn:dataOutput", ns)] == ["capaResult"]
    duties = {el.getparent().getparent().getparent().get("id"): el.get("value")
              for el in root.iterfind(".//spiffworkflow:property[@name='sodDifferentFrom']", ns)}
    assert duties == {"review_plan": "plan_actions", "resolve_plan_dispute": "plan_actions",
                      "verify_implementation": "implement_actions", "check_effectiveness": "implement_actions",
                      "close_capa": "implement_actions", "countersign_capa": "implement_actions"}
    timers = {el.getparent().getparent().get("id"): el.text
              for el in root.iterfind(".//bpmn:timeDuration", ns)}
    assert timers == {"tmr_plan_due": "planDue", "tmr_implement_reminder": "implementReminderDelay",
                      "tmr_implement_overdue": "implementDue", "tmr_implement_management": "managementReviewDelay",
                      "wait_effectiveness": "effectivenessDelay"}
    lanes = {lane.get("name") for lane in root.iterfind(".//bpmn:lane", ns)}
    assert lanes == {"Internal Auditor", "Auditee", "Quality Director"}
