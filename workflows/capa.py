"""Service-task handlers of the corrective action process (bpmn/corrective_action.bpmn, ISO 9001 §10.2).

Each handler is a plain function of keyword arguments that returns JSON data. Handlers never touch the
database or the engine: the engine evaluates the BPMN parameter expressions, calls the handler and stores the
result in the task data under the operator's ``resultVariable``. Delivery of notifications is the engine's
job; ``escalate`` only builds the record.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

from pmoflow.workflows.notifications import queued, recipients

#: Grades a corrective action is opened for (an observation or OFI gets none: see pmo-processes.md 4c).
GRADES = ("Major", "Minor")
#: Where a finding comes from, per the CAPA call contract.
SOURCES = ("audit", "gate")
#: The finding fields every caller passes (the contract of the call activity).
FINDING_FIELDS = ("id", "grade", "clause", "requirement", "evidence", "description", "source", "sourceRef")
#: Escalation levels of an overdue corrective action, in ladder order.
LEVELS = ("plan-overdue", "reminder", "overdue", "management-review")


def _today(on: str | None) -> date:
    return date.fromisoformat(on) if on else date.today()


def open_capa(finding: dict[str, Any], auditor: str, auditee: str, opened_on: str | None = None) -> dict[str, Any]:
    """Register a corrective action for one nonconformity: a readable id ``CAPA-<finding id>-<6 hex>``.

    Checks the call contract: every finding field present, a Major or Minor grade, a known source, and named
    auditor and auditee. (That the two are different people is enforced by segregation of duties on the
    tasks, not here.)
    """
    missing = [f for f in FINDING_FIELDS if not str(finding.get(f, "")).strip()]
    if missing:
        raise ValueError(f"the finding lacks {', '.join(missing)}")
    if finding["grade"] not in GRADES:
        raise ValueError(f"a corrective action is opened for a Major or Minor finding, not {finding['grade']!r}")
    if finding["source"] not in SOURCES:
        raise ValueError(f"unknown finding source {finding['source']!r}; expected one of {', '.join(SOURCES)}")
    if not str(auditor).strip() or not str(auditee).strip():
        raise ValueError("a corrective action needs an auditor and an auditee (user names)")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(finding["id"])).strip("-").upper() or "NC"
    day = _today(opened_on)
    return {
        "capaId": f"CAPA-{slug}-{uuid.uuid4().hex[:6].upper()}",
        "findingId": finding["id"],
        "grade": finding["grade"],
        "source": finding["source"],
        "sourceRef": finding["sourceRef"],
        "auditor": auditor.strip(),
        "auditee": auditee.strip(),
        "openedOn": day.isoformat(),
    }


def escalate(level: str, capa_id: str, subject: str, users: list[str] | None = None,
             roles: list[str] | None = None) -> dict[str, Any]:
    """A reminder or escalation record of an overdue corrective action, for the engine to deliver.

    ``level`` is one of :data:`LEVELS`; ``management-review`` also flags the action for the next management
    review (ISO 9001 §9.3). Recipients are the named users plus everyone holding one of ``roles``; blank
    names and duplicates are dropped, and there must be at least one recipient.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown escalation level {level!r}; expected one of {', '.join(LEVELS)}")
    named, held = recipients(users, roles, "an escalation")
    return queued(level=level, capaId=capa_id, subject=subject, recipientsUsers=named, recipientsRole=held,
                  flaggedForManagementReview=level == "management-review")
