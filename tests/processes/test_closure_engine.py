"""Scenario tests of project closure with lessons learned (pmo-processes.md #6) run by the pmoflow engine, through
the Python API, on a real database.

Every test starts from the bundled demo organisation and process library (the ``demo_pmo`` fixture) and acts as the
demo users who would do each step: the project manager (pete.pm) starts the closure by hand and fills the checklist
and the lessons-learned workshop, the measurement analyst (mia.analyst), the configuration engineer (carl.ce) and
the SQA (sam.sqa) work in parallel, the Knowledge Manager (kim.km) curates the lessons, the Assistant Project
Director (alex.apd) or, for a termination, the Project Director (pat.director) approves, and the sponsor
(sean.sponsor) reviews the benefits six months later. Timers are fired with ``run_due(now)``; a quality gate's KILL is
the message closure_requested, sent with ``message()``. Each test runs on SQLite and, when PMOFLOW_TEST_PG_URL is
set, on PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree
from scenario_helpers import after, assert_in_order, complete, inbox, open_tasks, task_data, task_for
from test_capa_engine import services

from conftest import People
from pmoflow.engine.errors import InvalidInput, PermissionDenied
from pmoflow.workflows.closure import archive_baseline

PROCESS = "project_closure"
PM, SQA, MDA, CE, KM = "pete.pm", "sam.sqa", "mia.analyst", "carl.ce", "kim.km"
APD, PD, SPONSOR = "alex.apd", "pat.director", "sean.sponsor"
BPMN = Path(__file__).resolve().parents[2] / "bpmn" / "project_closure.bpmn"

# ---------------------------------------------------------------------------------------------------------
# Form data (valid unless a test changes it)
# ---------------------------------------------------------------------------------------------------------


def request(closure_type: str = "completed", contract_type: str = "fixed-price", **changes) -> dict:
    data = {"projectId": "PRJ-2027-1A2B3C", "projectTitle": "Customer portal", "pmUser": PM, "sqaUser": SQA,
            "sponsorUser": SPONSOR, "closureType": closure_type, "contractType": contract_type,
            "gateRef": "PRJ-2027-1A2B3C/Gc"}
    if closure_type == "terminated":
        data["terminationRationale"] = "The business case no longer holds: the market moved."
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


ACCEPTANCE = {"documentRef": "DOC-ACC-77", "acceptedBy": "Sean Sponsor (Marketing)", "acceptedOn": "2027-06-30"}
STAFF = [{"user": PM, "role": "Project manager", "releaseOn": "2027-07-15"},
         {"user": "dev.one", "role": "Developer", "releaseOn": "2027-07-10"}]
RISK = {"kind": "Risk", "ref": "R-4", "description": "Licence renewal of the search engine", "owner": "olga.owner"}


def checklist(**changes) -> dict:
    data = {"finalReportRef": "DOC-FR-12", "acceptance": ACCEPTANCE, "contractsClosed": True,
            "contractClosureRef": "CT-2027-9", "handoverRef": "HO-2027-3", "remainingItems": [RISK],
            "staffRelease": STAFF}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


ACTUALS = {"effortHours": 5200, "budgetAtCompletion": 800000, "plannedValue": 800000, "earnedValue": 760000,
           "actualCost": 800000, "defects": 63, "size": 42, "sizeUnit": "KLOC", "actualsStatus": "Validated"}
BASELINE = {"baselineTag": "PRJ-2027-1A2B3C-FINAL", "repository": "git.example.org/portal",
            "items": [{"ci": "portal-web", "version": "2.4.0"}, {"ci": "portal-api", "version": "1.9.2"}],
            "archiveLocation": "records://projects/PRJ-2027-1A2B3C"}
AUDIT = {"ncs": [{"id": "NC-3", "grade": "Minor", "status": "Closed"},
                 {"id": "NC-5", "grade": "Minor", "status": "Transferred", "owner": "olga.owner"}],
         "recordsComplete": True, "auditSummary": "Records complete; NC-5 goes to operations.",
         "sqaSignature": "Sam Quality-Assurance"}


def lesson(area: str, n: int, process_level: bool = False) -> dict:
    return {"knowledgeArea": area, "whatHappened": f"Event number {n} happened on the project.",
            "impact": "Two weeks", "rootCause": "No early agreement",
            "recommendation": f"Recommendation {n}: agree early.",
            "tags": ["lesson", str(n)], "processLevel": process_level}


WORKSHOP = {"participants": [PM, "dev.one"], "noLessons": False,
            "entries": [lesson("Schedule", 1, True), lesson("Quality", 2), lesson("Resource", 3)]}
NO_LESSONS = {"participants": [PM], "noLessons": True,
              "noLessonsJustification": "The project stopped after two weeks of analysis; nothing was tried."}
CURATION = {"curations": [{"entryId": "LL-1", "disposition": "Publish"},
                          {"entryId": "LL-2", "disposition": "Merge", "mergeInto": "LL-2019-011"},
                          {"entryId": "LL-3", "disposition": "Reject", "reason": "Not a project lesson."}]}
APPROVE = {"approvalDecision": "Approve", "approverSignature": "Alex Assistant-Director"}
RETURN = {"approvalDecision": "Return", "approvalComment": "Attach the final invoice.",
          "approverSignature": "Alex Assistant-Director"}

# ---------------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in scenario_helpers.py; the `people` fixture is in conftest.py)
# ---------------------------------------------------------------------------------------------------------


def start(people: People, data: dict, user: str = PM) -> int:
    result = people(user).start(PROCESS, data)
    assert (result["status"], result["error"]) == ("running", None)
    return result["instance_id"]


def parallel_work(people: People, iid: int) -> None:
    """The three parallel human steps after the checklist."""
    complete(people(MDA), iid, "validate_actuals", ACTUALS)
    complete(people(CE), iid, "confirm_baseline", BASELINE)
    complete(people(SQA), iid, "closure_audit", AUDIT)


def to_approval(people: People, iid: int, workshop: dict = WORKSHOP) -> None:
    """From a ready checklist that passes to a ready approval."""
    complete(people(PM), iid, "closure_checklist", checklist())
    parallel_work(people, iid)
    complete(people(PM), iid, "lessons_workshop", workshop)
    if not workshop["noLessons"]:
        complete(people(KM), iid, "curate_lessons", CURATION)


def error_fields(refused: pytest.ExceptionInfo) -> list[str]:
    return sorted({d.split(":")[0] for d in refused.value.details})


# ---------------------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------------------


def test_a_completed_fixed_price_project_is_closed_and_its_benefits_reviewed(people):
    pete, alex, kim, sean = people(PM), people(APD), people(KM), people(SPONSOR)
    iid = start(people, request())

    checklist_task = task_for(pete, iid, "closure_checklist")
    assert (checklist_task["lane"], checklist_task["candidates"], checklist_task["candidate_kind"]) == (
        "Project Manager", [PM], "user")
    assert inbox(people("paula.pm"), iid) == []  # another project manager: not her project
    data = pete.task(checklist_task["id"])["data"]
    assert data["closureChecklist"] == {"acceptanceRequired": True, "contractClosureRequired": True,
                                        "handoverRequired": True, "benefitsReview": True,
                                        "approverRole": "Assistant Project Director", "retentionYears": 10}
    assert (data["terminated"], data["closureTrigger"], data["terminationRationale"]) == (False, "manual", "")
    assert data["lane_owners"] == {"Project Manager": [PM], "SQA": [SQA], "Sponsor": [SPONSOR]}
    complete(pete, iid, "closure_checklist", checklist())

    # in parallel: actuals, baseline, SQA audit (the staff release is a service, already done)
    assert open_tasks(pete, iid) == [("closure_audit", [SQA]), ("confirm_baseline", ["Configuration Engineer"]),
                                     ("validate_actuals", ["Measurement Analyst"])]
    assert inbox(people(MDA), iid) == ["validate_actuals"] and inbox(people(CE), iid) == ["confirm_baseline"]
    assert inbox(people(SQA), iid) == ["closure_audit"] and inbox(pete, iid) == []
    parallel_work(people, iid)
    workshop = task_data(pete, iid, "lessons_workshop")
    assert workshop["finalActuals"] == {"effortHours": 5200, "budgetAtCompletion": 800000, "actualCost": 800000,
                                        "spi": 0.95, "cpi": 0.95, "costVariancePct": 0.0, "defects": 63,
                                        "defectDensity": 1.5, "sizeUnit": "KLOC", "status": "Validated"}
    expected = archive_baseline("PRJ-2027-1A2B3C", BASELINE["baselineTag"], BASELINE["repository"],
                                BASELINE["items"], BASELINE["archiveLocation"])
    assert workshop["baselineArchive"]["checksum"] == expected["checksum"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", expected["checksum"])
    assert workshop["closureAudit"]["transferred"] == [{"id": "NC-5", "owner": "olga.owner"}]
    assert workshop["staffReleaseRequest"]["people"] == STAFF
    complete(pete, iid, "lessons_workshop", WORKSHOP)

    curate = task_for(kim, iid, "curate_lessons")
    assert (curate["lane"], curate["candidates"]) == ("Knowledge Manager", ["Knowledge Manager"])
    assert [e["entryId"] for e in kim.task(curate["id"])["data"]["lessons"]] == ["LL-1", "LL-2", "LL-3"]
    assert abs(after(curate["created_at"], 10) - after(curate["due"], 0)).total_seconds() < 60  # the P10D SLA
    complete(kim, iid, "curate_lessons", CURATION)

    approve = task_for(alex, iid, "approve_closure")
    assert approve["candidates"] == ["Assistant Project Director"]
    assert inbox(people(PD), iid) == []
    publication = alex.task(approve["id"])["data"]["lessonPublication"]
    assert [(r["entryId"], r["action"]) for r in publication["records"]] == [("LL-1", "Published"),
                                                                           ("LL-2", "Merged")]
    assert publication["records"][1]["kbId"] == "LL-2019-011"
    assert [p["sourceRef"] for p in publication["improvementRequests"]] == ["PRJ-2027-1A2B3C/LL-1"]
    complete(alex, iid, "approve_closure", APPROVE)

    # closed; the benefits review waits 6 months
    shown = alex.show(iid)
    assert shown["status"] == "waiting" and open_tasks(alex, iid) == []
    assert shown["data"]["outcome"] == "CLOSED"
    closure = shown["data"]["projectClosure"]
    assert (closure["status"], closure["recordsLocked"], closure["retentionYears"], closure["archiveChecksum"]) == (
        "Closed", True, 10, expected["checksum"])
    closed_on = [e for e in alex.history(iid) if e["type"] == "service_called" and e["task"] == "close_project"][0]
    assert alex.acting_as("pmo.admin").run_due(after(closed_on["at"], 180))["fired"] == []
    assert alex.acting_as("pmo.admin").run_due(after(closed_on["at"], 186))["fired"] == [iid]
    review = task_for(sean, iid, "benefits_review")
    assert (review["lane"], review["candidates"]) == ("Sponsor", [SPONSOR])
    assert inbox(people("sue.sponsor"), iid) == []
    complete(sean, iid, "benefits_review", {"benefitsRealised": "Partly", "benefitsEvidence": "35 % self-service"})

    shown = alex.show(iid)
    assert (shown["status"], shown["error"], shown["next_due"]) == ("completed", None, None)
    assert shown["data"]["closureResult"]["outcome"] == "CLOSED"
    history = alex.history(iid)
    found = assert_in_order(history, [
        ("instance_started", None), ("decision", "decide_checklist"), ("task_completed", "closure_checklist"),
        ("service_called", "release_staff"), ("task_completed", "lessons_workshop"),
        ("task_completed", "curate_lessons"), ("service_called", "publish_lessons"),
        ("task_completed", "approve_closure"), ("service_called", "close_project"), ("timer_fired", "wait_benefits"),
        ("task_completed", "benefits_review"), ("instance_completed", None),
    ])
    decision = found[1]["payload"]
    assert "ClosureChecklist" in decision["decision"] and decision["hit_policy"] == "FIRST"
    assert decision["inputs"] == {"Closure type": "completed", "Contract type": "fixed-price"}
    assert [r["id"] for r in decision["matched_rules"]] == ["Rule_fixed_price"]
    closed = {e["task"]: e for e in history if e["type"] == "task_completed"}
    assert {t: e["actor"] for t, e in closed.items()} == {
        "closure_checklist": PM, "validate_actuals": MDA, "confirm_baseline": CE, "closure_audit": SQA,
        "lessons_workshop": PM, "curate_lessons": KM, "approve_closure": APD, "benefits_review": SPONSOR}
    assert closed["approve_closure"]["payload"]["duty_checks"] == [
        {"rule": "performer differs from closure_checklist", "result": "passed"}]
    assert closed["closure_audit"]["payload"]["duty_checks"] == [
        {"rule": "performer differs from closure_checklist", "result": "passed"}]


def test_a_terminated_project_needs_no_acceptance_and_the_pd_approves(people):
    pete, pat, alex = people(PM), people(PD), people(APD)
    iid = start(people, request("terminated", "internal", sponsorUser=None))
    data = task_data(pete, iid, "closure_checklist")
    assert (data["terminated"], data["terminationRationale"]) == (
        True, "The business case no longer holds: the market moved.")
    assert data["closureChecklist"]["acceptanceRequired"] is False
    # nothing to accept, no contract, no handover: the checklist passes without them
    complete(pete, iid, "closure_checklist", checklist(acceptance=None, contractsClosed=False,
                                                       contractClosureRef=None, handoverRef=None, remainingItems=[]))
    parallel_work(people, iid)
    complete(pete, iid, "lessons_workshop", NO_LESSONS)  # no lessons: no curation
    assert inbox(people(KM), iid) == []
    approve = task_for(pat, iid, "approve_closure")
    assert approve["candidates"] == ["Project Director"] and inbox(alex, iid) == []
    complete(pat, iid, "approve_closure", {**APPROVE, "approverSignature": "Pat Director"})

    shown = pat.show(iid)
    assert (shown["status"], shown["error"], shown["next_due"]) == ("completed", None, None)
    assert shown["data"]["outcome"] == "TERMINATED"
    assert shown["data"]["projectClosure"]["status"] == "Terminated"
    assert shown["data"]["projectClosure"]["retentionYears"] == 5
    assert shown["data"]["closureResult"]["lessons"] == 0
    assert "wait_benefits" not in [e["task"] for e in pat.history(iid)]
    gateways = {e["task"]: e["payload"]["taken"] for e in pat.history(iid) if e["type"] == "gateway"}
    assert (gateways["gw_has_lessons"], gateways["gw_benefits"]) == (["gw_lessons_merge"], ["Project closed"])


def test_the_checklist_comes_back_with_the_reason_and_the_third_return_goes_to_the_approver(people):
    pete, alex = people(PM), people(APD)
    iid = start(people, request("completed", "internal"))
    missing = checklist(acceptance=None, remainingItems=[{**RISK, "owner": PM}])
    complete(pete, iid, "closure_checklist", missing)
    data = task_data(pete, iid, "closure_checklist")
    assert data["checklistError"] == (
        "The acceptance document is required for a completed internal project: give its reference, who accepted "
        "and when. Open items must go to an owner who stays after closure, not the project manager: R-4.")
    assert (data["checklistRound"], data["acceptance"], data["handoverRef"]) == (1, {}, "")
    complete(pete, iid, "closure_checklist", checklist(acceptance=None))
    assert inbox(alex, iid) == []
    complete(pete, iid, "closure_checklist", checklist(acceptance=None))

    # the third failed check: the approver rules; a waiver lets the closure go on
    assert inbox(pete, iid) == []
    ruling = task_for(alex, iid, "resolve_checklist")
    assert (ruling["lane"], ruling["candidates"]) == ("Assistant Project Director", ["Assistant Project Director"])
    assert [r["round"] for r in alex.task(ruling["id"])["data"]["checklistReturns"]] == [1, 2, 3]
    complete(alex, iid, "resolve_checklist", {"checklistRuling": "Waive",
                                              "rulingRationale": "Steering minutes of 30 June record acceptance."})
    assert inbox(people(MDA), iid) == ["validate_actuals"]
    parallel_work(people, iid)
    complete(pete, iid, "lessons_workshop", WORKSHOP)
    complete(people(KM), iid, "curate_lessons", CURATION)
    complete(alex, iid, "approve_closure", APPROVE)
    data = alex.show(iid)["data"]
    assert data["checklistWaivers"][0]["ruling"] == "Waive" and data["closureResult"]["waived"] is True
    taken = [e["payload"]["taken"] for e in alex.history(iid) if e["task"] == "gw_checklist_ok"]
    assert taken == [["gw_checklist_merge"], ["gw_checklist_merge"], ["Rule on the checklist"]]


def test_an_approver_who_returns_the_checklist_sends_it_back_to_the_pm(people):
    pete, alex = people(PM), people(APD)
    iid = start(people, request("contract-end", "fixed-price"))
    for _ in range(3):
        complete(pete, iid, "closure_checklist", checklist(handoverRef=None))
    complete(alex, iid, "resolve_checklist", {"checklistRuling": "Return",
                                              "rulingRationale": "Get the handover signed by operations."})
    assert inbox(pete, iid) == ["closure_checklist"]
    complete(pete, iid, "closure_checklist", checklist())
    assert inbox(people(SQA), iid) == ["closure_audit"]
    assert task_data(people(SQA), iid, "closure_audit")["checklistRound"] == 4


def test_the_approver_returns_the_closure_to_the_pm(people):
    pete, alex = people(PM), people(APD)
    iid = start(people, request("completed", "T&M"))
    to_approval(people, iid)
    complete(alex, iid, "approve_closure", RETURN)
    rework = task_for(pete, iid, "rework_closure")
    assert pete.task(rework["id"])["data"]["approvals"][-1]["comment"] == "Attach the final invoice."
    complete(pete, iid, "rework_closure", {"reworkSummary": "Final invoice INV-4411 attached."})
    complete(alex, iid, "approve_closure", APPROVE)
    data = alex.show(iid)["data"]
    assert [a["decision"] for a in data["approvals"]] == ["Return", "Approve"]
    assert alex.show(iid)["status"] == "completed"  # T&M: no benefits review
    assert data["outcome"] == "CLOSED"


def test_the_curation_sla_reminds_the_km_at_10_days_and_escalates_at_20(people):
    pete, kim = people(PM), people(KM)
    iid = start(people, request())
    complete(pete, iid, "closure_checklist", checklist())
    parallel_work(people, iid)
    complete(pete, iid, "lessons_workshop", WORKSHOP)
    opened = task_for(kim, iid, "curate_lessons")["created_at"]
    assert kim.acting_as("pmo.admin").run_due(after(opened, 9))["fired"] == []
    assert kim.acting_as("pmo.admin").run_due(after(opened, 11))["fired"] == [iid]
    [reminder] = services(kim.history(iid), "remind_km")
    assert reminder["actor"] == "worker"
    result = reminder["payload"]["result"]
    assert (result["level"], result["recipientsRole"], result["task"], result["status"], result["channel"]) == (
        "reminder", ["Knowledge Manager"], "curate_lessons", "queued", "inbox")
    assert re.fullmatch(r"NTF-[0-9a-f]{12}", result["notificationId"])
    assert inbox(kim, iid) == ["curate_lessons"]  # non-interrupting: still hers
    assert kim.acting_as("pmo.admin").run_due(after(opened, 21))["fired"] == [iid]
    [escalation] = services(kim.history(iid), "escalate_curation")
    assert escalation["payload"]["result"]["recipientsRole"] == ["Project Director", "Knowledge Manager"]
    assert inbox(kim, iid) == ["curate_lessons"]

    # a curation that misses a lesson comes back with the reason
    complete(kim, iid, "curate_lessons", {"curations": CURATION["curations"][:2]})
    assert task_data(kim, iid, "curate_lessons")["curationError"] == "No decision for LL-3."
    complete(kim, iid, "curate_lessons", CURATION)
    assert inbox(people(APD), iid) == ["approve_closure"]
    history = kim.history(iid)
    assert [e["task"] for e in history if e["type"] == "timer_fired"] == [
        "tmr_curation_reminder", "tmr_curation_escalation"]
    assert not [e for e in history if e["type"] == "task_cancelled" and e["task"] == "curate_lessons"]


def test_a_kill_message_starts_a_terminated_closure(people):
    """The quality gate's KILL sends closure_requested (here sent from outside, by the project manager: a message
    from outside starts a process only for holders of its start lane): the closure starts at the message start
    event, terminated, with the gate's rationale, and the Project Director approves it."""
    alex, pete, pat = people(APD), people(PM), people(PD)
    payload = {"projectId": "PRJ-2027-0A1B2C", "projectTitle": "Billing replacement", "pmUser": PM,
               "sqaUser": SQA, "terminated": True, "rationale": "The market is gone.",
               "gateRef": "PRJ-2027-0A1B2C/G2"}
    sent = pete.message("closure_requested", payload)
    [iid] = sent["delivered_to"]
    shown = alex.show(iid)
    assert (shown["process_id"], shown["status"], shown["error"]) == (PROCESS, "running", None)
    data = task_data(pete, iid, "closure_checklist")
    assert data["closureRequest"] == payload
    assert {k: data[k] for k in ("projectId", "closureType", "contractType", "terminated", "terminationRationale",
                                 "gateRef", "closureTrigger")} == {
        "projectId": "PRJ-2027-0A1B2C", "closureType": "terminated", "contractType": "unknown", "terminated": True,
        "terminationRationale": "The market is gone.", "gateRef": "PRJ-2027-0A1B2C/G2", "closureTrigger": "gate-kill"}
    assert data["closureChecklist"]["acceptanceRequired"] is False
    assert data["lane_owners"] == {"Project Manager": [PM], "SQA": [SQA]}
    history = alex.history(iid)
    assert not [e for e in history if e["task"] == "start_closure" and e["type"] == "task_completed"]
    to_approval(people, iid, NO_LESSONS)
    assert inbox(alex, iid) == []  # a termination is the Project Director's
    complete(pat, iid, "approve_closure", {**APPROVE, "approverSignature": "Pat Director"})
    shown = pat.show(iid)
    assert (shown["status"], shown["data"]["outcome"]) == ("completed", "TERMINATED")
    assert shown["data"]["closureResult"]["trigger"] == "gate-kill"


# ---------------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------------


def test_the_pm_may_not_audit_their_own_closure(people):
    """A project manager named as the SQA too does not get the closure audit (they made the checklist): it goes to
    the SQA role instead, so the closure does not wait for someone who may not do it."""
    pete, sam = people(PM), people(SQA)
    iid = start(people, request(sqaUser=PM))
    complete(pete, iid, "closure_checklist", checklist())
    audit = task_for(sam, iid, "closure_audit")
    assert (audit["candidates"], audit["candidate_kind"]) == (["SQA"], "role")
    assert audit["id"] not in [t["id"] for t in pete.tasks()]
    before = sam.show(iid)
    with pytest.raises(PermissionDenied, match="is for role SQA; pete.pm is not one of them"):
        pete.complete(audit["id"], AUDIT)
    assert sam.show(iid)["tasks"] == before["tasks"]
    complete(sam, iid, "closure_audit", AUDIT)


def test_only_the_named_people_act(people):
    pete = people(PM)
    iid = start(people, request())
    for user in ("paula.pm", SQA, APD):
        with pytest.raises(PermissionDenied, match=PM):
            people(user).complete(task_for(pete, iid, "closure_checklist")["id"], checklist())
    complete(pete, iid, "closure_checklist", checklist())
    with pytest.raises(PermissionDenied):
        people(KM).complete(task_for(people(MDA), iid, "validate_actuals")["id"], ACTUALS)


def test_bad_input_is_refused_and_nothing_changes(people):
    pete, sam = people(PM), people(SQA)
    with pytest.raises(PermissionDenied, match="Project Manager"):
        sam.start(PROCESS, request())
    with pytest.raises(InvalidInput) as refused:  # a termination needs its rationale
        pete.start(PROCESS, request("terminated", terminationRationale=None))
    assert error_fields(refused) == ["terminationRationale"]
    with pytest.raises(InvalidInput) as refused:
        pete.start(PROCESS, {**request(), "closureType": "abandoned", "contractType": "barter"})
    assert error_fields(refused) == ["closureType", "contractType"]
    with pytest.raises(InvalidInput, match="does not ask for: lane_owners"):
        pete.start(PROCESS, {**request(), "lane_owners": {"SQA": [PM]}})
    with pytest.raises(InvalidInput, match="does not ask for"):
        pete.start(PROCESS, {**request(), "closureRequest": {"terminated": True}})
    assert pete.instances(process=PROCESS) == []

    iid = start(people, request())
    task = task_for(pete, iid, "closure_checklist")
    before = pete.show(iid), pete.history(iid)
    for bad, fields in (
        (checklist(staffRelease=[]), ["staffRelease"]),
        (checklist(remainingItems=[{**RISK, "owner": ""}]), ["remainingItems[0].owner"]),
        (checklist(acceptance={"documentRef": "DOC-1"}), ["acceptance.acceptedBy", "acceptance.acceptedOn"]),
    ):
        with pytest.raises(InvalidInput) as refused:
            pete.complete(task["id"], bad)
        assert error_fields(refused) == fields
    assert (pete.show(iid), pete.history(iid)) == before

    complete(pete, iid, "closure_checklist", checklist())
    with pytest.raises(InvalidInput) as refused:  # an NC may not stay open, a transfer needs an owner
        sam.complete(task_for(sam, iid, "closure_audit")["id"],
                     {**AUDIT, "ncs": [{"id": "NC-5", "grade": "Minor", "status": "Open"},
                                       {"id": "NC-6", "grade": "Minor", "status": "Transferred"}]})
    assert error_fields(refused) == ["ncs[0].status", "ncs[1].owner"]
    parallel_work(people, iid)
    workshop = task_for(pete, iid, "lessons_workshop")
    before = pete.show(iid), pete.history(iid)
    for bad, fields in (
        ({**WORKSHOP, "entries": WORKSHOP["entries"][:2]}, ["entries"]),  # at least 3
        ({**NO_LESSONS, "noLessonsJustification": "none"}, ["noLessonsJustification"]),  # a real justification
        ({**NO_LESSONS, "entries": WORKSHOP["entries"]}, ["entries"]),  # none means none
        ({"participants": [PM], "noLessons": False}, ["entries"]),
    ):
        with pytest.raises(InvalidInput) as refused:
            pete.complete(workshop["id"], bad)
        assert error_fields(refused) == fields
    assert (pete.show(iid), pete.history(iid)) == before
    complete(pete, iid, "lessons_workshop", WORKSHOP)
    with pytest.raises(InvalidInput) as refused:  # Merge needs its target, Reject its reason
        people(KM).complete(task_for(people(KM), iid, "curate_lessons")["id"],
                            {"curations": [{"entryId": "LL-1", "disposition": "Merge"},
                                           {"entryId": "LL-2", "disposition": "Reject"}]})
    assert error_fields(refused) == ["curations[0].mergeInto", "curations[1].reason"]


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


def test_the_two_starts_the_duties_and_the_timers_are_in_the_model():
    root = etree.parse(str(BPMN)).getroot()
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
          "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
          "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI"}
    process = root.find("bpmn:process", ns)
    assert process.get("id") == PROCESS and process.find("bpmn:documentation", ns).text
    assert [(m.get("id"), m.get("name")) for m in root.findall("bpmn:message", ns)] == [
        ("closure_requested", "closure_requested")]
    starts = process.findall("bpmn:startEvent", ns)
    assert [s.get("id") for s in starts] == ["start_closure", "start_closure_killed"]
    message = starts[1].find("bpmn:messageEventDefinition", ns)
    assert message.get("messageRef") == "closure_requested"
    assert message.find(".//spiffworkflow:messageVariable", ns).text == "closureRequest"
    lanes = {lane.get("name"): [r.text for r in lane.findall("bpmn:flowNodeRef", ns)]
             for lane in root.iterfind(".//bpmn:lane", ns)}
    assert {"start_closure", "start_closure_killed"} <= set(lanes["Project Manager"])
    assert set(lanes) == {"Project Manager", "Measurement Analyst", "Configuration Engineer", "SQA",
                          "Knowledge Manager", "Assistant Project Director", "Sponsor"}
    duties = {el.getparent().getparent().getparent().get("id"): el.get("value")
              for el in root.iterfind(".//spiffworkflow:property[@name='sodDifferentFrom']", ns)}
    assert duties == {"closure_audit": "closure_checklist", "resolve_checklist": "closure_checklist",
                      "approve_closure": "closure_checklist"}
    timers = {el.getparent().getparent().get("id"): el.text for el in root.iterfind(".//bpmn:timeDuration", ns)}
    assert timers == {"tmr_curation_reminder": '"P10D"', "tmr_curation_escalation": '"P20D"',
                      "tmr_approval_reminder": '"P5D"', "wait_benefits": '"P6M"'}
    boundaries = {b.get("id"): b.get("cancelActivity") for b in process.findall("bpmn:boundaryEvent", ns)}
    assert set(boundaries.values()) == {"false"}
    for task in process.findall("bpmn:userTask", ns):
        assert (task.findtext("bpmn:documentation", namespaces=ns) or "").strip(), task.get("id")
    drawn = {s.get("bpmnElement") for s in root.iterfind(".//bpmndi:BPMNShape", ns)}
    drawn |= {e.get("bpmnElement") for e in root.iterfind(".//bpmndi:BPMNEdge", ns)}
    elements = {el.get("id") for el in process if etree.QName(el).localname not in ("documentation", "laneSet")}
    elements |= {lane.get("id") for lane in root.iterfind(".//bpmn:lane", ns)}
    assert len(elements) > 100 and elements - drawn == set()
