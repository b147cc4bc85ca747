"""The process improvement proposal (#9, CMMI OPF) run by the pmoflow engine, through the Python API, on a real
database.

Every test starts from the bundled demo organisation and process library (the ``demo_pmo`` fixture) and acts as
the demo users who would do each step: any staff member submits (pete.pm here), or another process sends
``improvement_proposed`` (sent from outside here, as an auditor's, a quality director's or a knowledge manager's
action would); the SEPG (eve.sepg) triages, evaluates and plans; the approver chosen by PIPApproval (eve.sepg as
SEPG lead or board, pat.director) decides, the Quality Director (quinn.qd) countersigns ISO-controlled changes;
the process owner (olga.owner) pilots and updates the assets; the tool developer (tess.tools), the training
coordinator (tom.trainer) and the knowledge manager (kim.km) deploy. Timers are fired with ``run_due(now)``.
Each test runs on SQLite and, when PMOFLOW_TEST_PG_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from scenario_helpers import after, complete, inbox, open_tasks, task_data, task_for

from conftest import People
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PermissionDenied
from pmoflow.workflows import pip

PROCESS = "process_improvement"
SEPG, PD, QD, OWNER = "eve.sepg", "pat.director", "quinn.qd", "olga.owner"
TC, TDT, KM, PM, AUDITOR = "tom.trainer", "tess.tools", "kim.km", "pete.pm", "ian.auditor"
HERE = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------------------
# Form data (valid unless a test changes it)
# ---------------------------------------------------------------------------------------------------------


def proposal(**over) -> dict:
    data = {"title": "Shorter weekly status report",
            "problem": "The weekly status report template asks for the same figures three times.",
            "proposal": "Remove the duplicated tables from TPL-02 and fill SPI/CPI from the dashboard.",
            "processArea": "Project management", "affectedAssets": ["TPL-02 Status report template"],
            "expectedBenefit": "Effort", "expectedGainPct": 30, "effortEstimatePD": 3, "urgency": "Normal",
            "isoControlled": False, "toolChange": False}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def message_payload(**over) -> dict:
    data = {"source": "OFI", "reference": "AUD-2027-03/F-4", "title": "Automate the SPI/CPI figures",
            "problem": "Project managers copy SPI and CPI by hand; the audit found errors in 3 of 10 reports.",
            "proposal": "Let the metrics dashboard fill the status report's SPI/CPI fields.",
            "processArea": "Measurement and analysis", "submitter": OWNER}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


DETAILS = {"affectedAssets": ["TPL-02 Status report template", "TOOL-02 Metrics dashboard"],
           "expectedBenefit": "Quality", "expectedGainPct": 50, "effortEstimatePD": 20, "urgency": "High",
           "evidence": "AUD-2027-03 finding F-4", "isoControlled": False, "toolChange": True}
ACCEPT = {"triageDecision": "Accept"}
EVAL_DOC = {"effortPD": 3, "benefitScore": 3, "riskScore": 1, "changeType": "doc-only",
            "evaluationSummary": "Two tables go; no change to how projects work."}
EVAL_PROCESS = {"effortPD": 10, "benefitScore": 4, "riskScore": 2, "changeType": "process",
                "evaluationSummary": "Every release gets a withdrawal step; projects sign it off."}
EVAL_TOOL = {"effortPD": 20, "benefitScore": 4, "riskScore": 2, "changeType": "tool",
             "evaluationSummary": "A dashboard export plus a template change."}
APPROVE = {"approvalDecision": "Approve", "approverSignature": "Eve Process-Group"}
APPROVE_PD = {"approvalDecision": "Approve", "approverSignature": "Pat Director"}
ACTIONS = [{"action": "Change the template", "owner": OWNER, "due": "2027-05-15"}]
PLAN = {"actions": ACTIONS, "processOwner": OWNER}
CRITERIA = [{"criterion": "Report effort", "measure": "Hours per report (#8)", "target": "<= 0.5 h"},
            {"criterion": "Data errors", "measure": "Corrections per report", "target": "0"}]
PILOT_PLAN = {**PLAN, "pilotProjects": [{"projectId": "PRJ-2027-1A2B3C", "projectManager": PM}],
              "successCriteria": CRITERIA}
MET = {"pilotResults": [{"criterion": c["criterion"], "measured": "ok", "met": True, "evidence": "MA-2027-05"}
                        for c in CRITERIA], "pilotSummary": "Six weeks on one project."}
UNMET = {"pilotResults": [{"criterion": "Report effort", "measured": "0.9 h", "met": False, "evidence": "MA-4"},
                          {"criterion": "Data errors", "measured": "0", "met": True, "evidence": "MA-4"}],
         "pilotSummary": "The export failed twice."}
TOOL = {"toolName": "TOOL-02 Metrics dashboard", "toolChangeRef": "TDT-431", "pilotVersion": "2.4.0-rc1"}
ASSET = {"assetUpdates": [{"asset": "TPL-02 Status report template", "newVersion": "C",
                           "changeSummary": "Duplicated tables removed"}], "documentRef": "OSP-2027-05"}
NO_TRAINING = {"trainingNeeded": False, "noTrainingReason": "The KB article explains the new template."}
TRAINING = {"trainingNeeded": True, "audience": ["Project Manager"], "trainingRef": "TRN-2027-12",
            "sessions": [{"date": "2027-09-01", "topic": "New status report"}]}
RELEASE = {"releasedVersion": "2.4.0", "releasedOn": "2027-08-20", "releaseNotesRef": "TDT-REL-24"}
ANNOUNCE = {"kbArticleRef": "KB-2027-88", "announcement": "The status report template TPL-02 is now version C.",
            "audienceRoles": ["Project Manager"]}
ADOPTION = {"adoptionRatePct": 85, "projectsUsing": 17, "adopted": True,
            "adoptionFindings": "17 of 20 projects use version C."}

# ---------------------------------------------------------------------------------------------------------
# Helpers (the shared ones are in scenario_helpers.py; the `people` fixture is in conftest.py)
# ---------------------------------------------------------------------------------------------------------


def start(people: People, data: dict, user: str = PM) -> int:
    result = people(user).start(PROCESS, data)
    assert (result["status"], result["error"]) == ("running", None)
    return result["instance_id"]


def decisions(app: Pmoflow, iid: int) -> list[str]:
    return [r["id"] for e in app.history(iid) if e["type"] == "decision" for r in e["payload"]["matched_rules"]]


def to_approval(people: People, iid: int, evaluation: dict) -> None:
    complete(people(SEPG), iid, "triage_proposal", ACCEPT)
    complete(people(SEPG), iid, "evaluate_proposal", evaluation)


def deploy(people: People, iid: int, training: dict = NO_TRAINING, tool: bool = False) -> None:
    """From the three parallel deployment tasks to the closed proposal, the adoption timer fired."""
    complete(people(OWNER), iid, "update_asset", ASSET)
    complete(people(TC), iid, "arrange_training", training)
    if tool:
        complete(people(TDT), iid, "deploy_tool", RELEASE)
    complete(people(KM), iid, "announce_change", ANNOUNCE)
    eve = people(SEPG)
    shown = eve.show(iid)
    assert shown["status"] == "waiting" and open_tasks(eve, iid) == []
    recorded = [e for e in eve.history(iid) if e["type"] == "task_completed" and e["task"] == "announce_change"][-1]
    assert abs(after(shown["next_due"], 0) - after(recorded["at"], 90)) < timedelta(minutes=1)
    # other proposals' triage timers may fire
    assert iid not in eve.acting_as("pmo.admin").run_due(after(shown["next_due"], -1))["fired"]
    assert iid in eve.acting_as("pmo.admin").run_due(after(shown["next_due"], 1))["fired"]
    complete(eve, iid, "adoption_check", ADOPTION)


def closed(app: Pmoflow, iid: int, outcome: str) -> dict:
    shown = app.show(iid)
    assert (shown["status"], shown["error"], shown["data"]["outcome"]) == ("completed", None, outcome)
    assert open_tasks(app, iid) == []
    result = shown["data"]["pipResult"]
    assert result["outcome"] == outcome and re.fullmatch(r"\d{4}-\d\d-\d\d", result["closedOn"])
    return shown["data"]


def told(app: Pmoflow, user: str, iid: int) -> list[str]:
    """The kinds of notification `user` got about the instance, oldest first (read as an auditor)."""
    return [n["kind"] for n in app.notifications(user=user, instance=iid)]


# ---------------------------------------------------------------------------------------------------------
# Ways in
# ---------------------------------------------------------------------------------------------------------


def test_any_staff_member_submits_and_a_small_doc_change_is_deployed_without_pilot(people):
    """The manual start: anyone may submit (the start events are outside the lanes). A doc-only change of at most
    5 person-days is the SEPG lead's, with no pilot and no tool; the submitter hears at acceptance and closure."""
    eve, pete = people(SEPG), people(PM)
    for user in (TDT, OWNER):  # no role is needed to propose an improvement
        assert people(user).start(PROCESS, proposal())["status"] == "running"
    iid = start(people, proposal())
    shown = eve.show(iid)
    assert shown["started_by"] == PM
    triage = task_for(eve, iid, "triage_proposal")
    assert (triage["lane"], triage["candidates"], triage["form"]) == ("SEPG", ["SEPG"], "pip-triage.schema.json")
    assert abs(after(triage["created_at"], 10) - after(triage["due"], 0)) < timedelta(minutes=1)
    assert triage["instructions"].startswith("Triage the improvement proposal within 10 days")
    data = eve.task(triage["id"])["data"]
    assert (data["pipSource"], data["pipReference"], data["submitter"], data["needsDetails"]) == (
        "STAFF", "", PM, False)
    assert data["lane_owners"] == {"Submitter": [PM]}
    record = data["pipRecord"]
    assert re.fullmatch(r"PIP-\d{4}-[0-9A-F]{6}", record["pipId"])
    assert (record["source"], record["submitter"], record["isoControlled"]) == ("STAFF", PM, False)
    assert inbox(pete, iid) == []

    to_approval(people, iid, EVAL_DOC)
    approve = task_for(eve, iid, "approve_sepg_lead")
    assert approve["candidates"] == ["SEPG"]
    assert inbox(people(PD), iid) == [] and inbox(people(QD), iid) == []
    complete(eve, iid, "approve_sepg_lead", APPROVE)
    complete(eve, iid, "plan_actions", PLAN)
    update = task_for(people(OWNER), iid, "update_asset")
    assert (update["lane"], update["candidates"], update["candidate_kind"]) == ("Auditee", [OWNER], "user")
    assert inbox(people(TC), iid) == ["arrange_training"] and inbox(people(TDT), iid) == []
    deploy(people, iid)

    data = closed(eve, iid, "DEPLOYED")
    assert (data["approvalRoute"], data["pilotRequired"], data["tdtEngaged"], data["qdRequired"]) == (
        "SEPG lead", False, False, False)
    assert data["baselineRequest"]["items"] == [{"ci": "TPL-02 Status report template", "version": "C"}]
    assert data["deployment"]["pilots"] == 0 and data["deployment"]["toolRelease"] == ""
    assert data["pipResult"]["summary"].startswith(f"Improvement proposal {record['pipId']} (Shorter weekly")
    assert decisions(eve, iid) == ["Rule_small_doc_change"]
    assert told(eve, PM, iid) == ["accepted", "announcement", "outcome"]
    history = eve.history(iid)
    done = {e["task"]: e["actor"] for e in history if e["type"] == "task_completed"}
    assert done == {"triage_proposal": SEPG, "evaluate_proposal": SEPG, "approve_sepg_lead": SEPG,
                    "plan_actions": SEPG, "update_asset": OWNER, "arrange_training": TC, "announce_change": KM,
                    "adoption_check": SEPG}
    assert [e["task"] for e in history if e["type"] == "timer_fired"] == ["wait_adoption"]
    signed = [e for e in history if e["type"] == "task_completed" and e["task"] == "approve_sepg_lead"][0]
    assert signed["payload"]["duty_checks"] == [
        {"rule": "performer differs from starter", "result": "passed"},
        {"rule": "performer differs from complete_proposal", "result": "passed"}]


def test_a_message_starts_a_proposal_owned_by_the_sender_and_completed_by_the_submitter(people):
    """improvement_proposed (here sent by the auditor whose finding raised it) starts an instance owned by the
    sender; the named submitter completes the details; a tool change is the Project Director's, piloted, with
    the tool team; after the pilot meets its criteria the tool is released and people are trained."""
    ian, olga, eve, pat = people(AUDITOR), people(OWNER), people(SEPG), people(PD)
    payload = message_payload()
    sent = ian.message("improvement_proposed", payload)
    [iid] = sent["delivered_to"]
    shown = ian.show(iid)
    assert (shown["process_id"], shown["status"], shown["started_by"]) == (PROCESS, "running", AUDITOR)
    history = ian.history(iid)
    assert (history[0]["type"], history[0]["payload"]["by_message"]) == ("instance_started", "improvement_proposed")
    assert not [e for e in history if e["task"] == "start_pip"]

    details = task_for(olga, iid, "complete_proposal")
    assert (details["lane"], details["candidates"], details["candidate_kind"]) == ("Submitter", [OWNER], "user")
    assert inbox(ian, iid) == [] and inbox(eve, iid) == []
    data = olga.task(details["id"])["data"]
    assert data["proposalIn"] == payload
    assert (data["pipSource"], data["pipReference"], data["submitter"], data["title"]) == (
        "OFI", "AUD-2027-03/F-4", OWNER, payload["title"])
    complete(olga, iid, "complete_proposal", DETAILS)
    record = task_data(eve, iid, "triage_proposal")["pipRecord"]
    assert (record["source"], record["reference"], record["toolChange"], record["assets"]) == (
        "OFI", "AUD-2027-03/F-4", True, DETAILS["affectedAssets"])

    to_approval(people, iid, EVAL_TOOL)
    assert inbox(eve, iid) == []
    assert task_for(pat, iid, "approve_pd")["candidates"] == ["Project Director"]
    complete(pat, iid, "approve_pd", APPROVE_PD)
    complete(eve, iid, "plan_actions", PILOT_PLAN)
    assert inbox(olga, iid) == []  # the tool comes first
    complete(people(TDT), iid, "prepare_tool", TOOL)
    complete(olga, iid, "run_pilot", MET)
    assert task_data(eve, iid, "evaluate_pilot")["criteriaUnmet"] == []
    complete(eve, iid, "evaluate_pilot", {"pilotDecision": "Deploy"})
    assert inbox(people(TDT), iid) == ["deploy_tool"]
    deploy(people, iid, TRAINING, tool=True)

    data = closed(eve, iid, "DEPLOYED")
    assert decisions(eve, iid) == ["Rule_tool_change"]
    assert data["deployment"]["toolRelease"] == "2.4.0" and data["deployment"]["trainingRef"] == "TRN-2027-12"
    assert (data["pipResult"]["source"], data["pipResult"]["reference"]) == ("OFI", "AUD-2027-03/F-4")
    assert "from OFI AUD-2027-03/F-4" in data["pipResult"]["summary"]
    assert told(eve, OWNER, iid) == ["accepted", "announcement", "outcome"]
    assert told(eve, AUDITOR, iid) == []


@pytest.mark.parametrize("source", ["CAPA", "LESSON"])
def test_the_other_senders_are_taken_too(people, source):
    sent = people(KM).message("improvement_proposed", message_payload(source=source, reference="REF-1",
                                                                       submitter=PM))
    [iid] = sent["delivered_to"]
    assert people(KM).show(iid)["started_by"] == KM
    assert task_data(people(PM), iid, "complete_proposal")["pipSource"] == source


# ---------------------------------------------------------------------------------------------------------
# Triage
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("triage", "reason"), [
    ({"triageDecision": "Duplicate", "duplicateOf": "PIP-2027-0A1B2C", "triageReason": "Already being piloted."},
     "Duplicate of PIP-2027-0A1B2C: Already being piloted."),
    ({"triageDecision": "Reject", "triageReason": "The customer contract mandates the template."},
     "The customer contract mandates the template."),
])
def test_a_duplicate_or_rejected_proposal_ends_at_triage_and_the_submitter_is_told(people, triage, reason):
    eve = people(SEPG)
    iid = start(people, proposal())
    complete(eve, iid, "triage_proposal", triage)
    outcome = "DUPLICATE" if triage["triageDecision"] == "Duplicate" else "REJECTED"
    data = closed(eve, iid, outcome)
    assert (data["pipResult"]["stage"], data["pipResult"]["reason"]) == ("triage", reason)
    assert decisions(eve, iid) == []
    [notice] = people(PM).notifications(instance=iid)
    assert notice["kind"] == "outcome" and reason in notice["subject"]


def test_the_triage_reminder_fires_after_10_days_and_the_project_director_after_20(people):
    eve, pat = people(SEPG), people(PD)
    iid = start(people, proposal())
    opened = task_for(eve, iid, "triage_proposal")["created_at"]
    assert eve.acting_as("pmo.admin").run_due(after(opened, 9.9))["fired"] == []
    assert eve.acting_as("pmo.admin").run_due(after(opened, 10.01))["fired"] == [iid]
    [reminder] = eve.notifications(instance=iid)
    assert (reminder["kind"], reminder["via_role"], reminder["task"]) == ("reminder", "SEPG", "triage_proposal")
    assert "waited 10 days for triage" in reminder["subject"]
    assert pat.notifications(instance=iid) == []
    assert inbox(eve, iid) == ["triage_proposal"]  # non-interrupting: the task stays open
    assert eve.acting_as("pmo.admin").run_due(after(opened, 20.01))["fired"] == [iid]
    [escalation] = pat.notifications(instance=iid)
    assert (escalation["kind"], escalation["via_role"]) == ("escalation", "Project Director")
    assert [n["kind"] for n in eve.notifications(instance=iid)] == ["reminder", "escalation"]
    history = eve.history(iid)
    assert [e["task"] for e in history if e["type"] == "timer_fired"] == [
        "tmr_triage_reminder", "tmr_triage_escalation"]
    assert not [e for e in history if e["type"] == "task_cancelled"]
    complete(eve, iid, "triage_proposal", ACCEPT)  # still open after both
    assert inbox(eve, iid) == ["evaluate_proposal"]


# ---------------------------------------------------------------------------------------------------------
# Approval routes and loops
# ---------------------------------------------------------------------------------------------------------


def test_an_iso_controlled_change_is_countersigned_by_the_qd_after_a_return_then_abandoned(people):
    """Otherwise -> the SEPG board, piloted; an ISO-controlled asset adds the Quality Director. A QD return sends
    it back to the evaluation; a pilot whose criteria are unmet cannot be deployed, and the SEPG abandons it."""
    eve, quinn, olga = people(SEPG), people(QD), people(OWNER)
    iid = start(people, proposal(affectedAssets=["OSP-06 Configuration management procedure"], isoControlled=False))
    assert task_data(eve, iid, "triage_proposal")["pipRecord"]["isoControlledAssets"] == [
        "OSP-06 Configuration management procedure"]
    to_approval(people, iid, EVAL_PROCESS)
    complete(eve, iid, "approve_sepg_board", APPROVE)
    sign = task_for(quinn, iid, "qd_countersign")
    assert sign["candidates"] == ["Quality Director"]
    complete(quinn, iid, "qd_countersign", {"qdDecision": "Return", "qdComment": "Say who signs the withdrawal.",
                                            "qdSignature": "Quinn Quality-Director"})
    assert inbox(eve, iid) == ["evaluate_proposal"]
    assert task_data(eve, iid, "evaluate_proposal")["approvals"][-1]["rationale"] == "Say who signs the withdrawal."
    complete(eve, iid, "evaluate_proposal", EVAL_PROCESS)
    complete(eve, iid, "approve_sepg_board", APPROVE)
    complete(quinn, iid, "qd_countersign", {"qdDecision": "Countersign", "qdSignature": "Quinn Quality-Director"})

    # a plan without pilot projects comes back
    complete(eve, iid, "plan_actions", PLAN)
    assert task_data(eve, iid, "plan_actions")["planProblem"].startswith("The PIPApproval rules ask for a pilot")
    complete(eve, iid, "plan_actions", PILOT_PLAN)
    assert inbox(people(TDT), iid) == []
    complete(olga, iid, "run_pilot", UNMET)
    assert task_data(eve, iid, "evaluate_pilot")["criteriaUnmet"] == ["Report effort"]
    complete(eve, iid, "evaluate_pilot", {"pilotDecision": "Deploy"})  # refused by the process: criteria unmet
    assert task_data(eve, iid, "evaluate_pilot")["pilotProblem"].startswith("Not every success criterion")
    complete(eve, iid, "evaluate_pilot", {"pilotDecision": "Abandon", "pilotComment": "Costs more than it saves."})

    data = closed(eve, iid, "ABANDONED")
    assert decisions(eve, iid) == ["Rule_board_iso", "Rule_board_iso"]
    assert [(a["by"], a["decision"]) for a in data["approvals"]] == [
        ("SEPG board", "Approve"), ("Quality Director", "Return"), ("SEPG board", "Approve"),
        ("Quality Director", "Countersign")]
    assert data["pilots"] == [{"round": 1, "projects": ["PRJ-2027-1A2B3C"], "criteriaUnmet": ["Report effort"],
                               "decision": "Abandon", "comment": "Costs more than it saves."}]
    assert data["pipResult"]["stage"] == "pilot" and data["deployment"] == {}


def test_a_revised_pilot_runs_again_before_deployment(people):
    eve, olga = people(SEPG), people(OWNER)
    iid = start(people, proposal())
    to_approval(people, iid, EVAL_PROCESS)
    complete(eve, iid, "approve_sepg_board", APPROVE)
    assert inbox(people(QD), iid) == []  # not ISO-controlled: no countersignature
    complete(eve, iid, "plan_actions", PILOT_PLAN)
    complete(olga, iid, "run_pilot", UNMET)
    complete(eve, iid, "evaluate_pilot", {"pilotDecision": "Revise", "pilotComment": "Fix the export first."})
    assert inbox(eve, iid) == ["plan_actions"]
    complete(eve, iid, "plan_actions", PILOT_PLAN)
    complete(olga, iid, "run_pilot", MET)
    complete(eve, iid, "evaluate_pilot", {"pilotDecision": "Deploy"})
    deploy(people, iid)
    data = closed(eve, iid, "DEPLOYED")
    assert decisions(eve, iid) == ["Rule_default"]
    assert [(p["round"], p["decision"]) for p in data["pilots"]] == [(1, "Revise"), (2, "Deploy")]


def test_a_large_change_goes_to_the_project_director_who_rejects_it(people):
    eve, pat = people(SEPG), people(PD)
    iid = start(people, proposal(effortEstimatePD=40))
    to_approval(people, iid, {**EVAL_PROCESS, "effortPD": 45})
    complete(pat, iid, "approve_pd", {"approvalDecision": "Reject", "approverSignature": "Pat Director",
                                      "approvalRationale": "Not worth 45 person-days this year."})
    data = closed(eve, iid, "REJECTED")
    assert decisions(eve, iid) == ["Rule_large_change"]
    assert (data["tdtEngaged"], data["pipResult"]["stage"]) == (True, "approval")
    assert told(eve, PM, iid) == ["accepted", "outcome"]


# ---------------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------------


def test_the_sender_of_a_proposal_may_not_approve_it(people):
    """Segregation of duties: a proposal the Project Director's own action sent (a closure's lesson) is offered
    to the Project Director's role, but the engine refuses them: they started it."""
    pat, pete = people(PD), people(PM)
    [iid] = pat.message("improvement_proposed", message_payload(source="LESSON", reference="LL-3",
                                                                submitter=PM))["delivered_to"]
    complete(pete, iid, "complete_proposal", DETAILS)
    to_approval(people, iid, EVAL_TOOL)
    row = [t for t in pat.show(iid)["tasks"] if t["bpmn_id"] == "approve_pd"][0]
    assert row["candidates"] == ["Project Director"] and row["excluded"] == [PD, PM]
    assert inbox(pat, iid) == []
    before = pat.show(iid), pat.history(iid)
    with pytest.raises(PermissionDenied, match="segregation of duties") as refused:
        pat.complete(row["id"], APPROVE_PD)
    assert "started this instance" in refused.value.message
    shown, history = pat.show(iid), pat.history(iid)
    assert history[:-1] == before[1] and shown["tasks"] == before[0]["tasks"] and shown["data"] == before[0]["data"]
    assert (history[-1]["type"], history[-1]["actor"], history[-1]["payload"]["rule"]) == (
        "duty_refused", PD, "performer differs from starter")


def test_the_submitter_of_a_message_proposal_may_not_approve_it(people):
    """The named submitter (here the SEPG member herself, who completed the details) may not approve it either."""
    eve = people(SEPG)
    [iid] = people(AUDITOR).message("improvement_proposed", message_payload(submitter=SEPG))["delivered_to"]
    complete(eve, iid, "complete_proposal", {**DETAILS, "toolChange": False,
                                             "affectedAssets": ["TPL-02 Status report template"]})
    to_approval(people, iid, EVAL_DOC)
    assert inbox(eve, iid) == []  # the only SEPG member is barred: the task waits for another one
    row = [t for t in eve.show(iid)["tasks"] if t["bpmn_id"] == "approve_sepg_lead"][0]
    assert row["excluded"] == [SEPG, AUDITOR]  # the submitter and the sender
    with pytest.raises(PermissionDenied, match="performed task complete_proposal"):
        eve.complete(row["id"], APPROVE)


def test_only_the_named_submitter_completes_a_message_proposal(people):
    [iid] = people(AUDITOR).message("improvement_proposed", message_payload())["delivered_to"]
    row = task_for(people(OWNER), iid, "complete_proposal")
    for user in (AUDITOR, SEPG, PM):
        with pytest.raises(PermissionDenied):
            people(user).complete(row["id"], DETAILS)


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def refusal(refused: pytest.ExceptionInfo) -> str:
    return " ".join([refused.value.message, *map(str, refused.value.details)])


def test_bad_input_is_refused_and_nothing_changes(people):
    pete, eve = people(PM), people(SEPG)
    for bad, match in [
        (proposal(title="Hi"), "title"),
        (proposal(problem=None), "problem"),
        (proposal(affectedAssets=["OSP-99 Unknown procedure"]), "affectedAssets"),
        (proposal(affectedAssets=[]), "affectedAssets"),
        (proposal(processArea="Astrology"), "processArea"),
        (proposal(expectedGainPct=150), "expectedGainPct"),
        ({**proposal(), "lane_owners": {"Submitter": [SEPG]}}, "does not ask for"),
        ({**proposal(), "proposalIn": message_payload()}, "does not ask for"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            pete.start(PROCESS, bad)
        assert match in refusal(refused)
    assert pete.instances(process=PROCESS) == []

    iid = start(people, proposal())
    row = task_for(eve, iid, "triage_proposal")
    before = eve.show(iid), eve.history(iid)
    for bad, match in [
        ({"triageDecision": "Duplicate", "triageReason": "Already piloted."}, "duplicateOf"),
        ({"triageDecision": "Reject"}, "triageReason"),
        ({"triageDecision": "Maybe"}, "triageDecision"),
        ({"triageDecision": "Accept", "outcome": "DEPLOYED"}, "does not ask for"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            eve.complete(row["id"], bad)
        assert match in refusal(refused)
    assert eve.show(iid) == before[0] and eve.history(iid) == before[1]


def test_a_message_that_breaks_the_contract_is_refused_and_changes_nothing(people):
    """The message start event's form (pip-message.schema.json) refuses a payload without its submitter or
    reference, naming the fields, before any instance exists."""
    ian = people(AUDITOR)
    before = ian.instances()
    with pytest.raises(InvalidInput, match="does not fit form pip-message.schema.json") as refused:
        ian.message("improvement_proposed", message_payload(submitter=None, reference=""))
    assert {d.split(":")[0] for d in refused.value.details} == {"submitter", "reference"}
    assert ian.instances() == before


# ---------------------------------------------------------------------------------------------------------
# Model and handlers
# ---------------------------------------------------------------------------------------------------------


def test_the_forms_offer_exactly_the_standard_process_set():
    for form in ("pip-proposal", "pip-details"):
        schema = json.loads((HERE / "forms" / f"{form}.schema.json").read_text())
        assert schema["properties"]["affectedAssets"]["items"]["enum"] == list(pip.standard_process_set())
    update = json.loads((HERE / "forms" / "pip-asset-update.schema.json").read_text())
    assert update["properties"]["assetUpdates"]["items"]["properties"]["asset"]["enum"] == list(
        pip.standard_process_set())


def test_register_checks_the_message_contract():
    ok = pip.register("CAPA", "CAPA-NC-7-1A2B3C", "t", "p", "q", "Quality assurance", "olga.owner",
                      ["OSP-05 Corrective action procedure"], False, False, registered_on="2027-03-01")
    assert re.fullmatch(r"PIP-2027-[0-9A-F]{6}", ok["pipId"])
    assert (ok["isoControlled"], ok["isoControlledAssets"]) == (True, ["OSP-05 Corrective action procedure"])
    with pytest.raises(ValueError, match="unknown proposal source 'AUDIT'"):
        pip.register("AUDIT", "x", "t", "p", "q", "a", "u", ["TPL-02 Status report template"], False, False)
    with pytest.raises(ValueError, match="message lacks reference"):
        pip.register("OFI", " ", "t", "p", "q", "a", "u", ["TPL-02 Status report template"], False, False)
    with pytest.raises(ValueError, match="not in the standard process set: X"):
        pip.register("STAFF", "", "t", "p", "q", "a", "u", ["X"], False, False)
    with pytest.raises(ValueError, match="needs the reason"):
        pip.close(ok, "REJECTED", "triage")
