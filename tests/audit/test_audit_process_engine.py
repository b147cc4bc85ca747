"""Scenario tests of the ISO 9001 internal audit processes run by the pmoflow engine, through the Python API.

Two definitions: the annual programme (audit_programme: coverage check, AuditFrequency per audit, Quality
Director approval with reminder and escalation, then one internal audit per planned audit, each started by a
timer 30 days before its planned date) and the single audit (internal_audit: independent team, plan, auditee
confirmation with escalation, evidence and graded findings, closing meeting and dispute, report, one corrective
action per Major or Minor finding, closure). Every test starts from the bundled demo organisation and process
library (the ``demo_pmo`` fixture) and acts as the demo users; timers are fired with ``run_due(now)``. Each test
runs on SQLite and, when PMOFLOW_TEST_PG_URL is set, on PostgreSQL.

The demo organisation has one Internal Auditor (ian.auditor, "ISO audit group") and one Auditee (olga.owner,
"Operations"); the second auditor of a team is sam.sqa ("Quality"), and sue.sponsor ("Operations") stands for
an auditor from the audited department. Departments are given in the appointment form as the organisation file
has them (the engine gives scripts and handlers no organisation lookup); the tests check they match.

The corrective actions are the real corrective_action process (bpmn/corrective_action.bpmn); ``close_capa``
drives one of them to closure.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scenario_helpers import assert_in_order, complete, inbox, open_tasks, task_data, task_for

from conftest import People
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import PermissionDenied
from pmoflow.workflows import audit as handlers

HERE = Path(__file__).parents[1]
AUDIT_FIXTURES = HERE / "fixtures" / "audit"

IAN, OLGA, SUE, SAM, QUINN, PAT = "ian.auditor", "olga.owner", "sue.sponsor", "sam.sqa", "quinn.qd", "pat.director"

# ---------------------------------------------------------------------------------------------------------
# Form data (valid unless a test changes it)
# ---------------------------------------------------------------------------------------------------------

REQUEST = {
    "auditedProcess": "Purchasing", "auditedDepartment": "Operations", "auditee": OLGA, "auditeeManager": SUE,
    "clauses": ["7.5", "8.4", "9.1"],
    "criteria": "ISO 9001:2015 clauses 7.5, 8.4 and 9.1; purchasing procedure PRC-04",
    "method": "On-site", "plannedDate": "2027-03-01",
    "objective": "Determine whether purchasing conforms to ISO 9001 and PRC-04 and is effective.",
    "scope": "Purchasing at head office, orders placed from 2026-03 to 2027-02",
}
LEAD = {"user": IAN, "department": "ISO audit group", "role": "Lead auditor"}
TEAM = {"team": [LEAD, {"user": SAM, "department": "Quality", "role": "Auditor"}],
        "objective": REQUEST["objective"], "scope": REQUEST["scope"], "criteria": REQUEST["criteria"],
        "feasible": True}
#: sue.sponsor works in Operations, the audited department.
NOT_INDEPENDENT = {**TEAM, "team": [LEAD, {"user": SUE, "department": "Operations", "role": "Auditor"}]}
PLAN = {"auditDate": "2027-03-08", "openingMeeting": "2027-03-08 09:00, room 2.14",
        "plan": [{"slot": "09:30-11:00", "process": "Supplier evaluation", "auditor": IAN, "auditee": OLGA},
                 {"slot": "11:00-12:30", "process": "Purchase orders", "auditor": SAM, "auditee": "Buyer"}],
        "checklist": [{"clause": "8.4.1", "question": "Are external providers evaluated and re-evaluated?"},
                      {"clause": "7.5.3", "question": "Are purchase records controlled?"}]}
MAJOR = {"clause": "8.4.1", "requirement": "8.4.1: evaluate and re-evaluate external providers",
         "evidence": "12 of 20 suppliers sampled had no evaluation on file", "grade": "Major",
         "description": "External providers are not evaluated."}
MINOR = {"clause": "7.5.3", "requirement": "7.5.3.1: documented information available and protected",
         "evidence": "Two purchase orders without approval signature (PO-1187, PO-1203)", "grade": "Minor",
         "description": "Purchase order approvals are not always recorded."}
OFI = {"clause": "9.1", "requirement": "9.1.3: analyse and evaluate data",
       "evidence": "Supplier delivery data is collected but not trended", "grade": "OFI",
       "description": "Trend supplier on-time delivery."}
EVIDENCE = [
    {"clause": "8.4.1", "evidence": "Supplier list and evaluation files", "sampledRecords": "20 suppliers",
     "result": "NC"},
    {"clause": "7.5.3", "evidence": "Purchase orders", "sampledRecords": "PO-1150..PO-1210", "result": "NC"},
    {"clause": "9.1", "evidence": "Delivery data", "sampledRecords": "2026 deliveries", "result": "OFI"},
]
FINDINGS = {"openingMeetingHeld": True, "attendees": [OLGA, IAN, SAM], "evidence": EVIDENCE,
            "findings": [MAJOR, MINOR, OFI]}
CLEAN = {"openingMeetingHeld": True, "attendees": [OLGA, IAN],
         "evidence": [{"clause": "8.4.1", "evidence": "Supplier evaluations", "sampledRecords": "10 suppliers",
                       "result": "C"}],
         "findings": []}
REPORT = {"reportSummary": "Purchasing audited on 2027-03-08: one major and one minor nonconformity, one OFI.",
          "reportConclusion": "Conforming with findings", "distribution": ["Quality Director", OLGA, SUE]}
APPROVE_REPORT = {"reportDecision": "Approve", "reportSignature": "Quinn Quality-Director"}


def programme_entry(month: str, clauses: list[str], **extra) -> dict:
    entry = {"process": "Purchasing", "department": "Operations", "auditee": OLGA, "auditeeManager": SUE,
             "clauses": clauses, "criteria": "ISO 9001:2015 and procedure PRC-04", "method": "On-site",
             "plannedMonth": month, "importance": "M", "lastResult": "Clean", "recentChange": False}
    entry.update(extra)
    return entry


def next_months(count: int) -> str:
    """YYYY-MM `count` months after this one (a planned month whose start timer is still ahead)."""
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 + count
    return f"{index // 12}-{index % 12 + 1:02d}"


# ---------------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in scenario_helpers.py; the `people` fixture is in conftest.py)
# ---------------------------------------------------------------------------------------------------------


def events(history: list[dict], kind: str, task: str | None = None) -> list[dict]:
    return [e for e in history if e["type"] == kind and (task is None or e["task"] == task)]


def after(moment: str | datetime, days: float) -> datetime:
    """As scenario_helpers.after, but a timestamp without a zone counts as UTC (not as local time)."""
    base = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    base = base if base.tzinfo else base.replace(tzinfo=UTC)
    return base.astimezone(UTC) + timedelta(days=days)


def start_audit(people: People, request: dict | None = None, user: str = IAN) -> int:
    result = people(user).start("internal_audit", request or REQUEST)
    assert (result["status"], result["error"]) == ("running", None)
    return result["instance_id"]


def to_findings(people: People, iid: int) -> None:
    """From a ready appointment to a ready evidence-and-findings task: team, plan, confirmation."""
    complete(people(IAN), iid, "appoint_team", TEAM)
    complete(people(IAN), iid, "prepare_plan", PLAN)
    complete(people(OLGA), iid, "confirm_audit", {"confirmation": "Confirm"})


def to_report_approval(people: People, iid: int, findings: dict) -> None:
    complete(people(IAN), iid, "conduct_audit", findings)
    complete(people(OLGA), iid, "closing_meeting", {"closingResponse": "Accept"})
    complete(people(IAN), iid, "draft_report", REPORT)


# -- the corrective actions ------------------------------------------------------------------------------

#: The human tasks of corrective_action, who does each (the auditee acts, the auditor verifies, the Quality
#: Director countersigns a Major finding) and with what.
CAPA_STEPS = {
    "containment": (OLGA, {"containmentAction": "Orders to unevaluated suppliers put on hold",
                           "consequencesHandled": "Open orders reviewed", "containedOn": "2027-03-10"}),
    "root_cause": (OLGA, {"rcaMethod": "5-Why", "similarNCsElsewhere": False,
                          "rootCause": "The supplier evaluation procedure has no owner and no annual trigger."}),
    "plan_actions": (OLGA, {"actions": [{"desc": "Name an owner and add an ERP trigger", "owner": OLGA,
                                         "due": "2027-04-30"}], "updateRisks": False, "qmsChangeNeeded": False}),
    "review_plan": (IAN, {"planDecision": "Accept"}),
    "implement_actions": (OLGA, {"actionResults": [{"action": "Name an owner and add an ERP trigger",
                                                    "evidence": "PRC-04 rev 5; ERP job 118",
                                                    "completedOn": "2027-04-20"}]}),
    "verify_implementation": (IAN, {"implementationVerified": True}),
    "check_effectiveness": (IAN, {"effective": True, "recordsSampled": 20, "recurrences": 0,
                                  "effectivenessEvidence": "20 suppliers evaluated on time"}),
    "close_capa": (IAN, {"closureSummary": "Actions implemented and effective.",
                         "auditorSignature": "Ian Internal-Auditor"}),
    "countersign_capa": (QUINN, {"countersignDecision": "Countersign", "qdSignature": "Quinn Quality-Director"}),
}
CAPA_TASKS = tuple(CAPA_STEPS)


def capa_tasks(app: Pmoflow, iid: int) -> list[dict]:
    """Open tasks of the corrective actions called by the instance, each with its finding."""
    found = []
    for row in app.show(iid)["tasks"]:
        if row["state"] == "ready" and row["bpmn_id"] in CAPA_TASKS:
            found.append({**row, "finding": app.task(row["id"])["data"]["capaFinding"]})
    return found


def close_capa(people: People, iid: int, finding_id: str) -> list[str]:
    """Drive the corrective action of one finding to closure, as its auditee, auditor and the Quality Director
    would; the effectiveness period passes with `run_due`. Returns the tasks done, in order."""
    done = []
    for _ in range(30):
        mine = [t for t in capa_tasks(people(IAN), iid) if t["finding"]["id"] == finding_id]
        if not mine:
            if done and done[-1] == "verify_implementation":  # waiting for the effectiveness period
                fired = people(IAN).acting_as("pmo.admin").run_due(datetime.now(UTC) + timedelta(days=100))
                assert fired["errors"] == [], fired
                continue
            return done
        [task] = mine
        user, data = CAPA_STEPS[task["bpmn_id"]]
        assert task["candidates"] in ([user], ["Quality Director"]), task  # the named person, or the QD role
        result = people(user).complete(task["id"], data)
        assert result["error"] is None, result["error"]
        done.append(task["bpmn_id"])
    raise AssertionError(f"the corrective action of {finding_id} does not close: {done}")


# ---------------------------------------------------------------------------------------------------------
# The single audit
# ---------------------------------------------------------------------------------------------------------


def test_findings_open_one_capa_per_major_and_minor_and_the_audit_closes_after_all(people):
    ian, olga, quinn = people(IAN), people(OLGA), people(QUINN)
    iid = start_audit(people)
    assert open_tasks(ian, iid) == [("appoint_team", [IAN])]  # the programme manager: who started it
    to_findings(people, iid)
    to_report_approval(people, iid, FINDINGS)

    approve = task_for(quinn, iid, "approve_report")
    assert (approve["lane"], approve["candidates"]) == ("Quality Director", ["Quality Director"])
    complete(quinn, iid, "approve_report", APPROVE_REPORT)

    shown = ian.show(iid)
    assert shown["status"] == "running"
    data = shown["data"]
    audit_id = data["auditId"]
    assert [f["id"] for f in data["findings"]] == [f"{audit_id}-F01", f"{audit_id}-F02", f"{audit_id}-F03"]
    assert [(f["id"], f["grade"], f["source"], f["sourceRef"]) for f in data["findingsToCorrect"]] == [
        (f"{audit_id}-F01", "Major", "audit", audit_id), (f"{audit_id}-F02", "Minor", "audit", audit_id)]
    assert data["improvementSuggestions"] == [{"id": f"{audit_id}-F03", "clause": "9.1",
                                               "description": OFI["description"], "sourceRef": audit_id}]
    # the OFI becomes a process improvement proposal (#9) by message, with the lead auditor as its submitter
    [pip] = ian.instances(process="process_improvement")
    pip_shown = ian.show(pip["instance_id"])
    assert pip["started_by"] == QUINN  # whose action (approving the report) sent it
    assert pip_shown["data"]["proposalIn"] | {"title": None, "proposal": None} == {
        "source": "OFI", "reference": f"{audit_id}-F03", "problem": OFI["description"], "title": None,
        "proposal": None, "processArea": data["auditedProcess"], "submitter": data["leadAuditor"]}
    [sent] = events(ian.history(iid), "message_sent")
    assert (sent["task"], sent["payload"]["to_instance"]) == ("propose_improvements", pip["instance_id"])
    # one corrective action per Major or Minor finding, none for the OFI, all open at once
    calls = shown["calls"]
    assert sorted((c["called_at"], c["process"], c["item"]["id"], c["state"], tuple(c["at"])) for c in calls) == [
        ("run_capas", "corrective_action", f"{audit_id}-F01", "running", ("Contain the nonconformity",)),
        ("run_capas", "corrective_action", f"{audit_id}-F02", "running", ("Contain the nonconformity",))]
    opened = capa_tasks(ian, iid)
    assert sorted(t["finding"]["id"] for t in opened) == [f"{audit_id}-F01", f"{audit_id}-F02"]
    assert {t["finding"]["grade"] for t in opened} == {"Major", "Minor"}
    history = ian.history(iid)
    sent = events(history, "service_called", "send_report")[0]["payload"]["result"]
    assert sent["findingCounts"] == {"Major": 1, "Minor": 1, "OFI": 1} and sent["sentTo"] == REPORT["distribution"]
    ready_capa = [e for e in events(history, "task_ready") if e["task"] in CAPA_TASKS]
    assert [e["task"] for e in ready_capa] == ["containment", "containment"]  # one per corrective action
    assert sorted(e["payload"]["within"][0]["item"] for e in ready_capa) == [f"{audit_id}-F01", f"{audit_id}-F02"]
    assert {e["payload"]["within"][0]["process"] for e in ready_capa} == {"corrective_action"}
    assert sorted(t["candidates"][0] for t in opened) == [OLGA, OLGA]

    assert close_capa(people, iid, f"{audit_id}-F02") == [  # the Minor one: no countersignature
        "containment", "root_cause", "plan_actions", "review_plan", "implement_actions", "verify_implementation",
        "check_effectiveness", "close_capa"]
    shown = ian.show(iid)
    assert shown["status"] == "running"  # the Major one is still open: the audit is not closed
    assert "close_audit" not in [e["task"] for e in events(ian.history(iid), "service_called")]
    assert "auditOutcome" not in shown["data"]

    assert close_capa(people, iid, f"{audit_id}-F01")[-2:] == ["close_capa", "countersign_capa"]
    shown = ian.show(iid)
    assert (shown["status"], shown["error"]) == ("completed", None)
    data = shown["data"]
    assert data["auditOutcome"] == "Closed"
    assert sorted((r["findingId"], r["status"]) for r in data["capaResults"]) == [
        (f"{audit_id}-F01", "Closed"), (f"{audit_id}-F02", "Closed")]
    assert data["closure"]["recordsLocked"] is True and data["closure"]["capaClosed"] == 2
    history = ian.history(iid)
    assert_in_order(history, [("service_called", "send_report"), ("service_called", "close_audit"),
                              ("instance_completed", None)], gapless=False)
    assert inbox(olga, iid) == [] and inbox(people(QUINN), iid) == []


def test_a_clean_audit_closes_without_corrective_action(people):
    ian, quinn = people(IAN), people(QUINN)
    iid = start_audit(people)
    to_findings(people, iid)
    to_report_approval(people, iid, CLEAN)
    complete(quinn, iid, "approve_report", APPROVE_REPORT)
    shown = ian.show(iid)
    assert (shown["status"], shown["data"]["auditOutcome"]) == ("completed", "Closed")
    assert shown["data"]["findingsToCorrect"] == [] and shown["data"]["capaResults"] == []
    assert not [t for t in shown["tasks"] if t["bpmn_id"] in CAPA_TASKS]
    gateway = events(ian.history(iid), "gateway", "gw_capas_needed")[0]
    assert gateway["payload"]["taken"] != ["Corrective action per finding"]


def test_independence_check_refuses_an_auditor_from_the_audited_department_then_accepts(people):
    ian = people(IAN)
    departments = {u["name"]: u["department"] for u in ian.users()}
    # the appointment form carries the departments as the organisation file has them
    for member in NOT_INDEPENDENT["team"] + TEAM["team"]:
        assert departments[member["user"]] == member["department"]
    assert departments[OLGA] == REQUEST["auditedDepartment"] == departments[SUE]

    iid = start_audit(people)
    first = task_for(ian, iid, "appoint_team")
    complete(ian, iid, "appoint_team", NOT_INDEPENDENT)
    again = task_for(ian, iid, "appoint_team")  # back to the appointment, a new task
    assert again["id"] != first["id"]
    data = ian.task(again["id"])["data"]
    assert data["teamError"].startswith("The audit team is not independent")
    assert "sue.sponsor belongs to the audited department (Operations)" in data["teamError"]
    assert data["independence"]["conflicts"] == [  # she is also the auditee's manager
        {"user": SUE, "reason": "belongs to the audited department (Operations)"},
        {"user": SUE, "reason": "is the auditee's manager"}]
    assert inbox(people(OLGA), iid) == [] and inbox(ian, iid) == ["appoint_team"]

    # the auditee herself on the team is refused too
    complete(ian, iid, "appoint_team", {**TEAM, "team": [LEAD, {"user": OLGA, "department": "Operations",
                                                                 "role": "Auditor"}]})
    error = task_data(ian, iid, "appoint_team")["teamError"]
    assert "olga.owner is the auditee" in error and "olga.owner belongs to the audited department" in error

    complete(ian, iid, "appoint_team", TEAM)
    plan = task_for(ian, iid, "prepare_plan")  # the lead auditor now
    assert (plan["lane"], plan["candidates"], plan["candidate_kind"]) == ("Internal Auditor", [IAN], "user")
    data = ian.task(plan["id"])["data"]
    assert (data["teamError"], data["appointmentRound"], data["leadAuditor"]) == ("", 3, IAN)
    checks = events(ian.history(iid), "service_called", "check_independence")
    assert [c["payload"]["result"]["independent"] for c in checks] == [False, False, True]
    assert checks[-1]["payload"]["operator"] == "audit.check_independence"
    assert [e["payload"]["taken"] for e in events(ian.history(iid), "gateway", "gw_team_independent")] == [
        ["Appoint audit team"], ["Appoint audit team"], ["Audit feasible?"]]


def test_segregation_of_duties_the_team_appointer_cannot_confirm_as_auditee(people):
    """Auditor is not auditee: the engine refuses the confirmation to whoever appointed the team."""
    ian = people(IAN)
    iid = start_audit(people, {**REQUEST, "auditee": IAN, "auditeeManager": SUE})
    complete(ian, iid, "appoint_team", {**TEAM, "team": [{"user": SAM, "department": "Quality",
                                                          "role": "Lead auditor"}]})
    complete(people(SAM), iid, "prepare_plan", {**PLAN, "plan": [dict(p, auditor=SAM) for p in PLAN["plan"]]})
    confirm = [t for t in ian.show(iid)["tasks"] if t["bpmn_id"] == "confirm_audit"][0]
    assert confirm["candidates"] == [IAN]
    assert inbox(ian, iid) == ["confirm_audit"]  # named in the lane: offered, but refused (below)
    with pytest.raises(PermissionDenied, match="segregation of duties"):
        ian.complete(confirm["id"], {"confirmation": "Confirm"})
    refused = events(ian.history(iid), "duty_refused", "confirm_audit")
    assert refused and refused[0]["payload"]["rule"] == "performer differs from appoint_team"


def test_auditee_confirmation_escalates_to_the_manager_after_3_days(people):
    ian, olga, sue = people(IAN), people(OLGA), people(SUE)
    iid = start_audit(people)
    complete(ian, iid, "appoint_team", TEAM)
    complete(ian, iid, "prepare_plan", PLAN)
    confirm = task_for(olga, iid, "confirm_audit")
    assert (confirm["lane"], confirm["candidates"]) == ("Auditee", [OLGA])
    assert inbox(sue, iid) == [] and inbox(ian, iid) == []
    notice = task_data(olga, iid, "confirm_audit")["auditeeNotice"]
    assert notice["recipientsUsers"] == [OLGA] and notice["task"] == "confirm_audit"
    assert abs(after(confirm["due"], 0) - after(confirm["created_at"], 3)) < timedelta(minutes=1)

    assert ian.acting_as("pmo.admin").run_due(after(confirm["due"], -0.5))["fired"] == []  # day 2.5
    fired = ian.acting_as("pmo.admin").run_due(after(confirm["due"], 0.1))
    assert (fired["fired"], fired["errors"]) == ([iid], [])
    escalated = task_for(sue, iid, "confirm_audit")
    assert escalated["id"] != confirm["id"] and escalated["candidates"] == [OLGA, SUE]
    assert task_for(olga, iid, "confirm_audit")["id"] == escalated["id"]
    data = sue.task(escalated["id"])["data"]
    assert data["confirmationEscalations"] == 1
    assert data["escalationNotice"]["recipientsUsers"] == [SUE]
    history = ian.history(iid)
    timer, _, _, _ = assert_in_order(history, [
        ("timer_fired", "tmr_confirm_escalation"), ("service_called", "notify_manager"),
        ("task_cancelled", "confirm_audit"), ("task_ready", "confirm_audit")], gapless=False)
    assert timer["actor"] == "worker"

    complete(sue, iid, "confirm_audit", {"confirmation": "Confirm"})  # the manager confirms
    assert inbox(ian, iid) == ["conduct_audit"]
    done = events(ian.history(iid), "task_completed", "confirm_audit")
    assert [e["actor"] for e in done] == [SUE]


def test_auditee_disputes_a_finding_and_the_programme_manager_resolves_it(people):
    ian, olga = people(IAN), people(OLGA)
    iid = start_audit(people)
    to_findings(people, iid)
    complete(ian, iid, "conduct_audit", FINDINGS)
    audit_id = ian.show(iid)["data"]["auditId"]
    closing = task_for(olga, iid, "closing_meeting")
    assert closing["candidates"] == [OLGA]
    complete(olga, iid, "closing_meeting", {
        "closingResponse": "Dispute", "disputedFindings": [f"{audit_id}-F01"],
        "disputeReason": "Evaluations exist on paper in the buyer's office."})

    resolve = task_for(ian, iid, "resolve_dispute")  # the programme manager (who started the audit)
    assert (resolve["lane"], resolve["candidates"]) == ("Internal Auditor", [IAN])
    assert inbox(olga, iid) == []
    assert ian.task(resolve["id"])["data"]["dispute"] == {
        "findings": [f"{audit_id}-F01"], "reason": "Evaluations exist on paper in the buyer's office.",
        "raisedBy": OLGA}
    complete(ian, iid, "resolve_dispute", {
        "disputeResolution": "Amended", "resolutionNote": "Paper evaluations were shown after the audit.",
        "amendedFindings": [dict(MAJOR, grade="OFI"), MINOR, OFI]})

    draft = ian.task(task_for(ian, iid, "draft_report")["id"])["data"]
    assert draft["dispute"]["resolution"] == "Amended" and draft["dispute"]["resolvedBy"] == IAN
    assert draft["findingCounts"] == {"Major": 0, "Minor": 1, "OFI": 2}
    complete(ian, iid, "draft_report", REPORT)
    complete(people(QUINN), iid, "approve_report", APPROVE_REPORT)
    opened = capa_tasks(ian, iid)
    assert [t["finding"]["id"] for t in opened] == [f"{audit_id}-F02"]  # only the Minor one now
    close_capa(people, iid, f"{audit_id}-F02")
    data = ian.show(iid)["data"]
    assert data["auditOutcome"] == "Closed" and len(data["capaResults"]) == 1
    history = ian.history(iid)
    assert_in_order(history, [("task_completed", "closing_meeting"), ("task_completed", "resolve_dispute"),
                              ("task_completed", "draft_report")], gapless=False)
    assert events(history, "task_completed", "resolve_dispute")[0]["payload"]["duty_checks"] == [
        {"rule": "performer differs from closing_meeting", "result": "passed"}]


def test_the_report_author_cannot_approve_it(people):
    """A Quality Director who led the audit drafts the report; approving it is refused (and not offered)."""
    quinn = people(QUINN)
    iid = start_audit(people)
    complete(people(IAN), iid, "appoint_team", {**TEAM, "team": [
        {"user": QUINN, "department": "Quality", "role": "Lead auditor"}]})
    complete(quinn, iid, "prepare_plan", {**PLAN, "plan": [dict(p, auditor=QUINN) for p in PLAN["plan"]]})
    complete(people(OLGA), iid, "confirm_audit", {"confirmation": "Confirm"})
    complete(quinn, iid, "conduct_audit", CLEAN)
    complete(people(OLGA), iid, "closing_meeting", {"closingResponse": "Accept"})
    complete(quinn, iid, "draft_report", REPORT)
    approve = [t for t in quinn.show(iid)["tasks"] if t["bpmn_id"] == "approve_report" and t["state"] == "ready"][0]
    assert inbox(quinn, iid) == []
    with pytest.raises(PermissionDenied, match="performed task draft_report"):
        quinn.complete(approve["id"], APPROVE_REPORT)
    assert ian_sees_no_error(people(IAN), iid)


def ian_sees_no_error(app: Pmoflow, iid: int) -> bool:
    shown = app.show(iid)
    return shown["status"] == "running" and shown["error"] is None


# ---------------------------------------------------------------------------------------------------------
# The programme
# ---------------------------------------------------------------------------------------------------------


def test_programme_coverage_loop_approval_and_the_audit_started_by_its_timer(people):
    ian, quinn = people(IAN), people(QUINN)
    month = next_months(3)
    year = int(month[:4])
    partial = {"programmeYear": year, "audits": [programme_entry(month, ["4", "5", "6", "7", "8"])]}
    started = ian.start("audit_programme", partial)
    assert (started["status"], started["error"]) == ("running", None)
    iid = started["instance_id"]

    # clauses 9 and 10 are missing: back to the programme manager, nothing for the Quality Director
    revise = task_for(ian, iid, "revise_programme")
    assert (revise["lane"], revise["candidates"]) == ("Internal Auditor", [IAN])
    data = ian.task(revise["id"])["data"]
    assert data["missingClauses"] == [9, 10] and "clause(s) 9, 10 not covered" in data["programmeError"]
    assert inbox(quinn, iid) == []
    full = {"programmeYear": year, "audits": [programme_entry(month, ["4", "5", "6", "7", "8", "9", "10"])]}
    complete(ian, iid, "revise_programme", full)

    approve = task_for(quinn, iid, "approve_programme")
    assert (approve["lane"], approve["candidates"]) == ("Quality Director", ["Quality Director"])
    data = quinn.task(approve["id"])["data"]
    assert (data["programmeRound"], data["programmeError"]) == (2, "")
    assert data["auditFrequencies"] == [{"auditsThisCycle": 1, "intervalMonths": 12, "frequency": "1/year",
                                         "basis": "Medium importance"}]
    complete(quinn, iid, "approve_programme", {"programmeDecision": "Approve",
                                               "programmeSignature": "Quinn Quality-Director"})

    shown = ian.show(iid)
    assert shown["status"] == "waiting"  # nothing to do until 30 days before the planned date
    planned = shown["data"]["plannedAudits"]
    assert [(p["auditNo"], p["plannedDate"]) for p in planned] == [(f"AP-{year}-01", f"{month}-01")]
    start_at = after(planned[0]["startAt"], 0)
    assert start_at == after(f"{month}-01T08:00:00+00:00", -30)
    assert after(shown["next_due"], 0) == start_at  # the time-date timer of the planned audit
    history = ian.history(iid)
    decisions = events(history, "decision", "decide_frequency")
    assert len(decisions) == 2  # one per audit, each round
    assert decisions[-1]["payload"]["hit_policy"] == "FIRST"
    assert [r["id"] for r in decisions[-1]["payload"]["matched_rules"]] == ["Rule_medium_importance"]
    assert decisions[-1]["payload"]["inputs"] == {"Importance (H/M/L)": "M", "Last audit result": "Clean",
                                                 "Recent change": False}

    assert ian.acting_as("pmo.admin").run_due(start_at - timedelta(days=1))["fired"] == []
    assert inbox(ian, iid) == []
    fired = ian.acting_as("pmo.admin").run_due(start_at + timedelta(hours=1))
    assert (fired["fired"], fired["errors"]) == ([iid], [])

    # the single audit runs inside the programme instance, the programme manager appoints its team
    appoint = task_for(ian, iid, "appoint_team")
    assert appoint["candidates"] == [IAN]
    data = ian.task(appoint["id"])["data"]
    assert (data["auditedProcess"], data["auditee"], data["plannedDate"]) == ("Purchasing", OLGA, f"{month}-01")
    assert f"AP-{year}-01" in data["scope"]
    to_findings(people, iid)
    to_report_approval(people, iid, CLEAN)
    complete(quinn, iid, "approve_report", APPROVE_REPORT)

    shown = ian.show(iid)
    assert (shown["status"], shown["error"]) == ("completed", None)
    data = shown["data"]
    assert data["programmeStatus"] == "Completed"
    assert data["programmeSummary"] == {"audits": 1, "closed": 1, "notFeasible": 0}
    [result] = data["auditResults"]
    assert (result["auditNo"], result["outcome"]) == (f"AP-{year}-01", "Closed")
    assert result["auditId"].startswith(f"AUD-{year}-")
    history = ian.history(iid)
    assert_in_order(history, [("task_completed", "revise_programme"), ("task_completed", "approve_programme"),
                              ("service_called", "publish_programme"), ("timer_fired", "wait_until_start"),
                              ("service_called", "register_audit"), ("task_completed", "appoint_team"),
                              ("service_called", "close_audit"), ("instance_completed", None)], gapless=False)


def test_programme_approval_reminds_after_5_days_and_escalates_to_the_project_director(people):
    ian, quinn, pat = people(IAN), people(QUINN), people(PAT)
    month = next_months(4)
    programme = {"programmeYear": int(month[:4]),
                 "audits": [programme_entry(month, ["4", "5", "6", "7", "8", "9", "10"])]}
    iid = ian.start("audit_programme", programme)["instance_id"]
    approve = task_for(quinn, iid, "approve_programme")
    assert inbox(pat, iid) == []
    assert abs(after(approve["due"], 0) - after(approve["created_at"], 5)) < timedelta(minutes=1)

    # the reminder (day 5), then the escalation (day 10)
    fired = ian.acting_as("pmo.admin").run_due(after(approve["created_at"], 11))
    assert (fired["fired"], fired["errors"]) == ([iid], [])
    escalated = task_for(pat, iid, "approve_programme")
    assert (escalated["lane"], escalated["candidates"]) == ("Quality Director", ["Project Director"])
    assert inbox(quinn, iid) == []
    data = pat.task(escalated["id"])["data"]
    assert data["escalations"] == 1 and data["lane_roles"] == {"Quality Director": ["Project Director"]}
    history = ian.history(iid)
    reminder = assert_in_order(history, [("timer_fired", "tmr_programme_reminder"),
                                         ("service_called", "remind_approver"),
                                         ("timer_fired", "tmr_programme_escalation"),
                                         ("task_cancelled", "approve_programme")], gapless=False)[1]
    assert reminder["payload"]["result"]["recipientsRole"] == ["Quality Director"]

    with pytest.raises(PermissionDenied):  # the programme manager may not approve his own programme
        ian.complete(escalated["id"], {"programmeDecision": "Approve", "programmeSignature": "Ian"})
    complete(pat, iid, "approve_programme", {"programmeDecision": "Approve", "programmeSignature": "Pat Director"})
    data = ian.show(iid)["data"]
    assert data["programmeStatus"] == "Approved"
    assert [(d["decision"], d["role"]) for d in data["programmeDecisions"]] == [("Approve", "Project Director")]


# ---------------------------------------------------------------------------------------------------------
# Handlers, and what the models need from the engine
# ---------------------------------------------------------------------------------------------------------


def test_check_independence_handler():
    ok = handlers.check_independence(TEAM["team"], " operations ", OLGA, SUE, checked_on="2027-01-02")
    assert (ok["independent"], ok["leadAuditor"], ok["message"], ok["checkedOn"]) == (True, IAN, "", "2027-01-02")
    bad = handlers.check_independence([LEAD, LEAD, {"user": SUE, "department": "OPERATIONS", "role": "Auditor"}],
                                      "Operations", OLGA, SUE)
    assert not bad["independent"] and bad["leadAuditor"] == ""
    assert [c["reason"] for c in bad["conflicts"]] == [
        "is listed twice", "belongs to the audited department (Operations)", "is the auditee's manager"]
    assert "exactly one lead auditor (it has 2)" in bad["message"]


def test_close_audit_refuses_while_a_corrective_action_is_open():
    findings = [dict(MAJOR, id="A-F01"), dict(MINOR, id="A-F02"), dict(OFI, id="A-F03")]
    closed = {"findingId": "A-F01", "grade": "Major", "status": "Closed", "closedOn": "2027-06-01",
              "cycles": 1, "effective": True}
    with pytest.raises(ValueError, match="no closed corrective action for finding\\(s\\) A-F02"):
        handlers.close_audit("A", findings, [closed])
    record = handlers.close_audit("A", findings, [closed, dict(closed, findingId="A-F02", grade="Minor")],
                                  closed_on="2027-06-02")
    assert record["recordsLocked"] and record["capaClosed"] == 2 and len(record["recordsHash"]) == 64
    again = handlers.close_audit("A", copy.deepcopy(findings), [closed, dict(closed, findingId="A-F02",
                                                                             grade="Minor")])
    assert again["recordsHash"] == record["recordsHash"]


def test_engine_fires_a_time_date_timer(people):
    """The programme starts each audit with a time-date timer (timeDate): the worker must index and fire it."""
    ian = people(IAN)
    people("dina.designer").deploy([AUDIT_FIXTURES / "time_date_timer.bpmn"])  # deploying is a Process Designer's
    moment = datetime.now(UTC) + timedelta(days=30)
    iid = ian.start("time_date_timer", {"waitUntil": moment.isoformat()})["instance_id"]
    assert ian.show(iid)["status"] == "waiting"
    fired = ian.acting_as("pmo.admin").run_due(moment + timedelta(hours=1))
    assert fired["fired"] == [iid]
    assert ian.show(iid)["status"] == "completed"


def audit_task(app: Pmoflow, iid: int, bpmn_id: str, process: str) -> dict:
    """The one open task `bpmn_id` of the audit of `process` in a programme instance (audits share task ids)."""
    found = [t for t in app.show(iid)["tasks"] if t["state"] == "ready" and t["bpmn_id"] == bpmn_id
             and app.task(t["id"])["data"].get("auditedProcess") == process]
    assert len(found) == 1, (bpmn_id, process, found)
    return found[0]


def test_duties_are_scoped_to_one_audit_of_the_programme(people):
    ian, quinn, olga, pat = people(IAN), people(QUINN), people(OLGA), people(PAT)
    month = next_months(3)
    programme = {"programmeYear": int(month[:4]), "audits": [
        programme_entry(month, ["4", "5", "6", "7", "8"]),
        programme_entry(month, ["9", "10"], process="Management review", department="Board", auditee=PAT,
                        auditeeManager="steve.steering")]}
    iid = ian.start("audit_programme", programme)["instance_id"]
    complete(quinn, iid, "approve_programme", {"programmeDecision": "Approve", "programmeSignature": "Quinn"})
    start_at = after(ian.show(iid)["data"]["plannedAudits"][0]["startAt"], 0)
    assert ian.acting_as("pmo.admin").run_due(start_at + timedelta(hours=1))["errors"] == []

    def act(app: Pmoflow, bpmn_id: str, process: str, data: dict) -> None:
        result = app.complete(audit_task(app, iid, bpmn_id, process)["id"], data)
        assert result["error"] is None, result["error"]

    # audit A (Purchasing): the Quality Director leads it and drafts its report (which she may not approve)
    act(ian, "appoint_team", "Purchasing", {**TEAM, "team": [{"user": QUINN, "department": "Quality",
                                                              "role": "Lead auditor"}]})
    act(quinn, "prepare_plan", "Purchasing", {**PLAN, "plan": [dict(p, auditor=QUINN) for p in PLAN["plan"]]})
    act(olga, "confirm_audit", "Purchasing", {"confirmation": "Confirm"})
    act(quinn, "conduct_audit", "Purchasing", CLEAN)
    act(olga, "closing_meeting", "Purchasing", {"closingResponse": "Accept"})
    act(quinn, "draft_report", "Purchasing", REPORT)
    # audit B (Management review): the Internal Auditor leads it; the Quality Director approves its report
    review_plan = {**PLAN, "checklist": [{"clause": "9.3", "question": "Are management reviews held as planned?"}]}
    act(ian, "appoint_team", "Management review", TEAM)
    act(ian, "prepare_plan", "Management review", review_plan)
    act(pat, "confirm_audit", "Management review", {"confirmation": "Confirm"})
    act(ian, "conduct_audit", "Management review", CLEAN)
    act(pat, "closing_meeting", "Management review", {"closingResponse": "Accept"})
    act(ian, "draft_report", "Management review", REPORT)
    with pytest.raises(PermissionDenied):  # her own report: rightly refused
        quinn.complete(audit_task(quinn, iid, "approve_report", "Purchasing")["id"], APPROVE_REPORT)
    act(quinn, "approve_report", "Management review", APPROVE_REPORT)  # refused today: she drafted A's report


def test_an_organisational_change_message_starts_a_programme_planned_by_an_internal_auditor(people):
    # A message from outside starts a process only for holders of its start lane: the Internal Auditor sends it.
    ian = people(IAN)
    change = {"change": "Merger with the Lisbon office", "effectiveOn": "2027-03-01"}
    [iid] = ian.message("organisational_change", change)["delivered_to"]
    shown = ian.show(iid)
    assert (shown["process_id"], shown["started_by"], shown["data"]["orgChange"]) == ("audit_programme", IAN, change)
    [plan] = [t for t in shown["tasks"] if t["state"] == "ready"]
    assert (plan["bpmn_id"], plan["candidates"]) == ("plan_programme", ["Internal Auditor"])
    month = next_months(2)
    complete(ian, iid, "plan_programme", {"programmeYear": int(month[:4]),
                                          "audits": [programme_entry(month, ["4", "5"])]})
    assert ian.show(iid)["data"]["programmeManager"] == IAN  # the planner runs it
