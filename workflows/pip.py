"""Service-task handlers of the process improvement proposal (bpmn/process_improvement.bpmn; CMMI OPF; #9).

Each handler is a plain function of keyword arguments that returns JSON data. Handlers never touch the
database or the engine: the engine evaluates the BPMN parameter expressions, calls the handler and stores the
result in the task data under the operator's ``resultVariable``. Where the catalogue names a process pmoflow
does not have yet (configuration baseline #5), the handler builds the request for it with status
``requested``; delivery of notifications is the engine's job.

A proposal comes from a staff member (the start form) or from another process by the message
``improvement_proposed`` whose payload is::

    {"source": "OFI" | "CAPA" | "LESSON", "reference": "<id of the finding, CAPA or lesson>",
     "title": ..., "problem": ..., "proposal": ..., "processArea": ..., "submitter": "<user name>"}
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any

from pmoflow.workflows.notifications import queued, recipients

#: Where a proposal comes from: a staff member's form, or a message from an audit's opportunity for
#: improvement (#4b), a corrective action needing a QMS change (#4c) or a closure's process-level lesson (#6).
SOURCES = ("STAFF", "OFI", "CAPA", "LESSON")
#: The payload fields of the improvement_proposed message, each a non-blank string.
MESSAGE_FIELDS = ("source", "reference", "title", "problem", "proposal", "processArea", "submitter")

#: The organisation's standard process set (the assets a proposal may change), and whether each one is
#: ISO-controlled documented information of the QMS (a change then needs the Quality Director's countersignature
#: when the SEPG board approves it). The start and details forms offer exactly these names.
STANDARD_PROCESS_SET: dict[str, bool] = {
    "QM-00 Quality manual": True,
    "OSP-01 Project initiation procedure": True,
    "OSP-02 Quality gate procedure": True,
    "OSP-03 Change control procedure": True,
    "OSP-04 Internal audit procedure": True,
    "OSP-05 Corrective action procedure": True,
    "OSP-06 Configuration management procedure": True,
    "OSP-07 Project closure procedure": True,
    "OSP-08 Measurement and analysis procedure": False,
    "OSP-09 Process improvement procedure": False,
    "OSP-10 Training procedure": False,
    "GDL-01 Tailoring guideline": False,
    "GDL-02 Estimation guideline": False,
    "TPL-01 Project charter template": False,
    "TPL-02 Status report template": False,
    "CHK-01 Gate checklists": False,
    "TOOL-01 Project workspace": False,
    "TOOL-02 Metrics dashboard": False,
}

#: Notification levels: the triage SLA reminder and escalation, the triage answer, the deployment
#: announcement and the final outcome.
LEVELS = ("reminder", "escalation", "accepted", "announcement", "outcome")
#: How a proposal ends (data key ``outcome``).
OUTCOMES = ("DUPLICATE", "REJECTED", "ABANDONED", "DEPLOYED")


def _today(on: str | None) -> date:
    return date.fromisoformat(on) if on else date.today()


def _hex(n: int) -> str:
    return uuid.uuid4().hex[:n].upper()


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


def register(source: str, reference: str, title: str, problem: str, proposal: str, process_area: str,
             submitter: str, assets: list[str], iso_controlled: bool, tool_change: bool,
             registered_on: str | None = None) -> dict[str, Any]:
    """Register a proposal: a readable id ``PIP-<year>-<6 hex>`` and the trace to its source.

    Checks the contract of both ways in: a known source; a reference for a proposal another process sent;
    title, problem, proposal, process area and submitter given; at least one asset, each from the standard
    process set. ``isoControlled`` is true when the submitter said so or an asset is ISO-controlled.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown proposal source {source!r}; expected one of {', '.join(SOURCES)}")
    fields = {"reference": reference, "title": title, "problem": problem, "proposal": proposal,
              "processArea": process_area, "submitter": submitter}
    if source == "STAFF":
        del fields["reference"]
    missing = [name for name, value in fields.items() if _blank(value)]
    if missing:
        where = "the improvement_proposed message" if source != "STAFF" else "the proposal"
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    assets = list(dict.fromkeys(a.strip() for a in assets or [] if isinstance(a, str) and a.strip()))
    if not assets:
        raise ValueError("name at least one asset of the standard process set")
    unknown = [a for a in assets if a not in STANDARD_PROCESS_SET]
    if unknown:
        raise ValueError(f"not in the standard process set: {', '.join(unknown)}")
    iso_assets = [a for a in assets if STANDARD_PROCESS_SET[a]]
    day = _today(registered_on)
    return {
        "pipId": f"PIP-{day.year}-{_hex(6)}",
        "source": source,
        "reference": reference.strip() if isinstance(reference, str) else "",
        "submitter": submitter.strip(),
        "title": title.strip(),
        "assets": assets,
        "isoControlledAssets": iso_assets,
        "isoControlled": bool(iso_controlled) or bool(iso_assets),
        "toolChange": bool(tool_change),
        "registeredOn": day.isoformat(),
    }


def notify(level: str, pip_id: str, subject: str, task: str = "", users: list[str] | None = None,
           roles: list[str] | None = None) -> dict[str, Any]:
    """A notice about a proposal (``level`` one of :data:`LEVELS`) for the engine to deliver to the named users
    and everyone holding one of ``roles``; ``task`` is the BPMN id of the task it is about, if any."""
    if level not in LEVELS:
        raise ValueError(f"unknown notification level {level!r}; expected one of {', '.join(LEVELS)}")
    named, held = recipients(users, roles)
    if _blank(subject):
        raise ValueError("a notification needs a subject")
    return queued(level=level, pipId=pip_id, subject=subject.strip(), task=task, recipientsUsers=named,
                  recipientsRole=held)


def request_baseline(pip_id: str, asset_updates: list[dict[str, Any]], document_ref: str,
                     requested_on: str | None = None) -> dict[str, Any]:
    """A Document baseline request to configuration management for the updated assets (configuration baseline
    and audit, #5, not in pmoflow yet: recorded with status ``requested``; once #5 exists this becomes a
    message to it). Each update names an asset of the standard process set and its new version."""
    if _blank(document_ref):
        raise ValueError("a baseline request needs the reference of the updated documents")
    if not asset_updates:
        raise ValueError("a baseline request needs at least one updated asset")
    items = []
    for update in asset_updates:
        asset, version = str(update.get("asset", "")).strip(), str(update.get("newVersion", "")).strip()
        if asset not in STANDARD_PROCESS_SET:
            raise ValueError(f"not in the standard process set: {asset or '(blank)'}")
        if not version:
            raise ValueError(f"no new version for {asset}")
        items.append({"ci": asset, "version": version})
    names = [i["ci"] for i in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"asset(s) listed twice: {', '.join(twice)}")
    return {
        "baselineRequestId": f"BLR-{_hex(8)}",
        "process": "configuration_baseline",
        "baselineType": "Document",
        "pipId": pip_id,
        "items": sorted(items, key=lambda i: i["ci"]),
        "documentRef": document_ref.strip(),
        "addressedTo": "Configuration Manager",
        "status": "requested",
        "requestedOn": _today(requested_on).isoformat(),
    }


def close(record: dict[str, Any], outcome: str, stage: str, reason: str = "",
          approvals: list[dict[str, Any]] | None = None, deployment: dict[str, Any] | None = None,
          adoption: dict[str, Any] | None = None, closed_on: str | None = None) -> dict[str, Any]:
    """The proposal's closing record: the auditor's trace from its source (audit finding, CAPA, lesson or staff)
    through the decision to the asset versions, training and adoption, with a one-line summary for the
    submitter."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
    if outcome != "DEPLOYED" and _blank(reason):
        raise ValueError(f"a {outcome} proposal needs the reason")
    pip_id = record["pipId"]
    origin = "a staff member" if record["source"] == "STAFF" else f"{record['source']} {record['reference']}"
    summary = f"Improvement proposal {pip_id} ({record['title']}, from {origin}): {outcome.lower()}"
    summary += f" at {stage}" if outcome != "DEPLOYED" else ""
    if outcome == "DEPLOYED" and adoption:
        state = "adopted" if adoption.get("adopted") else "not adopted yet"
        summary += f"; adoption {adoption.get('adoptionRatePct', 0)}% ({state})"
    summary += f". {reason.strip()}" if not _blank(reason) else "."
    return {
        "pipId": pip_id,
        "source": record["source"],
        "reference": record["reference"],
        "submitter": record["submitter"],
        "outcome": outcome,
        "stage": stage,
        "reason": reason.strip() if isinstance(reason, str) else "",
        "approvals": approvals or [],
        "deployment": deployment or {},
        "adoption": adoption or {},
        "summary": re.sub(r"\s+", " ", summary),
        "closedOn": _today(closed_on).isoformat(),
    }
