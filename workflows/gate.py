"""Service-task handlers of the quality gate review (bpmn/quality_gate.bpmn, Cooper stage-gate with SQA evidence).

Each handler is a plain function of keyword arguments that returns JSON data. Handlers never touch the
database or the engine. Where the catalogue's process names a system pmoflow does not have yet (the CM
repository, the measurement repository #8, the configuration baseline process #5), the
handler works from what the gate package reports and records the request for that process.
"""

from __future__ import annotations

from datetime import date
from typing import Any

#: The gates of the stage-gate model: G1 requirements ... G4 release, Gc closure (pmo-processes.md #2).
#: Each lists its required deliverables, must-meet (knock-out) criteria, should-meet (scored 0-10) criteria
#: and the criteria of the SQA gate audit (CMMI PPQA SP1.1/1.2). Tailor them here.
GATES: dict[str, dict[str, Any]] = {
    "G1": {
        "name": "Requirements",
        "next": "G2",
        "deliverables": ["Project charter", "Requirements specification", "Project management plan",
                         "Risk register", "CM plan"],
        "mustMeet": ["Requirements approved by the customer", "Project management plan approved",
                     "Every high risk has an owner"],
        "shouldMeet": ["Requirements traced to objectives", "Estimates reviewed by a second estimator",
                       "Stakeholder engagement plan in use"],
        "auditCriteria": ["Requirements reviewed per the review procedure",
                          "Plans follow the standard process (tailoring recorded)",
                          "Work products under configuration management"],
    },
    "G2": {
        "name": "Design",
        "next": "G3",
        "deliverables": ["Architecture description", "Design specification", "Test plan", "Risk register"],
        "mustMeet": ["Design reviewed and approved", "Requirements traced to the design",
                     "Test plan approved"],
        "shouldMeet": ["Reuse assessed", "Performance budget allocated", "Security review done"],
        "auditCriteria": ["Design review held per procedure with records", "Traceability matrix maintained",
                          "Changes to baselines went through the CCB"],
    },
    "G3": {
        "name": "Test readiness",
        "next": "G4",
        "deliverables": ["Test specification", "Build and release notes", "Defect report", "Risk register"],
        "mustMeet": ["All planned tests specified", "No open critical defect", "Test environment ready"],
        "shouldMeet": ["Code review coverage above 80 %", "Regression suite automated", "Test data approved"],
        "auditCriteria": ["Peer reviews held per procedure", "Defects tracked to closure",
                          "Build reproducible from the baseline"],
    },
    "G4": {
        "name": "Release",
        "next": "Gc",
        "deliverables": ["Test report", "User documentation", "Release notes", "Deployment plan"],
        "mustMeet": ["Acceptance tests passed", "No open critical or major defect", "Rollback plan tested"],
        "shouldMeet": ["Operations trained", "Support handover signed", "Known issues documented"],
        "auditCriteria": ["Test results recorded against the test specification",
                          "Release baseline audited (FCA/PCA planned)", "Customer acceptance recorded"],
    },
    "Gc": {
        "name": "Closure",
        "next": "",
        "deliverables": ["Acceptance document", "Final report", "Lessons learned"],
        "mustMeet": ["Customer acceptance signed", "Open risks and issues transferred or closed"],
        "shouldMeet": ["Lessons learned workshop held", "Final metrics submitted"],
        "auditCriteria": ["Records archived per procedure", "Open NCs closed or transferred"],
    },
}

#: Deliverables a Lite project (one gate plus closure, see charter_approval.dmn) does not have to produce.
LITE_OMITTED = {"Stakeholder engagement plan in use", "Estimates reviewed by a second estimator",
                "Architecture description", "Reuse assessed", "Performance budget allocated"}
#: Deliverable statuses that mean the deliverable is under configuration control.
CONTROLLED = {"Approved", "Baselined"}


def _today(on: str | None) -> date:
    return date.fromisoformat(on) if on else date.today()


def load_checklist(gate_id: str, gate_profile: str) -> dict[str, Any]:
    """The checklist of one gate after tailoring to the project's gate profile (Full, Standard or Lite)."""
    if gate_id not in GATES:
        raise ValueError(f"unknown gate {gate_id!r}; expected one of {', '.join(GATES)}")
    if gate_profile not in ("Full", "Standard", "Lite"):
        raise ValueError(f"unknown gate profile {gate_profile!r}; expected Full, Standard or Lite")
    gate = GATES[gate_id]

    def tailor(items: list[str]) -> list[str]:
        return [i for i in items if gate_profile != "Lite" or i not in LITE_OMITTED]

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
        "takenOn": _today(taken_on).isoformat(),
    }


def open_next_stage(project_id: str, gate_id: str, decision: str, baseline_tag: str,
                    conditions: list[dict[str, Any]] | None = None, opened_on: str | None = None) -> dict[str, Any]:
    """After GO or CONDITIONAL_GO: open the next stage, release its budget tranche and ask configuration
    management (process #5, not in pmoflow yet) to baseline the gate's configuration. Conditions of a
    CONDITIONAL_GO become tracked action items."""
    if decision not in ("GO", "CONDITIONAL_GO"):
        raise ValueError(f"the next stage opens on GO or CONDITIONAL_GO, not {decision!r}")
    if gate_id not in GATES:
        raise ValueError(f"unknown gate {gate_id!r}")
    day = _today(opened_on)
    return {
        "projectId": project_id,
        "gateId": gate_id,
        "stageOpened": GATES[gate_id]["next"] or "Closure",
        "budgetTrancheReleased": True,
        "baselineRequest": {"process": "configuration_baseline", "baselineTag": baseline_tag,
                            "status": "requested"},
        "actionItems": [{"text": c["text"], "owner": c["owner"], "due": c["due"], "status": "open"}
                        for c in conditions or []],
        "openedOn": day.isoformat(),
    }
