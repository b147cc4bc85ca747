"""Service-task handlers of the corrective action process (bpmn/corrective_action.bpmn, ISO 9001 §10.2).

Each handler is a plain function of keyword arguments that returns JSON data. Handlers never touch the
database or the engine: the engine evaluates the BPMN parameter expressions, calls the handler and stores the
result in the task data under the operator's ``resultVariable``. Delivery of notifications is the engine's
job; ``escalate`` only builds the record.
"""

from __future__ import annotations

import re
from typing import Any

from pmoflow.engine.handlers import handler, new_id, today

#: Grades a corrective action is opened for (an observation or OFI gets none: see pmo-processes.md 4c).
GRADES = ("Major", "Minor")
#: Where a finding comes from, per the CAPA call contract.
SOURCES = ("audit", "gate")
#: The finding fields every caller passes (the contract of the call activity).
FINDING_FIELDS = ("id", "grade", "clause", "requirement", "evidence", "description", "source", "sourceRef")


def contract_finding(finding: dict[str, Any], source: str, source_ref: str) -> dict[str, Any]:
    """A finding in the call contract of corrective_action (``capaFinding``): the fields every caller passes,
    with where it comes from (``source``, one of :data:`SOURCES`, and the caller's reference)."""
    return {**{f: finding[f] for f in FINDING_FIELDS[:6]}, "source": source, "sourceRef": source_ref}


@handler("capa.open")  # not capa.open_capa: the id the process has always named
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
    day = today(opened_on)
    return {
        "capaId": new_id(f"CAPA-{slug}"),
        "findingId": finding["id"],
        "grade": finding["grade"],
        "source": finding["source"],
        "sourceRef": finding["sourceRef"],
        "auditor": auditor.strip(),
        "auditee": auditee.strip(),
        "openedOn": day.isoformat(),
    }

