"""Service-task handlers of the ISO 9001 internal audit processes (bpmn/audit_programme.bpmn, bpmn/internal_audit.bpmn).

Plain functions of keyword arguments returning JSON data; they never touch the database or the engine (the
engine gives them no organisation lookup either: what they check is what the task data says). A handler that
raises puts the instance in error with its message, which is how :func:`close_audit` refuses to close an audit
while a corrective action is still open.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date
from typing import Any

from pmoflow.workflows.notifications import queued, recipients

#: Roles of an audit team member (ISO 19011 5.4.2: lead auditor, auditors, technical experts).
TEAM_ROLES = ("Lead auditor", "Auditor", "Technical expert")
#: Finding grades (ISO 19011 6.4.8 allows grading nonconformities); OFI = opportunity for improvement.
GRADES = ("Major", "Minor", "OFI")


def _today(on: str | None) -> date:
    return date.fromisoformat(on) if on else date.today()


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


def register_audit(audited_process: str, audited_department: str, planned_date: str,
                   registered_on: str | None = None) -> dict[str, str]:
    """Give a new internal audit its record id: ``AUD-<planned year>-<6 hex>``."""
    if not _norm(audited_process) or not _norm(audited_department):
        raise ValueError("an audit needs the audited process and its department")
    planned = date.fromisoformat(planned_date)
    return {"auditId": f"AUD-{planned:%Y}-{uuid.uuid4().hex[:6].upper()}",
            "registeredOn": _today(registered_on).isoformat()}


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
        "checkedOn": _today(checked_on).isoformat(),
    }


def notify(subject: str, task: str, users: list[str] | None = None,
           recipients_role: str | list[str] | None = None) -> dict[str, Any]:
    """Build a notification record for the engine to deliver, to named users and/or every holder of roles.

    Blank names and duplicates are dropped; at least one recipient (user or role) is required. ``task`` is
    the BPMN id of the task the notification is about.
    """
    roles = [recipients_role] if isinstance(recipients_role, str) else recipients_role
    named, held = recipients(users, roles)
    return queued(recipientsRole=held, recipientsUsers=named, subject=subject, task=task)


def _counts(findings: list[dict[str, Any]]) -> dict[str, int]:
    return {grade: sum(1 for f in findings if f.get("grade") == grade) for grade in GRADES}


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
        "sentOn": _today(sent_on).isoformat(),
        "status": "sent",
    }


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
        "closedOn": _today(closed_on).isoformat(),
        "findingCounts": _counts(findings),
        "capaClosed": len(closed),
        "recordsLocked": True,
        "recordsHash": hashlib.sha256(records.encode("utf-8")).hexdigest(),
    }
