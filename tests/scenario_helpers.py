"""Helpers shared by the engine-level scenario tests (test_*_engine.py, test_notifications.py).

They act on a `Pmoflow` API object as one user would, so each scenario reads as the steps of the people doing
the work. Kept in one place so that every scenario finds, completes and checks tasks the same way. A helper that
one process needs in its own form (a corrective action's task picked by finding, say) stays in its test file.
`gateways_on_loops` checks a model's BPMN rather than an instance; the model tests of the processes share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pmoflow.engine.api import Pmoflow


def inbox(app: Pmoflow, instance_id: int | None = None) -> list[str]:
    """The BPMN ids of the tasks in the acting user's inbox (of one instance, when given)."""
    return sorted(t["bpmn_id"] for t in app.tasks() if instance_id in (None, t["instance_id"]))


def task_for(app: Pmoflow, instance_id: int, bpmn_id: str) -> dict:
    """The one task `bpmn_id` of the instance in the acting user's inbox."""
    found = [t for t in app.tasks() if t["instance_id"] == instance_id and t["bpmn_id"] == bpmn_id]
    assert len(found) == 1, f"{app.user} has {inbox(app, instance_id)}, not one {bpmn_id}"
    return found[0]


def complete(app: Pmoflow, instance_id: int, bpmn_id: str, data: dict) -> dict:
    """Complete the task `bpmn_id` of the instance from the acting user's inbox."""
    result = app.complete(task_for(app, instance_id, bpmn_id)["id"], data)
    assert result["error"] is None, result["error"]
    return result


def task_data(app: Pmoflow, instance_id: int, bpmn_id: str) -> dict:
    """The data the acting user sees in the task `bpmn_id` of the instance (what the form opens with)."""
    return app.task(task_for(app, instance_id, bpmn_id)["id"])["data"]


def open_tasks(app: Pmoflow, instance_id: int) -> list[tuple[str, list[str]]]:
    """(bpmn id, candidates) of every open task of the instance, whoever may take it, sorted."""
    return sorted((t["bpmn_id"], t["candidates"]) for t in app.show(instance_id)["tasks"] if t["state"] == "ready")


def assert_completed(app: Pmoflow, instance_id: int, outcome: str) -> dict:
    """The instance ended with `outcome`: nothing open or due, and its last event says so. Returns its data."""
    shown = app.show(instance_id)
    assert (shown["status"], shown["error"], shown["next_due"]) == ("completed", None, None)
    assert shown["data"]["outcome"] == outcome
    assert open_tasks(app, instance_id) == []
    last = app.history(instance_id)[-1]
    assert last["type"] == "instance_completed" and last["payload"]["data"]["outcome"] == outcome
    return shown["data"]


def assert_in_order(history: list[dict], expected: list[tuple[str, str | None]], *,
                    gapless: bool = True) -> list[dict]:
    """`expected` (type, task) pairs occur in the history in this order (other events may come between);
    returns the matching events. With `gapless` the sequence numbers also count 1, 2, 3 ... without gaps."""
    if gapless:
        assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    found, rest = [], iter(history)
    for kind, task in expected:
        for event in rest:
            if event["type"] == kind and (task is None or event["task"] == task):
                found.append(event)
                break
        else:
            raise AssertionError(f"no {kind} {task} after {found[-1:]}; history: "
                                 f"{[(e['type'], e['task']) for e in history]}")
    return found


def after(moment: str | datetime, days: float) -> datetime:
    """An aware UTC time `days` after an ISO timestamp (or datetime) from the API."""
    base = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return base.astimezone(UTC) + timedelta(days=days)


def gateways_on_loops(flows: Iterable, boundaries: Iterable, gateways: Iterable) -> list[str]:
    """The ids of the parallel gateways some cycle passes through (BPMN elements of lxml): SpiffWorkflow 3.2
    fires a parallel join early when a loop brings a token back to it, so a model must have none."""
    edges: dict[str, set[str]] = {}
    for f in flows:
        edges.setdefault(f.get("sourceRef"), set()).add(f.get("targetRef"))
    for b in boundaries:
        edges.setdefault(b.get("attachedToRef"), set()).add(b.get("id"))
    on_loops = []
    for gw in gateways:
        seen, todo = set(), list(edges.get(gw.get("id"), ()))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(edges.get(current, ()))
        if gw.get("id") in seen:
            on_loops.append(gw.get("id"))
    return on_loops
