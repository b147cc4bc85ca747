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
from typing import Any

from pmoflow.engine.handlers import handler, new_id, today

from . import policy

#: Where a proposal comes from: a staff member's form, or a message from an audit's opportunity for
#: improvement (#4b), a corrective action needing a QMS change (#4c) or a closure's process-level lesson (#6).
SOURCES = ("STAFF", "OFI", "CAPA", "LESSON")
#: How a proposal ends (data key ``outcome``).
OUTCOMES = ("DUPLICATE", "REJECTED", "ABANDONED", "DEPLOYED")


def standard_process_set() -> dict[str, bool]:
    """The assets a proposal may change, each with whether it is ISO-controlled documented information of the
    QMS (a change then needs the Quality Director's countersignature when the SEPG board approves it): the
    organisation's policy, ``data/standard_process_set.json``, which the proposal forms offer."""
    return {a["asset"]: a["isoControlled"] for a in policy.load("standard_process_set")}


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()


@handler
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
    known = standard_process_set()
    unknown = [a for a in assets if a not in known]
    if unknown:
        raise ValueError(f"not in the standard process set: {', '.join(unknown)}")
    iso_assets = [a for a in assets if known[a]]
    day = today(registered_on)
    return {
        "pipId": new_id(f"PIP-{day.year}"),
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


@handler
def request_baseline(pip_id: str, asset_updates: list[dict[str, Any]], document_ref: str,
                     requested_on: str | None = None) -> dict[str, Any]:
    """A Document baseline request to configuration management for the updated assets (configuration baseline
    and audit, #5, not in pmoflow yet: recorded with status ``requested``; once #5 exists this becomes a
    message to it). Each update names an asset of the standard process set and its new version."""
    if _blank(document_ref):
        raise ValueError("a baseline request needs the reference of the updated documents")
    if not asset_updates:
        raise ValueError("a baseline request needs at least one updated asset")
    known, items = standard_process_set(), []
    for update in asset_updates:
        asset, version = str(update.get("asset", "")).strip(), str(update.get("newVersion", "")).strip()
        if asset not in known:
            raise ValueError(f"not in the standard process set: {asset or '(blank)'}")
        if not version:
            raise ValueError(f"no new version for {asset}")
        items.append({"ci": asset, "version": version})
    names = [i["ci"] for i in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"asset(s) listed twice: {', '.join(twice)}")
    return {
        "baselineRequestId": new_id("BLR", 8),
        "process": "configuration_baseline",
        "baselineType": "Document",
        "pipId": pip_id,
        "items": sorted(items, key=lambda i: i["ci"]),
        "documentRef": document_ref.strip(),
        "addressedTo": "Configuration Manager",
        "status": "requested",
        "requestedOn": today(requested_on).isoformat(),
    }


@handler
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
        "closedOn": today(closed_on).isoformat(),
    }


@handler
def read_message(message: dict[str, Any]) -> dict[str, Any]:
    """A proposal another process sent (the message improvement_proposed), in the terms of the start form: its
    fields stripped, no assets yet. Only a complete message from a known source goes to its submitter to complete
    (``needsDetails``); registration refuses any other, saying what is missing."""
    keys = ("source", "reference", "title", "problem", "proposal", "processArea", "submitter")
    fields = {k: str(message.get(k, "")).strip() for k in keys}
    submitter = fields["submitter"]
    return {
        "pipSource": fields["source"], "pipReference": fields["reference"], "title": fields["title"],
        "problem": fields["problem"], "proposal": fields["proposal"], "processArea": fields["processArea"],
        "submitter": submitter, "affectedAssets": [], "isoControlled": False, "toolChange": False, "evidence": "",
        "needsDetails": fields["source"] in SOURCES[1:] and all(fields.values()),
        "lane_owners": {"Submitter": [submitter]} if submitter else {},
    }


@handler
def check_plan(pilot_required: bool, pilot_projects: list[dict[str, Any]],
               success_criteria: list[dict[str, Any]]) -> str:
    """The action plan against the PIPApproval rules: a pilot, when they ask for one, needs 1-2 pilot projects
    (each once) and the success criteria it is judged by. The problem, or empty."""
    ids = [p["projectId"].strip() for p in pilot_projects]
    if pilot_required and not pilot_projects:
        return "The PIPApproval rules ask for a pilot: name 1 or 2 pilot projects."
    if pilot_required and not success_criteria:
        return "The PIPApproval rules ask for a pilot: give the success criteria it is judged by."
    if len(set(ids)) != len(ids):
        return "A pilot project is listed twice."
    return ""


@handler
def check_pilot(decision: str, criteria_unmet: list[str], pilot_projects: list[dict[str, Any]], comment: str,
                pilots: list[dict[str, Any]]) -> dict[str, Any]:
    """The owner's decision on a pilot (pmo-processes.md #9, step 6): Deploy only when every success criterion was
    met, otherwise Revise or Abandon. A refused Deploy gives ``problem``; any other decision is added to
    ``pilots``."""
    if decision == "Deploy" and criteria_unmet:
        return {"problem": f"Not every success criterion was met ({', '.join(criteria_unmet)}): revise the plan or "
                           "abandon the proposal.", "pilots": pilots}
    record = {"round": len(pilots) + 1, "projects": [p["projectId"] for p in pilot_projects],
              "criteriaUnmet": criteria_unmet, "decision": decision,
              "comment": comment.strip() if decision != "Deploy" else ""}
    return {"problem": "", "pilots": [*pilots, record]}
