"""Service-task handlers of project closure (bpmn/project_closure.bpmn, PMBOK Close Project or Phase; #6).

Each handler is a plain function of keyword arguments that returns JSON data. Handlers never touch the
database or the engine: the engine evaluates the BPMN parameter expressions, calls the handler and stores the
result in the task data under the operator's ``resultVariable``. Where the catalogue names a system pmoflow does
not have yet (the CM archive, the knowledge base, staffing #7, process improvement #9), the handler builds the
record for it; delivery of notifications is the engine's job.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

from pmoflow.engine.handlers import handler, new_id, today

#: A curator's decisions on a lesson.
DISPOSITIONS = ("Publish", "Merge", "Reject")
#: The search that indexes published lessons for new projects (project initiation, step 4).
INDEXED_FOR = "initiation.search_lessons"


def _required(**values: Any) -> None:
    blank = [name for name, value in values.items() if not str(value or "").strip()]
    if blank:
        raise ValueError(f"missing {', '.join(blank)}")


@handler
def archive_baseline(project_id: str, baseline_tag: str, repository: str, items: list[dict[str, Any]],
                     location: str, archived_on: str | None = None) -> dict[str, Any]:
    """Archive record of the project's final baseline, with a SHA-256 checksum of its manifest.

    The manifest is the CIs sorted by id, each ``{ci, version}``; the checksum covers the project id, the tag,
    the repository and the manifest (canonical JSON), so the same baseline always gives the same checksum and
    an auditor can recompute it. Duplicate CIs are refused.
    """
    _required(project_id=project_id, baseline_tag=baseline_tag, repository=repository, location=location)
    if not items:
        raise ValueError("a baseline needs at least one configuration item")
    manifest = sorted(({"ci": str(i["ci"]).strip(), "version": str(i["version"]).strip()} for i in items),
                      key=lambda i: (i["ci"], i["version"]))
    names = [i["ci"] for i in manifest]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"configuration item(s) listed twice: {', '.join(twice)}")
    content = {"projectId": project_id, "baselineTag": baseline_tag.strip(), "repository": repository.strip(),
               "manifest": manifest}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "archiveId": new_id("ARC", 8),
        **content,
        "location": location.strip(),
        "itemCount": len(manifest),
        "checksum": "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        "archivedOn": today(archived_on).isoformat(),
    }


@handler
def release_staff(project_id: str, people: list[dict[str, Any]], requested_on: str | None = None) -> dict[str, Any]:
    """A staff release request for resource planning (PM assignment / staffing, #7, not in pmoflow yet): the
    request is recorded with status ``requested``; once #7 exists this becomes a message to it."""
    _required(project_id=project_id)
    if not people:
        raise ValueError("the staff release list is empty")
    return {
        "releaseId": new_id("REL", 8),
        "process": "pm_staffing",
        "projectId": project_id,
        "people": [{"user": p["user"].strip(), "role": p["role"].strip(), "releaseOn": p["releaseOn"]}
                   for p in people],
        "status": "requested",
        "requestedOn": today(requested_on).isoformat(),
    }


@handler
def publish_lessons(project_id: str, project_title: str, lessons: list[dict[str, Any]],
                    curations: list[dict[str, Any]], published_on: str | None = None) -> dict[str, Any]:
    """Publish the curated lessons to the knowledge base and index them for new projects.

    Each lesson (``entryId`` LL-n) needs exactly one curation. Publish gives the lesson a new knowledge-base
    id; Merge adds it to an existing lesson (``mergeInto``); Reject keeps it out, with the reason. A published
    or merged lesson marked ``processLevel`` also becomes an improvement proposal for the SEPG (process
    improvement, #9, not in pmoflow yet: recorded with status ``requested``).
    """
    by_entry: dict[str, dict[str, Any]] = {}
    for c in curations:
        if c["entryId"] in by_entry:
            raise ValueError(f"lesson {c['entryId']} is curated twice")
        if c["disposition"] not in DISPOSITIONS:
            raise ValueError(f"unknown disposition {c['disposition']!r} for {c['entryId']}")
        by_entry[c["entryId"]] = c
    ids = [lesson["entryId"] for lesson in lessons]
    missing = [i for i in ids if i not in by_entry]
    unknown = sorted(set(by_entry) - set(ids))
    if missing or unknown:
        raise ValueError("every lesson needs one curation; "
                         + "; ".join(filter(None, [missing and f"missing: {', '.join(missing)}",
                                                   unknown and f"unknown: {', '.join(unknown)}"])))
    day = today(published_on)
    records, rejected, proposals = [], [], []
    for lesson in lessons:
        curation = by_entry[lesson["entryId"]]
        if curation["disposition"] == "Reject":
            rejected.append({"entryId": lesson["entryId"], "reason": curation.get("reason", "").strip()})
            continue
        if curation["disposition"] == "Merge" and not str(curation.get("mergeInto", "")).strip():
            raise ValueError(f"lesson {lesson['entryId']} is merged but names no lesson to merge into")
        merged = curation["disposition"] == "Merge"
        kb_id = curation["mergeInto"].strip() if merged else new_id(f"LL-{day:%Y}")
        tags = list(dict.fromkeys([*lesson.get("tags", []), *curation.get("keywords", [])]))
        records.append({
            "kbId": kb_id,
            "entryId": lesson["entryId"],
            "action": "Merged" if merged else "Published",
            "knowledgeArea": lesson["knowledgeArea"],
            "title": lesson["recommendation"].strip().split(". ")[0][:120],
            "recommendation": lesson["recommendation"].strip(),
            "tags": tags,
            "reusableAsset": lesson.get("reusableAsset", ""),
            "sourceProject": project_id,
            "sourceTitle": project_title,
            "indexedFor": INDEXED_FOR,
            "publishedOn": day.isoformat(),
        })
        if lesson.get("processLevel"):
            proposals.append({
                "requestId": new_id("PIP", 8),
                "addressedTo": "SEPG",
                "process": "process_improvement",
                "source": "lessons-learned",
                "sourceRef": f"{project_id}/{lesson['entryId']}",
                "kbId": kb_id,
                "proposal": lesson["recommendation"].strip(),
                "status": "requested",
            })
    return {
        "records": records,
        "rejected": rejected,
        "improvementRequests": proposals,
        "publishedCount": len([r for r in records if r["action"] == "Published"]),
        "mergedCount": len([r for r in records if r["action"] == "Merged"]),
        "rejectedCount": len(rejected),
        "publishedOn": day.isoformat(),
    }


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year + years, day=28)


@handler
def close_project(project_id: str, terminated: bool, retention_years: int, archive_checksum: str,
                  closed_on: str | None = None) -> dict[str, Any]:
    """Close the project: status Closed (or Terminated), its records locked, kept for ``retention_years``.

    The record names the checksum of the final baseline's archive, so the closure points at what was kept.
    """
    _required(project_id=project_id, archive_checksum=archive_checksum)
    if not isinstance(retention_years, int) or isinstance(retention_years, bool) or retention_years < 1:
        raise ValueError(f"retention must be a whole number of years, at least 1, not {retention_years!r}")
    day = today(closed_on)
    return {
        "projectId": project_id,
        "status": "Terminated" if terminated else "Closed",
        "recordsLocked": True,
        "lockedOn": day.isoformat(),
        "retentionYears": retention_years,
        "retainUntil": _add_years(day, retention_years).isoformat(),
        "archiveChecksum": archive_checksum,
    }


@handler
def kill_request(request: dict[str, Any]) -> dict[str, Any]:
    """What a quality gate's KILL (the message closure_requested, ``closureRequest``) asks for, in the terms of the
    start form: a terminated closure of the project, with the gate's rationale and reference."""
    _required(**{k: request.get(k) for k in ("projectId", "projectTitle", "pmUser")})
    return {
        "projectId": request["projectId"],
        "projectTitle": request["projectTitle"],
        "pmUser": request["pmUser"],
        "sqaUser": request.get("sqaUser", ""),
        "sponsorUser": "",
        "closureType": "terminated",
        "contractType": request.get("contractType", "unknown"),
        "gateRef": request.get("gateRef", ""),
        "terminationRationale": request.get("rationale", ""),
        "closureTrigger": "gate-kill",
    }


@handler
def prepare(project_id: str, closure_type: str, pm_user: str, sqa_user: str, sponsor_user: str, gate_ref: str,
            termination_rationale: str) -> dict[str, Any]:
    """Who acts on the closure, and what a termination says.

    The project manager's lane goes to them, the SQA lane to the named SQA and the Sponsor lane to the named
    sponsor; an SQA who is also the project manager may not audit the closure, so the SQA lane then stays open to
    any SQA. A terminated closure keeps its rationale (one naming the gate is written when none was given); any
    other closure has none."""
    pm, sqa, sponsor = pm_user.strip(), sqa_user.strip(), sponsor_user.strip()
    owners = {"Project Manager": [pm]}
    if sqa and sqa != pm:
        owners["SQA"] = [sqa]
    if sponsor:
        owners["Sponsor"] = [sponsor]
    terminated = closure_type == "terminated"
    rationale = termination_rationale if terminated else ""
    if terminated and not rationale.strip():
        where = gate_ref or "the PMO's decision"
        rationale = f"Terminated at {where}; no rationale was given."
    return {"pmUser": pm, "sqaUser": sqa, "lane_owners": owners, "closureRef": f"{project_id}/closure",
            "terminated": terminated, "terminationRationale": rationale}


@handler
def check_checklist(checklist: dict[str, Any], closure_type: str, contract_type: str, pm_user: str,
                    acceptance: dict[str, Any], contracts_closed: bool, contract_closure_ref: str, handover_ref: str,
                    remaining_items: list[dict[str, Any]]) -> str:
    """What the checklist form cannot check: the items the ClosureChecklist rules (``checklist``: their
    ``acceptanceRequired``, ``contractClosureRequired`` and ``handoverRequired``) make mandatory, and that no open
    item stays with the project manager, who leaves. The problems in one message; empty when none."""
    problems = []
    if checklist["acceptanceRequired"] and not acceptance:
        problems.append(f"The acceptance document is required for a {closure_type} {contract_type} project: give its "
                        "reference, who accepted and when.")
    if checklist["contractClosureRequired"] and not contracts_closed:
        problems.append("The contracts must be closed before the project closes.")
    elif checklist["contractClosureRequired"] and not contract_closure_ref.strip():
        problems.append("Give the contract closure record.")
    if checklist["handoverRequired"] and not handover_ref.strip():
        problems.append("Give the handover record of the deliverables.")
    kept = [i["ref"] for i in remaining_items if i["owner"].strip().lower() == pm_user.lower()]
    if kept:
        problems.append("Open items must go to an owner who stays after closure, not the project manager: "
                        f"{', '.join(kept)}.")
    return " ".join(problems)


@handler
def check_curation(lessons: list[dict[str, Any]], curations: list[dict[str, Any]]) -> str:
    """Every lesson of the workshop gets exactly one curation decision, and only those lessons get one. The
    problems in one message; empty when none."""
    given = [c["entryId"] for c in curations]
    expected = [lesson["entryId"] for lesson in lessons]
    missing = [i for i in expected if i not in given]
    unknown = sorted({i for i in given if i not in expected})
    twice = sorted({i for i in given if given.count(i) > 1})
    problems = []
    if missing:
        problems.append(f"No decision for {', '.join(missing)}.")
    if unknown:
        problems.append(f"No lesson {', '.join(unknown)} in this workshop (the lessons are {', '.join(expected)}).")
    if twice:
        problems.append(f"Decide {', '.join(twice)} once only.")
    return " ".join(problems)
