"""Service-task handlers of the project initiation process (bpmn/project_initiation.bpmn).

Each handler is a plain function of keyword arguments that returns JSON data (dicts, lists, strings,
numbers). Handlers never touch the database or the engine: the engine evaluates the BPMN parameter
expressions, calls the handler and stores the result in the task data under the operator's
``resultVariable``. Delivery of notifications is the engine's job; ``notify`` only builds the record.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from pmoflow.workflows.notifications import queued, unique_names

LESSONS_FILE = Path(__file__).parent / "data" / "lessons_learned.json"

#: Gates planned for each gate profile decided by the CharterApproval DMN (closure not counted).
GATES_BY_PROFILE = {"Full": 5, "Standard": 3, "Lite": 1}
#: Calendar days from authorisation to the kickoff meeting and from kickoff to Gate 1.
KICKOFF_DAYS = 14
GATE1_DAYS_AFTER_KICKOFF = {"Full": 30, "Standard": 30, "Lite": 45}

#: Words ignored when matching keywords against lessons.
STOPWORDS_TEXT = (
    "a an and are as at be by for from has have in into is it its of on or our so that the their this "
    "to we will with without new project need needs"
)
_STOPWORDS = frozenset(STOPWORDS_TEXT.split())


def _today(on: str | None) -> date:
    return date.fromisoformat(on) if on else date.today()


def _short_id() -> str:
    return uuid.uuid4().hex[:6].upper()


def register_request(title: str, submitted_on: str | None = None) -> dict[str, str]:
    """Give a new project request a readable id: ``REQ-<yyyymmdd>-<6 hex>``.

    ``submitted_on`` is an ISO date (``2027-01-31``); today when missing.
    """
    if not str(title).strip():
        raise ValueError("a project request needs a title")
    day = _today(submitted_on)
    return {"requestId": f"REQ-{day:%Y%m%d}-{_short_id()}", "registeredOn": day.isoformat()}


@lru_cache(maxsize=1)
def load_lessons() -> tuple[dict[str, Any], ...]:
    """The bundled lessons-learned knowledge base (``workflows/data/lessons_learned.json``)."""
    with LESSONS_FILE.open(encoding="utf-8") as fh:
        return tuple(json.load(fh))


def _tokens(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in _STOPWORDS}


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
    if gateProfile not in GATES_BY_PROFILE:
        raise ValueError(f"unknown gate profile {gateProfile!r}; expected one of {sorted(GATES_BY_PROFILE)}")
    day = _today(authorised_on)
    kickoff = day + timedelta(days=KICKOFF_DAYS)
    gate1 = kickoff + timedelta(days=GATE1_DAYS_AFTER_KICKOFF[gateProfile])
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
        "projectId": f"PRJ-{day:%Y}-{_short_id()}",
        "requestId": requestId,
        "title": title,
        "charterBaseline": "v1.0",
        "gateProfile": gateProfile,
        "gatesPlanned": GATES_BY_PROFILE[gateProfile],
        "kickoffDue": kickoff.isoformat(),
        "gate1Due": gate1.isoformat(),
        "conditions": tracked,
        "createdOn": day.isoformat(),
    }


def notify(
    recipients_role: str | list[str],
    subject: str,
    task: str,
    users: list[str] | None = None,
) -> dict[str, Any]:
    """Build a notification record for the engine to deliver.

    Recipients are every user holding one of ``recipients_role`` plus the named ``users`` (blank names and
    duplicates dropped). ``task`` is the BPMN id of the task the notification is about.
    """
    roles = [recipients_role] if isinstance(recipients_role, str) else list(recipients_role)
    if not roles or not all(isinstance(r, str) and r.strip() for r in roles):
        raise ValueError("notify needs at least one recipient role")
    return queued(recipientsRole=roles, recipientsUsers=unique_names(users), subject=subject, task=task)
