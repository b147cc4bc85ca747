"""Notification records the PMO's handlers hand to the engine: one shape for every process."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any


def unique_names(values: Iterable[Any] | None) -> list[str]:
    """Non-blank names, stripped, first occurrence kept."""
    return list(dict.fromkeys(v.strip() for v in values or [] if isinstance(v, str) and v.strip()))


def recipients(users: Iterable[Any] | None, roles: Iterable[Any] | None,
               what: str = "a notification") -> tuple[list[str], list[str]]:
    """The named users and the roles a notification goes to (blank names and duplicates dropped); refuses one
    that would reach nobody."""
    named, held = unique_names(users), unique_names(roles)
    if not named and not held:
        raise ValueError(f"{what} needs at least one recipient user or role")
    return named, held


def queued(**fields: Any) -> dict[str, Any]:
    """A notification record waiting in the inbox channel, with its own id and creation time."""
    return {
        "notificationId": f"NTF-{uuid.uuid4().hex[:12]}",
        **fields,
        "channel": "inbox",
        "status": "queued",
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
