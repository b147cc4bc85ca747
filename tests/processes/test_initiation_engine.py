"""Scenario tests of project initiation run by the pmoflow engine, through the Python API, on a real database.

Every test starts from the bundled demo organisation and process library (the ``demo_pmo`` fixture) and acts
as the demo users who would really do each step: the Sponsor starts a request, the Senior Project Manager
reviews it, a Project Manager drafts the charter, the Quality Director and the Configuration Manager prepare
it, the approver chosen by the CharterApproval rules signs. Timers are fired with ``run_due(now)``.
Each test runs on SQLite and, when PMOFLOW_TEST_PG_URL is set, on PostgreSQL.

The form data builders are copied from test_initiation_model.py, with the demo organisation's user names.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from scenario_helpers import after, assert_completed, assert_in_order, complete, inbox, open_tasks, task_for

from conftest import People
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied

PROCESS = "project_initiation"
SPONSOR = "sean.sponsor"  # a Sponsor and nothing else: the usual requester
PD_STEERING = ["Project Director", "Steering Committee"]

# ---------------------------------------------------------------------------------------------------------
# Form data (valid unless a test changes it)
# ---------------------------------------------------------------------------------------------------------


def request(budget: float = 500_000, risks=((2, 3),), contract: str = "internal", sponsor: str = SPONSOR,
            **extra) -> dict:
    """A project request. The defaults (500 k, low risk, internal) make the Assistant Project Director the
    single approver (DMN row Rule_200k_low_med)."""
    data = {
        "title": "Customer portal replacement",
        "businessNeed": "The customer portal runs on an unsupported platform; outages cost us renewals and "
        "support calls. Customers need self-service for invoices and tickets.",
        "objectives": [
            {"objective": "Replace the portal", "successCriterion": "Old portal switched off by Q4"},
            {"objective": "Cut support calls", "successCriterion": "-30% tickets within 6 months"},
        ],
        "scopeIn": "Portal, single sign-on, invoice and ticket self-service",
        "scopeOut": "Mobile app",
        "estBudget": budget,
        "budgetSource": "Capital budget",
        "targetStart": "2027-01-04",
        "targetEnd": "2027-12-17",
        "milestones": [
            {"name": "Design approved", "date": "2027-03-01"},
            {"name": "Go-live", "date": "2027-11-15"},
        ],
        "risks": [{"desc": f"risk {i}", "probability": p, "impact": i_} for i, (p, i_) in enumerate(risks)],
        "stakeholders": [
            {"name": sponsor, "role": "Sponsor", "influence": "H"},
            {"name": "lee.ops", "role": "Operations lead", "influence": "M"},
        ],
        "contractType": contract,
        "strategicObjective": "Improve customer experience",
    }
    if budget >= 1_000_000:
        data["businessCase"] = "https://docs.example.org/bc/customer-portal"
    data.update(extra)
    return data


def intake(decision: str = "Accept", comment: str | None = None) -> dict:
    form = {
        "hasMeasurableObjectives": True,
        "hasClearScope": True,
        "hasRealisticSchedule": True,
        "hasBudgetJustification": True,
        "hasRiskAssessment": True,
        "hasStakeholders": decision == "Accept",
        "projectType": "Software development",
        "lifecycle": "Hybrid",
        "intakeDecision": decision,
    }
    if comment is not None:
        form["intakeComment"] = comment
    return form


def charter(pm_name: str | None = "pete.pm", sponsor: str = SPONSOR, **extra) -> dict:
    form = {
        "purpose": "Replace the unsupported customer portal and move customers to self-service.",
        "objectives": [{"objective": "Replace the portal", "successCriterion": "Old portal off by 2027-12-01"}],
        "highLevelRequirements": ["Single sign-on with the corporate IdP", "WCAG 2.1 AA"],
        "deliverables": ["New portal in production", "Migrated customer accounts"],
        "overallRisk": "Med",
        "milestones": [
            {"name": "Design approved", "date": "2027-03-01"},
            {"name": "Go-live", "date": "2027-11-15"},
        ],
        "preApprovedBudget": 120_000,
        "stakeholders": [
            {"name": sponsor, "role": "Sponsor", "influence": "H"},
            {"name": "lee.ops", "role": "Operations lead", "influence": "M"},
            {"name": "kim.dev", "role": "Lead developer", "influence": "M"},
        ],
        "exitCriteria": "Portal accepted by operations; old portal decommissioned.",
        "pmAuthority": "Moderate",
        "sponsor": "Sean Sponsor",
    }
    if pm_name is not None:
        form["pmName"] = pm_name
    form.update(extra)
    return form


def approval(decision: str = "Approve", signer: str = "Alex Assistant-Director", **extra) -> dict:
    form = {"approvalDecision": decision, "signature": signer}
    form.update(extra)
    return form


CM_OK = {"cmPlanConfirmed": True, "repositoryUrl": "https://git.example.org/pmo/customer-portal"}
SQA_OK = {"sqaUser": "sam.sqa"}
CONDITIONS = [
    {"text": "Security review before design approval", "owner": "lee.ops", "due": "2027-02-15"},
    {"text": "Monthly cost report to the committee", "owner": "pete.pm", "due": "2099-01-01"},
]

# ---------------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in scenario_helpers.py; the `people` fixture is in conftest.py)
# ---------------------------------------------------------------------------------------------------------


def start(people: People, data: dict, user: str = SPONSOR) -> int:
    result = people(user).start(PROCESS, data)
    assert (result["status"], result["error"]) == ("running", None)
    return result["instance_id"]


def to_approval(people: People, iid: int, pm_name: str | None = "pete.pm", sponsor: str = SPONSOR) -> None:
    """From a ready intake review to the first approval: accept, draft, assign SQA, confirm CM."""
    complete(people("sara.spm"), iid, "intake_review", intake())
    complete(people("pete.pm"), iid, "draft_charter", charter(pm_name, sponsor=sponsor))
    if pm_name is None:
        complete(people("sara.spm"), iid, "assign_pm", {"pmName": "paula.pm"})
    complete(people("quinn.qd"), iid, "assign_sqa", SQA_OK)
    complete(people("cora.cm"), iid, "confirm_cm_plan", CM_OK)


def one(history: list[dict], kind: str, task: str | None = None) -> dict:
    matches = [e for e in history if e["type"] == kind and (task is None or e["task"] == task)]
    assert len(matches) == 1, (kind, task, len(matches))
    return matches[0]


def snapshot(app: Pmoflow, instance_id: int) -> tuple[dict, list[dict]]:
    return app.show(instance_id), app.history(instance_id)


def services(history: list[dict]) -> list[str]:
    return [e["task"] for e in history if e["type"] == "service_called"]


# ---------------------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------------------


def test_authorised_by_a_single_approver(people):
    sean, sara, pete, paula = people(SPONSOR), people("sara.spm"), people("pete.pm"), people("paula.pm")
    quinn, cora, sam, alex, pat = (people(u) for u in ("quinn.qd", "cora.cm", "sam.sqa", "alex.apd",
                                                       "pat.director"))
    submitted = request(budget=500_000, risks=((2, 3), (3, 2)))
    iid = start(people, submitted)
    assert sean.show(iid)["started_by"] == SPONSOR

    # intake: the Senior Project Manager only
    assert inbox(sara, iid) == ["intake_review"]
    assert inbox(sean, iid) == inbox(pete, iid) == inbox(alex, iid) == []
    review = sara.task(task_for(sara, iid, "intake_review")["id"])
    assert review["lane"] == "Senior Project Manager" and review["candidates"] == ["Senior Project Manager"]
    assert review["form"] == "intake-review.schema.json" and review["schema"]["title"] == "Intake review"
    data = review["data"]
    assert data["requester"] == SPONSOR and data["lane_owners"] == {"Sponsor": [SPONSOR]}
    assert re.fullmatch(r"REQ-\d{8}-[0-9A-F]{6}", data["requestId"])
    assert (data["riskScore"], data["riskLevel"], data["requestWarnings"]) == (6, "Low", [])
    complete(sara, iid, "intake_review", intake())

    # draft: any Project Manager, not the Senior Project Manager
    assert inbox(pete, iid) == inbox(paula, iid) == ["draft_charter"]
    assert inbox(sara, iid) == []
    draft = pete.task(task_for(pete, iid, "draft_charter")["id"])["data"]
    assert 0 < len(draft["lessons"]) <= 5
    assert (draft["approver_roles"], draft["gateProfile"]) == (["Assistant Project Director"], "Standard")
    complete(pete, iid, "draft_charter", charter("pete.pm"))

    # the PM is named: SQA and CM in parallel, no PM assignment
    assert open_tasks(sara, iid) == [("assign_sqa", ["Quality Director"]),
                                     ("confirm_cm_plan", ["Configuration Manager"])]
    assert inbox(quinn, iid) == ["assign_sqa"] and inbox(cora, iid) == ["confirm_cm_plan"]
    assert inbox(sam, iid) == inbox(sara, iid) == inbox(pete, iid) == []
    complete(cora, iid, "confirm_cm_plan", CM_OK)
    assert sean.show(iid)["status"] == "running"
    complete(quinn, iid, "assign_sqa", SQA_OK)

    # approval: the Assistant Project Director chosen by the DMN, nobody else
    approve = task_for(alex, iid, "approve_charter")
    assert (approve["lane"], approve["candidates"], approve["candidate_kind"]) == (
        "Approver", ["Assistant Project Director"], "role")
    assert abs(after(approve["created_at"], 5) - after(approve["due"], 0)) < timedelta(minutes=1)  # P5D SLA
    assert inbox(pat, iid) == inbox(sara, iid) == inbox(sean, iid) == []
    result = alex.complete(approve["id"], approval())
    assert (result["status"], result["error"]) == ("completed", None)

    data = assert_completed(sean, iid, "Authorised")
    assert re.fullmatch(r"PRJ-\d{4}-[0-9A-F]{6}", data["projectId"])
    assert data["project"]["charterBaseline"] == "v1.0" and data["project"]["gatesPlanned"] == 3
    assert [(a["role"], a["decision"]) for a in data["approvals"]] == [("Assistant Project Director", "Approve")]
    assert (data["pmName"], data["sqaUser"], data["repositoryUrl"]) == ("pete.pm", "sam.sqa",
                                                                       CM_OK["repositoryUrl"])
    assert {SPONSOR, "pete.pm", "sam.sqa", "lee.ops"} <= set(data["authorisationNotice"]["recipientsUsers"])
    for user in (sean, sara, pete, paula, quinn, cora, alex):
        assert inbox(user, iid) == []
    shown = sean.show(iid)
    assert sorted((t["bpmn_id"], t["state"], t["completed_by"]) for t in shown["tasks"]) == [
        ("approve_charter", "completed", "alex.apd"),
        ("assign_sqa", "completed", "quinn.qd"),
        ("confirm_cm_plan", "completed", "cora.cm"),
        ("draft_charter", "completed", "pete.pm"),
        ("intake_review", "completed", "sara.spm"),
    ]

    history = sean.history(iid)
    found = assert_in_order(history, [
        ("instance_started", None),
        ("service_called", "register_request"),
        ("task_ready", "intake_review"),
        ("task_completed", "intake_review"),
        ("service_called", "search_lessons"),
        ("decision", "decide_approval"),
        ("task_ready", "draft_charter"),
        ("task_completed", "draft_charter"),
        ("task_ready", "assign_sqa"),
        ("task_completed", "confirm_cm_plan"),
        ("task_completed", "assign_sqa"),
        ("task_ready", "approve_charter"),
        ("task_completed", "approve_charter"),
        ("service_called", "create_project"),
        ("service_called", "notify_stakeholders"),
        ("instance_completed", None),
    ])
    started, registered, ready = found[0], found[1], found[2]
    assert (started["actor"], started["payload"]["data"]) == (SPONSOR, submitted)
    assert registered["payload"]["operator"] == "initiation.register_request"
    assert registered["payload"]["result"]["requestId"] == data["requestId"]
    assert ready["payload"]["candidates"] == ["role:Senior Project Manager"]
    completed = {e["task"]: e for e in history if e["type"] == "task_completed"}
    assert {task: (e["actor"], e["payload"]["data"]) for task, e in completed.items()} == {
        "intake_review": ("sara.spm", intake()),
        "draft_charter": ("pete.pm", charter("pete.pm")),
        "assign_sqa": ("quinn.qd", SQA_OK),
        "confirm_cm_plan": ("cora.cm", CM_OK),
        "approve_charter": ("alex.apd", approval()),
    }
    assert completed["approve_charter"]["payload"]["duty_checks"] == [
        {"rule": "performer differs from starter", "result": "passed"}]
    decision = one(history, "decision", "decide_approval")
    assert "CharterApproval" in decision["payload"]["decision"]
    assert decision["payload"]["hit_policy"] == "FIRST"
    assert decision["payload"]["inputs"] == {"Estimated budget": 500_000, "Risk level": "Low",
                                             "Contract type": "internal"}
    assert decision["payload"]["outputs"] == {"approver_roles": ["Assistant Project Director"],
                                              "sequential": False, "gateProfile": "Standard",
                                              "pmGrade": "Project Manager"}
    # hit policy FIRST: only the row that fired, not Rule_default which matches too
    assert [r["id"] for r in decision["payload"]["matched_rules"]] == ["Rule_200k_low_med"]
    assert services(history) == ["register_request", "search_lessons", "create_project", "notify_stakeholders"]
    assert not {"timer_fired", "task_cancelled", "duty_refused", "error"} & {e["type"] for e in history}


def test_authorised_with_conditions(people):
    iid = start(people, request())
    to_approval(people, iid)
    alex = people("alex.apd")
    complete(alex, iid, "approve_charter", approval("Approve-with-conditions", conditions=CONDITIONS))

    data = assert_completed(alex, iid, "Authorised-with-conditions")
    assert data["approvalConditions"] == CONDITIONS
    tracked = data["project"]["conditions"]
    assert [(c["text"], c["owner"], c["due"], c["trackedTo"], c["status"]) for c in tracked] == [
        (c["text"], c["owner"], c["due"], "Gate 1", "open") for c in CONDITIONS]
    gate1 = data["project"]["gate1Due"]  # Gate 1 is planned from the day of authorisation
    assert [c["dueAfterGate1"] for c in tracked] == [c["due"] > gate1 for c in CONDITIONS]
    assert tracked[1]["dueAfterGate1"] is True
    history = alex.history(iid)
    approved = one(history, "task_completed", "approve_charter")
    assert approved["payload"]["data"]["conditions"] == CONDITIONS
    assert_in_order(history, [("task_completed", "approve_charter"), ("service_called", "create_project"),
                              ("service_called", "notify_stakeholders"), ("instance_completed", None)])
    assert data["authorisationNotice"]["subject"].endswith("charter authorised-with-conditions")


def test_rejected_at_intake(people):
    sara = people("sara.spm")
    iid = start(people, request())
    complete(sara, iid, "intake_review", intake("Reject", comment="Duplicates the CRM programme."))

    data = assert_completed(sara, iid, "Rejected")
    assert data["outcomeReason"] == "Rejected at intake review: Duplicates the CRM programme."
    for user in (SPONSOR, "sara.spm", "pete.pm", "alex.apd"):
        assert inbox(people(user), iid) == []
    history = sara.history(iid)
    assert_in_order(history, [("instance_started", None), ("task_ready", "intake_review"),
                              ("task_completed", "intake_review"), ("instance_completed", None)])
    assert services(history) == ["register_request"]
    assert [e for e in history if e["type"] in ("decision", "timer_fired")] == []


@pytest.mark.parametrize("budget,approver,signer", [
    (500_000, "alex.apd", "Alex Assistant-Director"),
    (6_000_000, "pat.director", "Pat Director"),  # the first of two: the Steering Committee never sees it
], ids=["single-approver", "first-of-two"])
def test_rejected_by_the_approver(people, budget, approver, signer):
    iid = start(people, request(budget=budget))
    to_approval(people, iid)
    app = people(approver)
    complete(app, iid, "approve_charter",
             approval("Reject", signer=signer, rationale="Not aligned with this year's strategy."))

    data = assert_completed(app, iid, "Rejected")
    assert data["outcomeReason"].endswith(": Not aligned with this year's strategy.")
    assert len(data["approvals"]) == 1 and "projectId" not in data
    assert inbox(people("steve.steering"), iid) == []
    history = app.history(iid)
    assert [e["task"] for e in history if e["type"] == "task_ready"].count("approve_charter") == 1
    assert services(history) == ["register_request", "search_lessons"]
    assert_in_order(history, [("task_completed", "approve_charter"), ("instance_completed", None)])


def test_request_not_revised_in_10_days_is_withdrawn_by_the_timer(people):
    sean, sue, sara = people(SPONSOR), people("sue.sponsor"), people("sara.spm")
    iid = start(people, request())
    complete(sara, iid, "intake_review", intake("Return", comment="Please add a business case."))

    # the revision goes back to the requester only, not to every Sponsor
    revise = task_for(sean, iid, "revise_request")
    assert (revise["lane"], revise["candidates"], revise["candidate_kind"]) == ("Sponsor", [SPONSOR], "user")
    assert inbox(sue, iid) == inbox(sara, iid) == []
    assert sean.task(revise["id"])["data"]["intakeComment"] == "Please add a business case."
    assert abs(after(revise["created_at"], 10) - after(revise["due"], 0)) < timedelta(minutes=1)
    assert sean.show(iid)["next_due"] == revise["due"]

    assert sara.acting_as("pmo.admin").run_due(after(revise["due"], -1))["fired"] == []  # day 9: nothing yet
    assert inbox(sean, iid) == ["revise_request"]
    fired = sara.acting_as("pmo.admin").run_due(after(revise["due"], 1))
    assert (fired["fired"], fired["errors"]) == ([iid], [])

    data = assert_completed(sean, iid, "Withdrawn")
    assert data["outcomeReason"] == "The Sponsor did not revise the request within 10 days of its return."
    assert [(t["bpmn_id"], t["state"]) for t in sean.show(iid)["tasks"]] == [
        ("intake_review", "completed"), ("revise_request", "cancelled")]
    assert inbox(sean, iid) == []
    history = sean.history(iid)
    timer, cancelled, _ = assert_in_order(history, [
        ("timer_fired", "tmr_revision_timeout"), ("task_cancelled", "revise_request"), ("instance_completed", None)])
    assert timer["actor"] == cancelled["actor"] == "worker"
    assert timer["payload"]["due"] is not None
    with pytest.raises(Conflict):  # too late now
        sean.complete(revise["id"], request())
    # a completed instance has no timers
    assert sara.acting_as("pmo.admin").run_due(after(revise["due"], 30))["fired"] == []


def test_intake_return_then_revision_then_accept(people):
    sean, sara = people(SPONSOR), people("sara.spm")
    first = request(milestones=[{"name": "Kick-off", "date": "2026-12-01"}])
    iid = start(people, first)
    review = sara.task(task_for(sara, iid, "intake_review")["id"])["data"]
    assert review["requestWarnings"] == ["Milestone 'Kick-off' (2026-12-01) is outside the target dates."]
    request_id = review["requestId"]
    complete(sara, iid, "intake_review", intake("Return", comment="Fix the milestone; add the security risk."))

    assert inbox(sean, iid) == ["revise_request"] and inbox(sara, iid) == []
    revise = sean.task(task_for(sean, iid, "revise_request")["id"])
    assert revise["form"] == "project-request.schema.json"
    assert revise["data"]["intakeComment"] == "Fix the milestone; add the security risk."
    revised = request(risks=((2, 3), (3, 4)), milestones=[{"name": "Kick-off", "date": "2027-01-11"}])
    complete(sean, iid, "revise_request", revised)

    assert inbox(sean, iid) == [] and inbox(sara, iid) == ["intake_review"]
    again = sara.task(task_for(sara, iid, "intake_review")["id"])["data"]
    assert (again["intakeRound"], again["riskScore"], again["riskLevel"]) == (2, 12, "Med")
    assert again["requestWarnings"] == [] and again["requestId"] == request_id
    to_approval(people, iid)
    complete(people("alex.apd"), iid, "approve_charter", approval())

    data = assert_completed(sean, iid, "Authorised")
    assert (data["requestId"], data["intakeRound"], data["risks"]) == (request_id, 2, revised["risks"])
    history = sean.history(iid)
    first_done, revised_done, second_done = assert_in_order(history, [
        ("task_completed", "intake_review"),
        ("task_completed", "revise_request"),
        ("task_completed", "intake_review"),
    ])
    assert first_done["payload"]["data"]["intakeDecision"] == "Return"
    assert (revised_done["actor"], revised_done["payload"]["data"]) == (SPONSOR, revised)
    assert second_done["payload"]["data"]["intakeDecision"] == "Accept"
    assert [e["task"] for e in history if e["type"] == "task_ready"].count("intake_review") == 2
    # each gateway event names the branch taken, also into a task with a boundary timer (the revision)
    assert [e["payload"]["taken"] for e in history if e["task"] == "gw_intake_decision"] == [
        ["Revise project request"], ["Search lessons learned"]]
    assert services(history).count("register_request") == 1
    assert "timer_fired" not in {e["type"] for e in history}  # the revision was in time


def test_approver_returns_the_charter_then_redraft_then_approve(people):
    pete, paula, alex = people("pete.pm"), people("paula.pm"), people("alex.apd")
    iid = start(people, request())
    to_approval(people, iid)
    complete(alex, iid, "approve_charter", approval("Return", rationale="Deliverables are too vague."))

    # the named project manager revises; the other PM and the approver do not see it
    revise = task_for(pete, iid, "revise_charter")
    assert (revise["lane"], revise["candidates"], revise["candidate_kind"]) == (
        "Project Manager", ["pete.pm"], "user")
    assert inbox(paula, iid) == inbox(alex, iid) == []
    data = pete.task(revise["id"])["data"]
    assert data["charterReturns"] == 1 and data["approvals"][-1]["rationale"] == "Deliverables are too vague."
    assert data["deliverables"] == charter()["deliverables"]  # starts from the last draft
    assert pete.show(iid)["status"] == "running"

    redraft = charter("pete.pm", deliverables=["Portal", "Migration report"])
    complete(pete, iid, "revise_charter", redraft)
    assert inbox(pete, iid) == [] and inbox(alex, iid) == ["approve_charter"]
    complete(alex, iid, "approve_charter", approval())

    data = assert_completed(alex, iid, "Authorised")
    assert (data["charterReturns"], data["deliverables"]) == (1, ["Portal", "Migration report"])
    assert [a["decision"] for a in data["approvals"]] == ["Approve"]  # the queue restarted after the return
    history = alex.history(iid)
    returned, redrafted, approved = assert_in_order(history, [
        ("task_completed", "approve_charter"),
        ("task_completed", "revise_charter"),
        ("task_completed", "approve_charter"),
        ("instance_completed", None),
    ])[:3]
    assert returned["payload"]["data"]["approvalDecision"] == "Return"
    assert [e["payload"]["taken"] for e in history if e["task"] == "gw_approved"] == [
        ["Reopen charter for rework"], ["All approvers signed?"]]
    assert (redrafted["actor"], redrafted["payload"]["data"]) == ("pete.pm", redraft)
    assert approved["payload"]["data"] == approval()
    # the preparation (SQA, CM) does not run again
    assert [e["task"] for e in history if e["type"] == "task_ready"].count("assign_sqa") == 1


def test_sequential_approvals_project_director_then_steering_committee(people):
    pat, steve, alex = people("pat.director"), people("steve.steering"), people("alex.apd")
    iid = start(people, request(budget=6_000_000))
    to_approval(people, iid)

    first = task_for(pat, iid, "approve_charter")
    assert first["candidates"] == ["Project Director"]
    assert inbox(steve, iid) == inbox(alex, iid) == []
    assert pat.task(first["id"])["data"]["approvalQueue"] == PD_STEERING
    complete(pat, iid, "approve_charter", approval(signer="Pat Director"))

    second = task_for(steve, iid, "approve_charter")
    assert second["candidates"] == ["Steering Committee"] and second["id"] != first["id"]
    assert inbox(pat, iid) == []
    form = steve.task(second["id"])["data"]
    assert (form["approvalDecision"], form["signature"], form["conditions"]) == ("", "", [])  # starts empty
    assert steve.show(iid)["status"] == "running"
    complete(steve, iid, "approve_charter", approval(signer="Steve Steering"))

    data = assert_completed(steve, iid, "Authorised")
    assert [(a["role"], a["signature"]) for a in data["approvals"]] == [
        ("Project Director", "Pat Director"), ("Steering Committee", "Steve Steering")]
    assert (data["gateProfile"], data["project"]["gatesPlanned"], data["sequential"]) == ("Full", 5, True)
    history = steve.history(iid)
    decision = one(history, "decision", "decide_approval")
    assert decision["payload"]["outputs"]["approver_roles"] == PD_STEERING
    assert [r["id"] for r in decision["payload"]["matched_rules"]] == ["Rule_budget_5M"]
    ready_pd, done_pd, ready_sc, done_sc = assert_in_order(history, [
        ("task_ready", "approve_charter"), ("task_completed", "approve_charter"),
        ("task_ready", "approve_charter"), ("task_completed", "approve_charter")])
    assert ready_pd["payload"]["candidates"] == ["role:Project Director"]
    assert ready_sc["payload"]["candidates"] == ["role:Steering Committee"]
    assert (done_pd["actor"], done_sc["actor"]) == ("pat.director", "steve.steering")


def test_no_pm_named_the_senior_pm_assigns_one(people):
    sara, quinn, cora, pete = people("sara.spm"), people("quinn.qd"), people("cora.cm"), people("pete.pm")
    iid = start(people, request())
    complete(sara, iid, "intake_review", intake())
    complete(pete, iid, "draft_charter", charter(pm_name=None))

    # the SQA is assigned after the PM: only the PM assignment and the CM confirmation are open
    assert open_tasks(sara, iid) == [("assign_pm", ["Senior Project Manager"]),
                                     ("confirm_cm_plan", ["Configuration Manager"])]
    assert inbox(sara, iid) == ["assign_pm"] and inbox(quinn, iid) == [] and inbox(pete, iid) == []
    assign = sara.task(task_for(sara, iid, "assign_pm")["id"])
    assert assign["form"] == "pm-assignment.schema.json" and "Staffing" in assign["instructions"]
    complete(cora, iid, "confirm_cm_plan", CM_OK)
    complete(sara, iid, "assign_pm", {"pmName": "paula.pm"})
    complete(quinn, iid, "assign_sqa", {"sqaUser": "paula.pm"})  # the new PM cannot be the SQA
    assert "the project manager" in quinn.task(task_for(quinn, iid, "assign_sqa")["id"])["data"][
        "sqaValidationError"]
    complete(quinn, iid, "assign_sqa", SQA_OK)
    complete(people("alex.apd"), iid, "approve_charter", approval())

    data = assert_completed(sara, iid, "Authorised")
    assert (data["pmName"], data["sqaUser"]) == ("paula.pm", "sam.sqa")
    assert "paula.pm" in data["authorisationNotice"]["recipientsUsers"]
    history = sara.history(iid)
    assigned = one(history, "task_completed", "assign_pm")
    assert (assigned["actor"], assigned["payload"]["data"]) == ("sara.spm", {"pmName": "paula.pm"})
    assert_in_order(history, [("task_completed", "draft_charter"), ("task_ready", "assign_pm"),
                              ("task_completed", "assign_pm"), ("task_ready", "assign_sqa")])


def test_sqa_validation_loop_until_an_independent_sqa(people):
    quinn = people("quinn.qd")
    iid = start(people, request())
    complete(people("sara.spm"), iid, "intake_review", intake())
    complete(people("pete.pm"), iid, "draft_charter", charter("pete.pm"))
    complete(people("cora.cm"), iid, "confirm_cm_plan",
             {"cmPlanConfirmed": False, "cmNotes": "Standard plan to be tailored"})

    refused = [("kim.dev", "a stakeholder (Lead developer)"), (SPONSOR, "the requester"),
               ("pete.pm", "the project manager")]
    for user, reason in refused:
        previous = task_for(quinn, iid, "assign_sqa")["id"]
        complete(quinn, iid, "assign_sqa", {"sqaUser": user})
        again = task_for(quinn, iid, "assign_sqa")  # a new task: the loop came back
        assert again["id"] != previous
        error = quinn.task(again["id"])["data"]["sqaValidationError"]
        assert error.startswith(f"{user} cannot be the SQA") and reason in error
        assert inbox(people("alex.apd"), iid) == []  # no approval before an independent SQA
    complete(quinn, iid, "assign_sqa", SQA_OK)
    assert inbox(quinn, iid) == []
    approve = people("alex.apd").task(task_for(people("alex.apd"), iid, "approve_charter")["id"])
    assert approve["data"]["sqaValidationError"] == ""
    complete(people("alex.apd"), iid, "approve_charter", approval())

    data = assert_completed(quinn, iid, "Authorised")
    assert (data["sqaUser"], data["cmPlanConfirmed"], data["cmNotes"]) == (
        "sam.sqa", False, "Standard plan to be tailored")
    history = quinn.history(iid)
    assert [e["payload"]["data"]["sqaUser"] for e in history
            if e["type"] == "task_completed" and e["task"] == "assign_sqa"] == [
        "kim.dev", SPONSOR, "pete.pm", "sam.sqa"]
    assert [e["task"] for e in history if e["type"] == "task_ready"].count("assign_sqa") == 4


# ---------------------------------------------------------------------------------------------------------
# Timers on the approval
# ---------------------------------------------------------------------------------------------------------


def test_reminder_after_5_days_keeps_the_same_approval_open(people):
    alex, sara = people("alex.apd"), people("sara.spm")
    iid = start(people, request())
    to_approval(people, iid)
    approve = task_for(alex, iid, "approve_charter")
    assert alex.show(iid)["next_due"] == approve["due"]

    assert sara.acting_as("pmo.admin").run_due(after(approve["due"], -0.5))["fired"] == []  # day 4.5
    fired = sara.acting_as("pmo.admin").run_due(after(approve["created_at"], 6))
    assert (fired["fired"], fired["errors"]) == ([iid], [])

    # non-interrupting: the very same task stays open for the same approver
    assert task_for(alex, iid, "approve_charter")["id"] == approve["id"]
    assert open_tasks(alex, iid) == [("approve_charter", ["Assistant Project Director"])]
    shown = alex.show(iid)
    assert shown["status"] == "running"
    # the escalation is still to come, 10 days after the task became ready
    assert abs(after(shown["next_due"], 0) - after(approve["created_at"], 10)) < timedelta(minutes=1)
    history = alex.history(iid)
    timer, reminder = assert_in_order(history, [("timer_fired", "tmr_approval_reminder"),
                                                ("service_called", "send_reminder")])
    assert timer["actor"] == "worker"
    notice = reminder["payload"]["result"]
    assert reminder["payload"]["result_variable"] == "approvalReminder"
    assert notice["recipientsRole"] == ["Assistant Project Director"] and notice["task"] == "approve_charter"
    request_id = alex.task(approve["id"])["data"]["requestId"]
    assert request_id in notice["subject"]
    assert "task_cancelled" not in {e["type"] for e in history}
    assert sara.acting_as("pmo.admin").run_due(after(approve["created_at"], 7))["fired"] == []  # it fires once

    complete(alex, iid, "approve_charter", approval())
    data = assert_completed(alex, iid, "Authorised")
    assert data["approvalReminder"]["notificationId"] == notice["notificationId"]
    assert data["escalations"] == 0


def test_escalation_after_10_days_climbs_to_the_next_role_each_time(people):
    sara = people("sara.spm")
    # small, low risk, internal: the Senior Project Manager approves (DMN row Rule_small_internal)
    iid = start(people, request(budget=150_000, risks=((1, 2),)))
    to_approval(people, iid)
    current = task_for(sara, iid, "approve_charter")
    assert current["candidates"] == ["Senior Project Manager"]
    assert inbox(people("alex.apd"), iid) == []
    now = after(current["created_at"], 0)

    ladder = [("alex.apd", "Assistant Project Director"), ("pat.director", "Project Director"),
              ("steve.steering", "Steering Committee")]
    previous_user = "sara.spm"
    for level, (user, role) in enumerate(ladder, start=1):
        now = now + timedelta(days=11)
        fired = sara.acting_as("pmo.admin").run_due(now)
        assert fired == {"now": now.isoformat(), "fired": [iid], "errors": [], "started": []}
        app = people(user)
        escalated = task_for(app, iid, "approve_charter")
        assert escalated["id"] != current["id"]
        assert (escalated["candidates"], escalated["candidate_kind"], escalated["lane"]) == (
            [role], "role", "Approver")
        assert inbox(people(previous_user), iid) == []
        assert open_tasks(app, iid) == [("approve_charter", [role])]
        states = {t["id"]: t["state"] for t in app.show(iid)["tasks"]}
        assert states[current["id"]] == "cancelled"
        with pytest.raises(Conflict):  # the old approver is too late
            people(previous_user).complete(current["id"], approval())
        data = app.task(escalated["id"])["data"]
        assert data["escalations"] == level and data["lane_roles"] == {"Approver": [role]}
        fired = [e for e in app.history(iid) if e["task"] == "tmr_approval_escalation"][-1]
        assert fired["actor"] == "worker" and after(fired["payload"]["due"], 0) <= now
        # a new P5D SLA, counted from when the escalation came due
        assert abs(after(escalated["due"], 0) - after(fired["payload"]["due"], 5)) < timedelta(minutes=1)
        current, previous_user = escalated, user

    complete(people("steve.steering"), iid, "approve_charter", approval(signer="Steve Steering"))
    data = assert_completed(sara, iid, "Authorised")
    assert [a["role"] for a in data["approvals"]] == ["Steering Committee"]
    assert data["approver_roles"] == ["Senior Project Manager"]  # the DMN decision stays on record
    assert data["escalations"] == 3
    history = sara.history(iid)
    expected = [("task_ready", "approve_charter")]
    for _ in ladder:
        expected += [("timer_fired", "tmr_approval_escalation"), ("task_cancelled", "approve_charter"),
                     ("task_ready", "approve_charter")]
    found = assert_in_order(history, expected + [("task_completed", "approve_charter"),
                                                 ("instance_completed", None)])
    readies = [e["payload"]["candidates"] for e in found if e["type"] == "task_ready"]
    assert readies == [["role:Senior Project Manager"]] + [[f"role:{role}"] for _, role in ladder]
    assert all(e["actor"] == "worker" for e in found if e["type"] in ("timer_fired", "task_cancelled"))


# ---------------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------------


def test_the_starter_cannot_approve_their_own_request(people):
    """pat.director is a Sponsor and the only Project Director: their 2 M request needs a PD's approval."""
    pat, sara = people("pat.director"), people("sara.spm")
    iid = start(people, request(budget=2_000_000, sponsor="pat.director"), user="pat.director")
    to_approval(people, iid, sponsor="pat.director")
    approve = sara.show(iid)["tasks"][-1]
    assert (approve["bpmn_id"], approve["candidates"], approve["state"]) == (
        "approve_charter", ["Project Director"], "ready")
    before_show, before_history = snapshot(sara, iid)

    with pytest.raises(PermissionDenied, match="segregation of duties") as refused:
        pat.complete(approve["id"], approval(signer="Pat Director"))
    assert "started this instance" in refused.value.message

    after_show, after_history = snapshot(sara, iid)
    assert after_history[:-1] == before_history  # only the refusal was added
    refusal = after_history[-1]
    assert (refusal["type"], refusal["actor"], refusal["task"]) == ("duty_refused", "pat.director",
                                                                   "approve_charter")
    assert refusal["payload"]["rule"] == "performer differs from starter"
    assert refusal["payload"]["task_id"] == approve["id"]
    assert after_show["tasks"] == before_show["tasks"]  # still open, nobody assigned
    assert (after_show["status"], after_show["data"]) == (before_show["status"], before_show["data"])

    # nor may they claim it (and so block it for any other Project Director)
    with pytest.raises(PermissionDenied, match="segregation of duties"):
        pat.claim(approve["id"])
    assert sara.show(iid)["tasks"][-1]["assignee"] is None
    assert [e["type"] for e in sara.history(iid)][-2:] == ["duty_refused", "duty_refused"]

    # nobody else holds the role: after 10 days the approval climbs to the Steering Committee
    assert sara.acting_as("pmo.admin").run_due(after(approve["created_at"], 11))["fired"] == [iid]
    steve = people("steve.steering")
    complete(steve, iid, "approve_charter", approval(signer="Steve Steering"))
    data = assert_completed(sara, iid, "Authorised")
    assert [a["role"] for a in data["approvals"]] == ["Steering Committee"]
    assert one(sara.history(iid), "task_completed", "approve_charter")["actor"] == "steve.steering"


def test_a_wrong_role_completion_is_refused_and_changes_nothing(people):
    sara = people("sara.spm")
    iid = start(people, request())
    review = task_for(sara, iid, "intake_review")
    before = snapshot(sara, iid)
    for user in ("pete.pm", SPONSOR, "alex.apd"):
        with pytest.raises(PermissionDenied, match="Senior Project Manager"):
            people(user).complete(review["id"], intake())
    with pytest.raises(PermissionDenied, match="unknown user"):
        people("mallory").complete(review["id"], intake())
    assert snapshot(sara, iid) == before

    complete(sara, iid, "intake_review", intake())  # the right person still can
    assert inbox(people("pete.pm"), iid) == ["draft_charter"]


def test_invalid_form_data_lists_every_field_error_and_changes_nothing(people):
    sara, sean = people("sara.spm"), people(SPONSOR)
    bad_request = request(title="abc", estBudget=2_000_000, risks=((6, 1),), targetEnd="31/12/2027")
    with pytest.raises(InvalidInput) as refused:
        sean.start(PROCESS, bad_request)
    assert sorted(d.split(":")[0] for d in refused.value.details) == [
        "businessCase", "risks[0].probability", "targetEnd", "title"]
    assert sara.instances() == []

    iid = start(people, request())
    review = task_for(sara, iid, "intake_review")
    before = snapshot(sara, iid)
    bad = {"intakeDecision": "Return", "projectType": "Gardening", "hasClearScope": "yes"}
    with pytest.raises(InvalidInput) as refused:
        sara.complete(review["id"], bad)
    fields = sorted(d.split(":")[0] for d in refused.value.details)
    assert fields == sorted([
        "hasMeasurableObjectives", "hasRealisticSchedule", "hasBudgetJustification", "hasRiskAssessment",
        "hasStakeholders", "lifecycle", "intakeComment",  # missing (the comment: required for Return)
        "hasClearScope", "projectType",  # wrong type, not in the list
    ])
    assert "9 error" in refused.value.message
    with pytest.raises(InvalidInput) as refused:  # a blank comment is no comment
        sara.complete(review["id"], intake("Reject", comment="   "))
    assert [d.split(":")[0] for d in refused.value.details] == ["intakeComment"]
    with pytest.raises(InvalidInput):
        sara.complete(review["id"], ["not", "an", "object"])
    assert snapshot(sara, iid) == before
    assert task_for(sara, iid, "intake_review")["assignee"] is None


def test_completing_a_completed_task_is_a_conflict(people):
    sara = people("sara.spm")
    iid = start(people, request())
    review = task_for(sara, iid, "intake_review")
    sara.complete(review["id"], intake())
    before = snapshot(sara, iid)
    with pytest.raises(Conflict, match="already completed"):
        sara.complete(review["id"], intake("Reject", comment="Changed my mind."))
    with pytest.raises(Conflict):
        sara.claim(review["id"])
    assert snapshot(sara, iid) == before
    with pytest.raises(NotFound):
        sara.complete(999_999, intake())


def test_a_task_claimed_by_one_user_cannot_be_completed_by_another(people):
    pete, paula = people("pete.pm"), people("paula.pm")
    iid = start(people, request())
    complete(people("sara.spm"), iid, "intake_review", intake())
    draft = task_for(pete, iid, "draft_charter")
    claimed = pete.claim(draft["id"])
    assert claimed["assignee"] == "pete.pm"
    assert inbox(paula, iid) == [] and inbox(pete, iid) == ["draft_charter"]

    before = snapshot(pete, iid)
    with pytest.raises(Conflict, match="claimed by pete.pm"):
        paula.complete(draft["id"], charter("paula.pm"))
    with pytest.raises(Conflict):
        paula.claim(draft["id"])
    with pytest.raises(Conflict):
        paula.unclaim(draft["id"])
    assert snapshot(pete, iid) == before

    complete(pete, iid, "draft_charter", charter("pete.pm"))
    history = pete.history(iid)
    claim_event, done = assert_in_order(history, [("task_claimed", "draft_charter"),
                                                  ("task_completed", "draft_charter")])
    assert claim_event["actor"] == done["actor"] == "pete.pm"


def test_delegation_only_to_another_candidate(people):
    pete, paula, sara = people("pete.pm"), people("paula.pm"), people("sara.spm")
    iid = start(people, request())
    complete(sara, iid, "intake_review", intake())
    draft = task_for(pete, iid, "draft_charter")
    before = snapshot(pete, iid)
    for target in ("sara.spm", SPONSOR):  # not Project Managers
        with pytest.raises(PermissionDenied, match="not a candidate"):
            pete.delegate(draft["id"], target)
    with pytest.raises(NotFound):
        pete.delegate(draft["id"], "nobody.here")
    with pytest.raises(PermissionDenied):  # only a candidate may hand the task on
        sara.delegate(draft["id"], "paula.pm")
    assert snapshot(pete, iid) == before

    delegated = pete.delegate(draft["id"], "paula.pm")
    assert delegated["assignee"] == "paula.pm"
    assert inbox(pete, iid) == [] and inbox(paula, iid) == ["draft_charter"]
    with pytest.raises(Conflict):
        pete.complete(draft["id"], charter("pete.pm"))
    complete(paula, iid, "draft_charter", charter("paula.pm"))
    event = one(paula.history(iid), "task_delegated", "draft_charter")
    assert (event["actor"], event["payload"]["from_user"], event["payload"]["to_user"]) == (
        "pete.pm", "pete.pm", "paula.pm")
    assert one(paula.history(iid), "task_completed", "draft_charter")["actor"] == "paula.pm"


# ---------------------------------------------------------------------------------------------------------
# Regressions: engine bugs these scenarios found (fixed in e484e17)
# ---------------------------------------------------------------------------------------------------------


def test_a_late_worker_fires_the_reminder_before_the_escalation(people):
    """No worker ran from day 0 to day 11: the reminder (due day 5) goes out before the escalation (due day
    10) cancels the task, and the escalated approver's SLA counts from when the escalation came due."""
    sara = people("sara.spm")
    iid = start(people, request())
    to_approval(people, iid)
    approve = task_for(people("alex.apd"), iid, "approve_charter")
    assert sara.acting_as("pmo.admin").run_due(after(approve["created_at"], 11))["fired"] == [iid]

    history = sara.history(iid)
    reminder_timer, reminder, escalation, cancelled, escalated = assert_in_order(history, [
        ("timer_fired", "tmr_approval_reminder"),
        ("service_called", "send_reminder"),
        ("timer_fired", "tmr_approval_escalation"),
        ("task_cancelled", "approve_charter"),
        ("task_ready", "approve_charter"),
    ])
    assert reminder_timer["payload"]["due"] < escalation["payload"]["due"]
    assert reminder["payload"]["result"]["recipientsRole"] == ["Assistant Project Director"]  # who was late
    assert escalated["payload"]["candidates"] == ["role:Project Director"]
    new = task_for(people("pat.director"), iid, "approve_charter")
    assert abs(after(new["due"], 0) - after(escalation["payload"]["due"], 5)) < timedelta(minutes=1)
    assert [e["type"] for e in history].count("timer_fired") == 2


def test_a_form_cannot_set_keys_it_does_not_declare(people):
    """Submitted data may not carry the keys a process routes with: a request routing its own intake
    review, a draft making its author the approver, a first approver dropping the Steering Committee."""
    sean, sara, pete, pat = people(SPONSOR), people("sara.spm"), people("pete.pm"), people("pat.director")
    with pytest.raises(InvalidInput, match="does not ask for: lane_roles"):
        sean.start(PROCESS, {**request(budget=6_000_000), "lane_roles": {"Senior Project Manager": ["Sponsor"]}})
    assert sara.instances() == []

    iid = start(people, request(budget=6_000_000))
    complete(sara, iid, "intake_review", intake())
    draft = task_for(pete, iid, "draft_charter")
    before = snapshot(sara, iid)
    with pytest.raises(InvalidInput, match="does not ask for: lane_owners"):
        pete.complete(draft["id"], {**charter("pete.pm"), "lane_owners": {"Approver": ["pete.pm"]}})
    assert snapshot(sara, iid) == before
    complete(pete, iid, "draft_charter", charter("pete.pm"))
    complete(people("quinn.qd"), iid, "assign_sqa", SQA_OK)
    complete(people("cora.cm"), iid, "confirm_cm_plan", CM_OK)
    assert open_tasks(sara, iid) == [("approve_charter", ["Project Director"])]

    approve = task_for(pat, iid, "approve_charter")
    before = snapshot(sara, iid)
    with pytest.raises(InvalidInput, match="does not ask for: approvalQueue"):
        pat.complete(approve["id"], {**approval(signer="Pat Director"), "approvalQueue": ["Project Director"]})
    assert snapshot(sara, iid) == before
    complete(pat, iid, "approve_charter", approval(signer="Pat Director"))
    assert inbox(people("steve.steering"), iid) == ["approve_charter"]  # the committee still signs


def test_two_databases_in_one_process_do_not_mix_their_instances(people, tmp_path):
    """The engine keeps loaded workflows between commands: an instance of another database with the same id
    and lock version must not be taken for this one."""
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other_admin, other_sponsor = Pmoflow(other_url, user="sara.spm"), Pmoflow(other_url, user=SPONSOR)
    try:
        other_admin.init()
        iid = start(people, request(title="Portal in this database"))
        other_iid = other_sponsor.start(PROCESS, request(title="Warehouse in the other database"))["instance_id"]
        assert other_iid == iid  # both databases are new: the same instance id
        sara = people("sara.spm")
        assert sara.show(iid)["data"]["title"] == "Portal in this database"
        review = task_for(sara, iid, "intake_review")
        assert sara.task(review["id"])["data"]["title"] == "Portal in this database"
        complete(sara, iid, "intake_review", intake())
        assert other_admin.show(other_iid)["data"]["title"] == "Warehouse in the other database"
        assert inbox(other_admin, other_iid) == ["intake_review"]
    finally:
        other_admin.close()
        other_sponsor.close()


# ---------------------------------------------------------------------------------------------------------
# Open engine bugs (strict xfail: each passes once the bug is fixed)
# ---------------------------------------------------------------------------------------------------------


def test_only_a_sponsor_may_submit_a_project_request(people):
    alex, sara = people("alex.apd"), people("sara.spm")
    with pytest.raises(PermissionDenied, match="Sponsor"):
        alex.start(PROCESS, request(sponsor="alex.apd"))
    assert sara.instances() == []
