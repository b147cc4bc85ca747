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
import uuid
from datetime import date
from typing import Any

from pmoflow.workflows.notifications import queued, recipients

#: Notification levels of the closure's SLA timers.
LEVELS = ("reminder", "escalation")
#: A curator's decisions on a lesson.
DISPOSITIONS = ("Publish", "Merge", "Reject")
#: The search that indexes published lessons for new projects (project initiation, step 4).
INDEXED_FOR = "initiation.search_lessons"


def _today(on: str | None) -> date:
    return date.fromisoformat(on) if on else date.today()


def _hex(n: int) -> str:
    return uuid.uuid4().hex[:n].upper()


def _required(**values: Any) -> None:
    blank = [name for name, value in values.items() if not str(value or "").strip()]
    if blank:
        raise ValueError(f"missing {', '.join(blank)}")


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
        "archiveId": f"ARC-{_hex(8)}",
        **content,
        "location": location.strip(),
        "itemCount": len(manifest),
        "checksum": "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        "archivedOn": _today(archived_on).isoformat(),
    }


def release_staff(project_id: str, people: list[dict[str, Any]], requested_on: str | None = None) -> dict[str, Any]:
    """A staff release request for resource planning (PM assignment / staffing, #7, not in pmoflow yet): the
    request is recorded with status ``requested``; once #7 exists this becomes a message to it."""
    _required(project_id=project_id)
    if not people:
        raise ValueError("the staff release list is empty")
    return {
        "releaseId": f"REL-{_hex(8)}",
        "process": "pm_staffing",
        "projectId": project_id,
        "people": [{"user": p["user"].strip(), "role": p["role"].strip(), "releaseOn": p["releaseOn"]}
                   for p in people],
        "status": "requested",
        "requestedOn": _today(requested_on).isoformat(),
    }


def notify(level: str, project_id: str, subject: str, task: str, users: list[str] | None = None,
           roles: list[str] | None = None) -> dict[str, Any]:
    """A reminder or escalation about an overdue closure task (``task`` is its BPMN id), for the engine to
    deliver to the named users and everyone holding one of ``roles``."""
    if level not in LEVELS:
        raise ValueError(f"unknown notification level {level!r}; expected one of {', '.join(LEVELS)}")
    named, held = recipients(users, roles)
    return queued(level=level, projectId=project_id, subject=subject, task=task, recipientsUsers=named,
                  recipientsRole=held)


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
    day = _today(published_on)
    records, rejected, proposals = [], [], []
    for lesson in lessons:
        curation = by_entry[lesson["entryId"]]
        if curation["disposition"] == "Reject":
            rejected.append({"entryId": lesson["entryId"], "reason": curation.get("reason", "").strip()})
            continue
        if curation["disposition"] == "Merge" and not str(curation.get("mergeInto", "")).strip():
            raise ValueError(f"lesson {lesson['entryId']} is merged but names no lesson to merge into")
        merged = curation["disposition"] == "Merge"
        kb_id = curation["mergeInto"].strip() if merged else f"LL-{day:%Y}-{_hex(6)}"
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
                "requestId": f"PIP-{_hex(8)}",
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


def close_project(project_id: str, terminated: bool, retention_years: int, archive_checksum: str,
                  closed_on: str | None = None) -> dict[str, Any]:
    """Close the project: status Closed (or Terminated), its records locked, kept for ``retention_years``.

    The record names the checksum of the final baseline's archive, so the closure points at what was kept.
    """
    _required(project_id=project_id, archive_checksum=archive_checksum)
    if not isinstance(retention_years, int) or isinstance(retention_years, bool) or retention_years < 1:
        raise ValueError(f"retention must be a whole number of years, at least 1, not {retention_years!r}")
    day = _today(closed_on)
    return {
        "projectId": project_id,
        "status": "Terminated" if terminated else "Closed",
        "recordsLocked": True,
        "lockedOn": day.isoformat(),
        "retentionYears": retention_years,
        "retainUntil": _add_years(day, retention_years).isoformat(),
        "archiveChecksum": archive_checksum,
    }
