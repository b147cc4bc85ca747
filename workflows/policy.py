"""The PMO's policy as data: what an organisation tunes without touching Python, read by the handlers.

Each ``data/<name>.json`` holds one policy (gate checklists, gate profiles, escalation ladders, the standard
process set, the audit programme's rules) with a ``description`` saying what it governs. Thresholds that decide a
route at one point of a process are DMN tables in ``bpmn/`` instead; these files hold what a handler needs whole.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


@cache
def load(name: str) -> Any:
    """The policy of ``data/<name>.json``: the file's key ``name`` (beside its ``description``). Cached for the
    process's life: treat it as read-only and copy what a handler returns."""
    with (DATA / f"{name}.json").open(encoding="utf-8") as fh:
        return json.load(fh)[name]


def next_level(ladder: str, role: str) -> str:
    """One level up the escalation ladder ``ladder`` of ``escalation.json``: the role above ``role``; the top
    role stays where it is; a role that is not on the ladder goes to the top."""
    levels: list[str] = load("escalation")[ladder]
    if role in levels[:-1]:
        return levels[levels.index(role) + 1]
    return levels[-1]
