"""Service-task handlers of the project initiation process (bpmn/project_initiation.bpmn).

Each handler is a plain function of keyword arguments that returns JSON data (dicts, lists, strings,
numbers). Handlers never touch the database or the engine: the engine evaluates the BPMN parameter
expressions, calls the handler and stores the result in the task data under the operator's
``resultVariable``. The gate profiles (gates planned, kickoff and Gate 1 offsets) are policy, read from
``data/gate_profiles.json``; the approvers' escalation ladder is ``data/escalation.json``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pmoflow.engine.handlers import handler, new_id, today

from . import policy

LESSONS_FILE = Path(__file__).parent / "data" / "lessons_learned.json"

#: Words ignored when matching keywords against lessons.
STOPWORDS_TEXT = (
    "a an and are as at be by for from has have in into is it its of on or our so that the their this "
    "to we will with without new project need needs"
)
_STOPWORDS = frozenset(STOPWORDS_TEXT.split())


@handler
def register_request(title: str, submitted_on: str | None = None) -> dict[str, str]:
    """Give a new project request a readable id: ``REQ-<yyyymmdd>-<6 hex>``.

    ``submitted_on`` is an ISO date (``2027-01-31``); today when missing.
    """
    if not str(title).strip():
        raise ValueError("a project request needs a title")
    day = today(submitted_on)
    return {"requestId": new_id(f"REQ-{day:%Y%m%d}"), "registeredOn": day.isoformat()}


@lru_cache(maxsize=1)
def load_lessons() -> tuple[dict[str, Any], ...]:
    """The bundled lessons-learned knowledge base (``workflows/data/lessons_learned.json``)."""
    with LESSONS_FILE.open(encoding="utf-8") as fh:
        return tuple(json.load(fh))


def _tokens(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in _STOPWORDS}


@handler
def search_lessons(project_type: str, keywords: str | list[str], limit: int = 5) -> list[dict[str, Any]]:
    """Return the ``limit`` lessons most relevant to a project type and free-text keywords.

    Score: 3 points when the lesson's project type matches (1 when the lesson applies to "Any" type),
    plus 1 point per distinct keyword word found in the lesson's tags or title. Lessons scoring 0 are
    left out; ties are broken by lesson id so results are stable.
    """
    words = _tokens(" ".join(keywords) if isinstance(keywords, list) else str(keywords))
    scored = []
    for lesson in load_lessons():
        score = 0
        if lesson["projectType"] == project_type:
            score += 3
        elif lesson["projectType"] == "Any":
            score += 1
        vocabulary = _tokens(" ".join(lesson["tags"])) | _tokens(lesson["title"])
        score += len(words & vocabulary)
        if score > 0:
            scored.append((score, lesson))
    scored.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
    return [
        {
            "id": lesson["id"],
            "title": lesson["title"],
            "projectType": lesson["projectType"],
            "recommendation": lesson["recommendation"],
            "score": score,
        }
        for score, lesson in scored[:limit]
    ]


@handler
def create_project(
    requestId: str,
    title: str,
    gateProfile: str,
    conditions: list[dict[str, Any]] | None = None,
    authorised_on: str | None = None,
) -> dict[str, Any]:
    """Create the project record for an authorised charter.

    Returns the project id, the charter baseline (v1.0, to be put under CM), the kickoff and Gate 1 due
    dates, and the approval conditions, each tracked to Gate 1: a condition keeps the due date its approver
    gave; ``dueAfterGate1`` flags one that is due after the Gate 1 review, where it will be checked.
    """
    profiles = policy.load("gate_profiles")
    if gateProfile not in profiles:
        raise ValueError(f"unknown gate profile {gateProfile!r}; expected one of {sorted(profiles)}")
    profile = profiles[gateProfile]
    day = today(authorised_on)
    kickoff = day + timedelta(days=profile["kickoffDays"])
    gate1 = kickoff + timedelta(days=profile["gate1DaysAfterKickoff"])
    tracked = [
        {
            "text": c["text"],
            "owner": c["owner"],
            "due": c["due"],
            "trackedTo": "Gate 1",
            "dueAfterGate1": c["due"] > gate1.isoformat(),
            "status": "open",
        }
        for c in conditions or []
    ]
    return {
        "projectId": new_id(f"PRJ-{day:%Y}"),
        "requestId": requestId,
        "title": title,
        "charterBaseline": "v1.0",
        "gateProfile": gateProfile,
        "gatesPlanned": profile["gatesPlanned"],
        "kickoffDue": kickoff.isoformat(),
        "gate1Due": gate1.isoformat(),
        "conditions": tracked,
        "createdOn": day.isoformat(),
    }



@handler
def escalate_approvers(approval_queue: list[str], approver_index: int) -> dict[str, Any]:
    """An approval left 10 days without a decision: every approver still to sign (from ``approver_index`` on)
    moves one level up the ``charterApproval`` ladder of ``data/escalation.json``; duplicates are merged, the
    approvals already given are kept. Returns the record of this escalation and the new approval queue."""
    waiting = list(approval_queue[approver_index:])
    if not waiting:
        raise ValueError(f"no approver is waiting at step {approver_index + 1} of {approval_queue}")
    raised = [policy.next_level("charterApproval", role) for role in waiting]
    return {
        "lastEscalation": {"approvalStep": approver_index + 1, "from": waiting, "to": raised},
        "approvalQueue": list(approval_queue[:approver_index]) + list(dict.fromkeys(raised)),
    }
