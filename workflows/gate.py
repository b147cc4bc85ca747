"""Service-task handlers of the quality gate review (bpmn/quality_gate.bpmn, Cooper stage-gate with SQA evidence).

Each handler is a plain function of keyword arguments that returns JSON data. Handlers never touch the
database or the engine. Where the catalogue's process names a system pmoflow does not have yet (the CM
repository, the measurement repository #8, the configuration baseline process #5), the
handler works from what the gate package reports and records the request for that process. The gates' checklists
and the profiles' tailoring are policy, read from ``data/gate_checklists.json`` and ``data/gate_profiles.json``.
"""

from __future__ import annotations

from typing import Any

from pmoflow.engine.handlers import handler, today

from . import policy
from .capa import contract_finding

#: Deliverable statuses that mean the deliverable is under configuration control (the gate package form's enum).
CONTROLLED = {"Approved", "Baselined"}


@handler
def load_checklist(gate_id: str, gate_profile: str) -> dict[str, Any]:
    """The checklist of one gate (``data/gate_checklists.json``) after tailoring to the project's gate profile
    (``data/gate_profiles.json``: the deliverables and should-meet criteria the profile leaves out)."""
    gates, profiles = policy.load("gate_checklists"), policy.load("gate_profiles")
    if gate_id not in gates:
        raise ValueError(f"unknown gate {gate_id!r}; expected one of {', '.join(gates)}")
    if gate_profile not in profiles:
        raise ValueError(f"unknown gate profile {gate_profile!r}; expected one of {', '.join(profiles)}")
    gate, tailored_out = gates[gate_id], set(profiles[gate_profile]["tailoredOut"])

    def tailor(items: list[str]) -> list[str]:
        return [i for i in items if i not in tailored_out]

    return {
        "gateId": gate_id,
        "gateName": gate["name"],
        "nextGateId": gate["next"],
        "profile": gate_profile,
        "deliverables": tailor(gate["deliverables"]),
        "mustMeet": list(gate["mustMeet"]),
        "shouldMeet": tailor(gate["shouldMeet"]),
        "auditCriteria": list(gate["auditCriteria"]),
    }


@handler
def check_baseline(project_id: str, gate_id: str, deliverables: list[dict[str, Any]],
                   required: list[str] | None = None) -> dict[str, Any]:
    """The configuration engineer's check: the gate's baseline tag exists and no change is unauthorised.

    pmoflow reads no CM repository yet, so the check works from the package: the baseline exists when every
    required deliverable is listed with a CM tag and an approved or baselined status; a deliverable
    "Modified after baseline" without a change request id is an unauthorised change.
    """
    listed = {d["doc"].strip().lower(): d for d in deliverables}
    missing = [doc for doc in required or [] if doc.strip().lower() not in listed]
    untagged = [d["doc"] for d in deliverables if not str(d.get("cmTag", "")).strip()]
    uncontrolled = [d["doc"] for d in deliverables
                    if d.get("status") not in CONTROLLED and d.get("status") != "Modified after baseline"]
    unauthorised = [d["doc"] for d in deliverables
                    if d.get("status") == "Modified after baseline" and not str(d.get("crId", "")).strip()]
    tag = f"{project_id}-{gate_id}-BL"
    exists = not missing and not untagged and not uncontrolled
    return {
        "baselineTag": tag,
        "tagExists": exists,
        "unauthorisedChanges": len(unauthorised),
        "ok": exists and not unauthorised,
        "missingDeliverables": missing,
        "untagged": untagged,
        "notControlled": uncontrolled,
        "changedWithoutCR": unauthorised,
    }


@handler
def metrics_snapshot(spi: float, cpi: float, open_risks: dict[str, int], high_risks_without_response: int,
                     open_defects: dict[str, int], should_meet: list[dict[str, Any]],
                     taken_on: str | None = None) -> dict[str, Any]:
    """The measurement analyst's snapshot for the gate (a stand-in for the repository of process #8).

    ``minIndex`` is the lower of SPI and CPI; ``shouldScorePct`` the should-meet score as a percentage of the
    maximum (10 points per criterion; 100 when the gate has no should-meet criteria).
    """
    for name, value in (("SPI", spi), ("CPI", cpi)):
        if not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a number of at least 0, not {value!r}")
    scores = [s["score"] for s in should_meet]
    pct = round(100.0 * sum(scores) / (10 * len(scores)), 1) if scores else 100.0
    return {
        "spi": spi,
        "cpi": cpi,
        "minIndex": min(spi, cpi),
        "shouldScorePct": pct,
        "openRisks": dict(open_risks),
        "highRisksWithoutResponse": high_risks_without_response,
        "openDefects": dict(open_defects),
        "takenOn": today(taken_on).isoformat(),
    }


@handler
def open_next_stage(project_id: str, gate_id: str, decision: str, baseline_tag: str,
                    conditions: list[dict[str, Any]] | None = None, opened_on: str | None = None) -> dict[str, Any]:
    """After GO or CONDITIONAL_GO: open the next stage, release its budget tranche and ask configuration
    management (process #5, not in pmoflow yet) to baseline the gate's configuration. Conditions of a
    CONDITIONAL_GO become tracked action items."""
    if decision not in ("GO", "CONDITIONAL_GO"):
        raise ValueError(f"the next stage opens on GO or CONDITIONAL_GO, not {decision!r}")
    gates = policy.load("gate_checklists")
    if gate_id not in gates:
        raise ValueError(f"unknown gate {gate_id!r}")
    day = today(opened_on)
    return {
        "projectId": project_id,
        "gateId": gate_id,
        "stageOpened": gates[gate_id]["next"] or "Closure",
        "budgetTrancheReleased": True,
        "baselineRequest": {"process": "configuration_baseline", "baselineTag": baseline_tag,
                            "status": "requested"},
        "actionItems": [{"text": c["text"], "owner": c["owner"], "due": c["due"], "status": "open"}
                        for c in conditions or []],
        "openedOn": day.isoformat(),
    }


@handler
def assess(checklist: dict[str, Any], must_meet: list[dict[str, Any]], cm_check: dict[str, Any],
           sqa_audit: dict[str, Any], metrics: dict[str, Any], high_risks_without_response: int, gate_round: int,
           gate_findings: list[dict[str, Any]], gate_rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One assessment round in the terms of the GateRecommendation rules, and its record.

    Must-meet: every criterion of the checklist reported met (one not met or not reported is a knock-out, matched
    without case or surrounding spaces); a failed baseline check is one more gap. Every Major and Minor NC of the
    round joins ``gateFindings`` (a later round's NC with the same id replaces the earlier one): each gets a
    corrective action when the gate closes. ``gateRounds`` gains this round's summary."""
    reported = {c["criterion"].strip().lower(): c["met"] for c in must_meet}
    gaps = [c for c in checklist["mustMeet"] if not reported.get(c.strip().lower(), False)]
    gaps += [c["criterion"] for c in must_meet if not c["met"] and c["criterion"] not in gaps]
    if not cm_check["ok"]:
        problem = (f"{cm_check['unauthorisedChanges']} unauthorised change(s)" if cm_check["tagExists"]
                   else "missing or incomplete")
        gaps.append(f"Baseline {cm_check['baselineTag']}: {problem}")
    found = [{**n, "round": gate_round} for n in sqa_audit["ncs"] if n["grade"] in ("Major", "Minor")]
    found_ids = {n["id"] for n in found}
    summary = {
        "round": gate_round,
        "sqaRecommendation": sqa_audit["recommendation"],
        "majorNCs": sqa_audit["majorNCs"],
        "minorNCs": sqa_audit["minorNCs"],
        "mustMeetGaps": gaps,
        "baseline": cm_check["baselineTag"],
        "baselineOk": cm_check["ok"],
        "minSpiCpi": metrics["minIndex"],
        "shouldScorePct": metrics["shouldScorePct"],
    }
    return {
        "mustMeetGaps": gaps,
        "mustMeetAll": not gaps,
        "openMajorNC": sqa_audit["majorNCs"],
        "minorNCOrHighRisk": sqa_audit["minorNCs"] > 0 or high_risks_without_response > 0,
        "minSpiCpi": metrics["minIndex"],
        "shouldScorePct": metrics["shouldScorePct"],
        "gateFindings": [f for f in gate_findings if f["id"] not in found_ids] + found,
        "gateRounds": [*gate_rounds, summary],
    }


@handler
def check_decision(decision: str, recommendation: str, recommendation_reason: str, pd_must_confirm: bool,
                   recycle_count: int, conditions: list[dict[str, Any]], next_gate_date: str,
                   override_justification: str) -> dict[str, Any]:
    """What the decision form cannot check against the gate's data: a decision other than the recommendation
    needs an override justification; after two recycles the Project Director only confirms KILL or chooses HOLD;
    a CONDITIONAL_GO's conditions are due by the next gate. ``error`` is empty when the decision stands."""
    overridden = decision != recommendation
    late = [c["text"] for c in conditions if c["due"] > next_gate_date] if decision == "CONDITIONAL_GO" else []
    if overridden and not override_justification.strip():
        error = (f"The decision {decision} differs from the recommendation {recommendation} "
                 f"({recommendation_reason}): give an override justification, or follow the recommendation.")
    elif pd_must_confirm and decision not in ("KILL", "HOLD"):
        error = (f"After {recycle_count} recycles with a must-meet criterion still failing, the Project Director "
                 "confirms KILL or chooses HOLD.")
    elif late:
        error = f"Conditions are due by the next gate ({next_gate_date}); these are not: {'; '.join(late)}."
    else:
        error = ""
    return {"overridden": overridden, "lateConditions": late, "error": error}


@handler
def escalate_decider(decider_role: str) -> str:
    """A gate decision left 5 days: the role one level up the ``gateDecision`` ladder of
    ``data/escalation.json`` (the Project Director, at the top, stays)."""
    return policy.next_level("gateDecision", decider_role)


@handler
def capa_findings(gate_findings: list[dict[str, Any]], gate_ref: str) -> list[dict[str, Any]]:
    """The gate's Major and Minor NCs of every round, each in the call contract of corrective_action."""
    return [contract_finding(f, "gate", f"{gate_ref} round {f['round']}") for f in gate_findings]
