"""Service-task handlers of the ISO 9001 internal audit processes (bpmn/audit_programme.bpmn, bpmn/internal_audit.bpmn).

Plain functions of keyword arguments returning JSON data; they never touch the database or the engine (the
engine gives them no organisation lookup either: what they check is what the task data says). A handler that
raises puts the instance in error with its message, which is how :func:`close_audit` refuses to close an audit
while a corrective action is still open. The programme's rules (clauses to cover, when an audit starts) are policy,
read from ``data/audit_programme.json``; how often each audit runs is the AuditFrequency table.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from typing import Any

from pmoflow.engine.handlers import handler, new_id, today

from . import policy
from .capa import contract_finding

#: Finding grades (ISO 19011 6.4.8 allows grading nonconformities); OFI = opportunity for improvement.
GRADES = ("Major", "Minor", "OFI")


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


@handler
def register_audit(audited_process: str, audited_department: str, planned_date: str,
                   registered_on: str | None = None) -> dict[str, str]:
    """Give a new internal audit its record id: ``AUD-<planned year>-<6 hex>``."""
    if not _norm(audited_process) or not _norm(audited_department):
        raise ValueError("an audit needs the audited process and its department")
    planned = date.fromisoformat(planned_date)
    return {"auditId": new_id(f"AUD-{planned:%Y}"), "registeredOn": today(registered_on).isoformat()}


@handler
def check_independence(team: list[dict[str, Any]], audited_department: str, auditee: str,
                       auditee_manager: str = "", checked_on: str | None = None) -> dict[str, Any]:
    """Segregation of duties for an audit team (ISO 9001 9.2.2 c, ISO 19011 4 b: objectivity and impartiality).

    Refused: a member from the audited department (compared without case and surrounding spaces), a member
    who is the auditee or the auditee's manager, a member listed twice, and a team without exactly one lead
    auditor. Returns ``independent``, each conflict ``{"user", "reason"}``, the lead auditor's user name (empty
    when not exactly one), a message for the appointing programme manager and the team as checked (the record).
    """
    department = _norm(audited_department)
    conflicts: list[dict[str, str]] = []
    seen: set[str] = set()
    for member in team:
        user, dept = str(member.get("user", "")).strip(), _norm(member.get("department"))
        if _norm(user) in seen:
            conflicts.append({"user": user, "reason": "is listed twice"})
        seen.add(_norm(user))
        if dept and dept == department:
            conflicts.append({"user": user, "reason": f"belongs to the audited department ({audited_department})"})
        if _norm(user) == _norm(auditee):
            conflicts.append({"user": user, "reason": "is the auditee"})
        elif auditee_manager and _norm(user) == _norm(auditee_manager):
            conflicts.append({"user": user, "reason": "is the auditee's manager"})
    leads = [str(m.get("user", "")).strip() for m in team if m.get("role") == "Lead auditor"]
    problems = [f"{c['user']} {c['reason']}" for c in conflicts]
    if len(leads) != 1:
        problems.append(f"the team needs exactly one lead auditor (it has {len(leads)})")
    independent = not problems
    message = "" if independent else (
        "The audit team is not independent of the audited process: " + "; ".join(problems)
        + ". Appoint the team again.")
    return {
        "independent": independent,
        "conflicts": conflicts,
        "leadAuditor": leads[0] if len(leads) == 1 else "",
        "message": message,
        "auditedDepartment": audited_department,
        "team": [{"user": str(m.get("user", "")).strip(), "department": m.get("department", ""),
                  "role": m.get("role", "")} for m in team],
        "checkedOn": today(checked_on).isoformat(),
    }


def _counts(findings: list[dict[str, Any]]) -> dict[str, int]:
    return {grade: sum(1 for f in findings if f.get("grade") == grade) for grade in GRADES}


@handler
def send_report(audit_id: str, audited_process: str, summary: str, conclusion: str,
                findings: list[dict[str, Any]], distribution: list[str],
                sent_on: str | None = None) -> dict[str, Any]:
    """Issue the approved audit report to the relevant management (ISO 9001 9.2.2 d)."""
    recipients = [d.strip() for d in distribution if isinstance(d, str) and d.strip()]
    if not recipients:
        raise ValueError("the audit report needs at least one recipient")
    unknown = sorted({f.get("grade") for f in findings} - set(GRADES))
    if unknown:
        raise ValueError(f"unknown finding grade(s) {unknown}; expected one of {list(GRADES)}")
    return {
        "reportId": f"{audit_id}-R",
        "auditId": audit_id,
        "auditedProcess": audited_process,
        "conclusion": conclusion,
        "summary": summary,
        "findingCounts": _counts(findings),
        "sentTo": list(dict.fromkeys(recipients)),
        "sentOn": today(sent_on).isoformat(),
        "status": "sent",
    }


@handler
def close_audit(audit_id: str, findings: list[dict[str, Any]], capa_results: list[dict[str, Any]],
                closed_on: str | None = None) -> dict[str, Any]:
    """Close the audit and lock its records: only when every Major and Minor finding has a closed CAPA.

    Returns the closing record with a SHA-256 of the findings and CAPA results (canonical JSON), so a later
    change to the audit's records can be detected.
    """
    to_correct = sorted(f["id"] for f in findings if f.get("grade") in ("Major", "Minor"))
    closed = sorted(r.get("findingId") for r in capa_results if r.get("status") == "Closed")
    missing = [f for f in to_correct if f not in closed]
    if missing:
        raise ValueError(f"audit {audit_id} cannot close: no closed corrective action for finding(s) "
                         f"{', '.join(missing)}")
    records = json.dumps({"auditId": audit_id, "findings": findings, "capaResults": capa_results},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "auditId": audit_id,
        "closedOn": today(closed_on).isoformat(),
        "findingCounts": _counts(findings),
        "capaClosed": len(closed),
        "recordsLocked": True,
        "recordsHash": hashlib.sha256(records.encode("utf-8")).hexdigest(),
    }


def _month_start(month: str, offset: int) -> date:
    """The 1st of the month ``offset`` months after ``month`` ("YYYY-MM")."""
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


@handler
def plan_programme(audits: list[dict[str, Any]], frequencies: list[dict[str, Any]], programme_id: str,
                   programme_year: int) -> dict[str, Any]:
    """The year's audits and the programme's coverage check (ISO 9001 9.2.2 a).

    Each audit runs ``auditsThisCycle`` times, ``intervalMonths`` apart from its planned month (its AuditFrequency
    result, ``frequencies[i]`` for ``audits[i]``), on the 1st of the month, numbered ``<programme>-01``, -02 ...
    in order. Each starts ``startDaysBefore`` days before its date at ``startTime`` (``startAt``, a timer's ISO
    time). ``error`` names the required clauses no audit covers and audits planned outside the programme's year."""
    rules = policy.load("audit_programme")
    if len(frequencies) != len(audits):
        raise ValueError(f"{len(audits)} audit(s) but {len(frequencies)} AuditFrequency result(s)")
    planned = []
    for audit, frequency in zip(audits, frequencies, strict=True):
        for k in range(frequency["auditsThisCycle"]):
            day = _month_start(audit["plannedMonth"], k * frequency["intervalMonths"])
            start = day - timedelta(days=rules["startDaysBefore"])
            planned.append({
                **{key: audit[key] for key in ("process", "department", "auditee", "auditeeManager", "clauses",
                                               "criteria", "method")},
                "occurrence": k + 1, "frequency": frequency["frequency"], "basis": frequency["basis"],
                "plannedDate": day.isoformat(), "startAt": f"{start.isoformat()}T{rules['startTime']}",
            })
    planned = [{**p, "auditNo": f"{programme_id}-{n:02d}"} for n, p in enumerate(planned, start=1)]
    covered = sorted({int(c.split(".")[0]) for a in audits for c in a["clauses"]})
    missing = [c for c in rules["requiredClauses"] if c not in covered]
    outside = [f"{a['process']} ({a['plannedMonth']})" for a in audits if a["plannedMonth"][:4] != str(programme_year)]
    problems = []
    if missing:
        clauses = ", ".join(str(c) for c in missing)
        required = ", ".join(str(c) for c in rules["requiredClauses"])
        problems.append(f"ISO 9001 clause(s) {clauses} not covered by any audit: every clause of {required} must be "
                        "audited within the cycle.")
    if outside:
        problems.append(f"Planned outside {programme_year}: {', '.join(outside)}.")
    return {"plannedAudits": planned, "coveredClauses": covered, "missingClauses": missing,
            "error": " ".join(problems)}


@handler
def audit_request(planned_audit: dict[str, Any], programme_id: str) -> dict[str, str]:
    """The objective and scope of one planned audit of a programme, as its single audit's request states them
    (ISO 19011 5.5.2)."""
    process, criteria = planned_audit["process"], planned_audit["criteria"]
    return {
        "objective": f"Determine whether {process} conforms to {criteria} and is effectively implemented and "
                     "maintained (ISO 9001 9.2.1).",
        "scope": f"{process} ({planned_audit['department']}), ISO 9001 clauses {', '.join(planned_audit['clauses'])};"
                 f" audit {planned_audit['auditNo']} of programme {programme_id}.",
    }


def _in_scope(clause: str, scope: list[str]) -> bool:
    return clause.split(".")[0] in {c.split(".")[0] for c in scope}


@handler
def check_findings(findings: list[dict[str, Any]], evidence: list[dict[str, Any]], clauses: list[str],
                   audit_id: str) -> dict[str, Any]:
    """Number the findings ``<audit id>-F01``, -F02 ... in the order recorded, and check them against the evidence
    and the scope: evidence marked NC needs a Major or Minor finding on its clause; a finding outside the audit's
    clauses (compared by main clause) is refused. ``error`` is empty when the findings stand."""
    numbered = [{**f, "id": f"{audit_id}-F{i:02d}"} for i, f in enumerate(findings, start=1)]
    graded = {f["clause"] for f in numbered if f["grade"] in ("Major", "Minor")}
    problems = [f"Evidence on clause {e['clause']} is marked NC but no Major or Minor finding is recorded on that "
                "clause." for e in evidence if e["result"] == "NC" and e["clause"] not in graded]
    problems += [f"Finding {f['id']} (clause {f['clause']}) is outside the audit scope." for f in numbered
                 if not _in_scope(f["clause"], clauses)]
    return {"findings": numbered, "error": " ".join(problems)}


@handler
def sort_findings(findings: list[dict[str, Any]], audit_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each Major or Minor finding in the call contract of corrective_action (ISO 9001 10.2); each OFI an
    improvement suggestion for process improvement."""
    return {
        "toCorrect": [contract_finding(f, "audit", audit_id) for f in findings if f["grade"] in ("Major", "Minor")],
        "improvements": [{"id": f["id"], "clause": f["clause"], "description": f["description"],
                          "sourceRef": audit_id} for f in findings if f["grade"] == "OFI"],
    }
