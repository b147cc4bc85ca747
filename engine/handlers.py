"""The kit for handler authors: register service-task handlers, and build what they commonly return.

A process library's handlers are plain functions of keyword arguments that return JSON data. `@handler` marks
one with the service-operator id a BPMN service task names (`<spiffworkflow:serviceTaskOperator id="gate.x">`):
bare, the id is `<module's last name>.<function name>`; `@handler("old.id")` gives it explicitly (a deprecated
alias, or a function whose name cannot be the id). The mark is an attribute: the function comes back unchanged,
so a unit test calls it directly. `collect(*modules)` builds the operator table the engine dispatches from.

`today`, `new_id` and `notify` are what handlers kept copying: the date by pmoflow's clock (so `worker --now`
moves it too), readable record ids, and the notification record the engine's outbox reads.

This module stays light to import (no SpiffWorkflow, no SQLAlchemy): every handler module imports it, and a
handler's unit tests should not pay for the engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime
from types import ModuleType
from typing import Any, TypeVar, overload

__all__ = ["collect", "handler", "new_id", "notify", "operators_of", "today"]

MARK = "pmoflow_operators"  # the attribute `handler` sets: a tuple of operator ids
F = TypeVar("F", bound=Callable[..., Any])


@overload
def handler(target: F) -> F: ...
@overload
def handler(target: str) -> Callable[[F], F]: ...
def handler(target: Any) -> Any:
    """Mark a function as the handler of a service operator: `@handler` (id `module.function`) or
    `@handler("prefix.name")`. Stacked, the function answers to each id (kept for old ids of earlier releases)."""
    if isinstance(target, str):
        operator = target.strip()
        if not operator or any(c.isspace() for c in operator):
            raise ValueError(f"an operator id is one word such as 'gate.load_checklist', not {target!r}")
        return lambda fn: _mark(fn, operator)
    if callable(target):
        return _mark(target, f"{target.__module__.rpartition('.')[2]}.{target.__name__}")
    raise TypeError(f"@handler takes a function or an operator id, not {type(target).__name__}")


def _mark(fn: F, operator: str) -> F:
    if not callable(fn):
        raise TypeError(f"@handler({operator!r}) decorates a function, not {type(fn).__name__}")
    setattr(fn, MARK, (*operators_of(fn), operator))
    return fn


def operators_of(fn: Any) -> tuple[str, ...]:
    """The operator ids a function was marked with (none for an unmarked one)."""
    marks = getattr(fn, MARK, ())
    return marks if isinstance(marks, tuple) else ()


def collect(*modules: ModuleType) -> dict[str, Callable[..., Any]]:
    """Every marked function defined in these modules (not merely imported there), by operator id. Two
    functions claiming one id are refused, naming both: which one a process called would be a guess."""
    found: dict[str, Callable[..., Any]] = {}
    for module in modules:
        for value in list(vars(module).values()):
            if not callable(value) or getattr(value, "__module__", None) != module.__name__:
                continue
            for operator in operators_of(value):
                other = found.setdefault(operator, value)
                if other is not value:
                    raise ValueError(f"service operator '{operator}' is claimed twice: by {_where(other)} and "
                                     f"by {_where(value)}")
    return found


def _where(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"


def today(on: str | date | None = None) -> date:
    """The date `on` names (an ISO date such as "2027-01-31", as BPMN parameters pass it), or today by pmoflow's
    clock: the UTC date of `pmoflow.engine.clock.now()`, which `worker --now` and tests can set."""
    if isinstance(on, datetime):
        return on.date()
    if isinstance(on, date):
        return on
    if on:
        return date.fromisoformat(on)
    # Imported here, not at the top: the clock module loads SpiffWorkflow's timer module, and importing this kit
    # must stay cheap. A handler runs inside the engine, which has loaded it already.
    from pmoflow.engine import clock

    return clock.now().date()


def new_id(prefix: str, digits: int = 6) -> str:
    """A readable record id: `prefix` (which may carry a date, e.g. "REQ-20270131") and `digits` random
    upper-case hex digits: `new_id("PRJ-2027")` gives "PRJ-2027-3F9A1C"."""
    if not prefix or not 1 <= digits <= 32:
        raise ValueError("new_id needs a prefix and 1 to 32 digits")
    return f"{prefix}-{uuid.uuid4().hex[:digits].upper()}"


def notify(subject: str, users: Iterable[Any] | None = None, roles: Iterable[Any] | None = None,
           task: str | None = "", level: str = "notice", about: dict[str, Any] | None = None) -> dict[str, Any]:
    """A notification record for the engine's outbox (`pmoflow.engine.notifications`), the one way a handler
    notifies people. It reaches the named `users` and everyone holding one of `roles` when it is queued (blank
    names and duplicates dropped; at least one recipient). `task` is the BPMN id of the task it is about (empty:
    none); `level` says what kind it is (notice, reminder, escalation ...); `about` adds keys of the caller's own
    (e.g. the record id it concerns) to the record, which the process keeps in its data."""
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError("a notification needs a subject")
    named, held = _names(users), _names(roles)
    if not named and not held:
        raise ValueError("a notification needs at least one recipient user or role")
    if not isinstance(level, str) or not level.strip():
        raise ValueError("a notification's level is a word such as 'reminder'")
    from_caller = {k: v for k, v in (about or {}).items() if k not in _RECORD_KEYS}
    return {
        "notificationId": f"NTF-{uuid.uuid4().hex[:12]}",
        **from_caller,
        "level": level.strip(),
        "subject": subject.strip(),
        "task": (task or "").strip(),
        "recipientsUsers": named,
        "recipientsRole": held,
        "channel": "inbox",
        "status": "queued",
        "createdAt": _now().isoformat(timespec="seconds"),
    }


_RECORD_KEYS = frozenset({"notificationId", "level", "subject", "task", "recipientsUsers", "recipientsRole",
                          "channel", "status", "createdAt"})


def _names(values: Iterable[Any] | str | None) -> list[str]:
    """Non-blank names, stripped, first occurrence kept; one name may be given as a plain string."""
    items = [values] if isinstance(values, str) else list(values or [])
    return list(dict.fromkeys(v.strip() for v in items if isinstance(v, str) and v.strip()))


def _now() -> datetime:
    from pmoflow.engine import clock  # see today(): keeps this module light to import

    return clock.now()
