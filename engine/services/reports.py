"""Audit reports: one instance's whole story, or one process over a period (engine/report.py renders them)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pmoflow.engine import audit, clock
from pmoflow.engine import report as reporting
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.models import Event, EventFact, ProcessDefinition, ProcessInstance
from pmoflow.engine.services.auditing import filters as audit_filters
from pmoflow.engine.services.auditing import known_instance
from pmoflow.engine.services.context import Context, final_data, load_run
from pmoflow.engine.views import instance_view


def instance_report(ctx: Context, instance_id: int | str) -> dict[str, Any]:
    """One instance's audit report as data (see engine/report.py; report.render writes HTML or Markdown)."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        instance = known_instance(session, instance_id)
        definition = session.get_one(ProcessDefinition, instance.definition_id)
        run = load_run(ctx, session, instance, "viewer")
        events = [audit.export_view(e) for e in audit.history(session, instance.id)]
        findings = audit.check(session, instance.id)
        verification = {"ok": not findings, "events": len(events), "head_seq": instance.last_seq,
                        "head_hash": instance.last_hash, "findings": findings}
        summary = {**instance_view(instance), "process_name": definition.name,
                   "content_hash": definition.content_hash, "deployed_by": definition.deployed_by,
                   "deployed_at": clock.as_utc(definition.deployed_at).isoformat()}
        errored = (instance.error or {}).get("bpmn_id") if instance.status == "error" else None
        drawing = reporting.diagram(definition.sources, instance.process_id, run.workflow, errored,
                                    f"{definition.name}: instance {instance.id}")
        data = audit.to_json_data(final_data(run.workflow))
        return reporting.instance_report(summary, events, verification, drawing, data, clock.db_now())


def instance_diagram(ctx: Context, instance_id: int | str) -> dict[str, Any]:
    """One instance's diagram with the path taken, where it stands and the element in error marked (what the
    instance report draws, without the rest of the report): `svg` (None when the files hold no diagram, with a
    `note` saying why), `completed`, `taken_flows`, `current`, `errored`."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        instance = known_instance(session, instance_id)
        definition = session.get_one(ProcessDefinition, instance.definition_id)
        run = load_run(ctx, session, instance, "viewer")
        errored = (instance.error or {}).get("bpmn_id") if instance.status == "error" else None
        return reporting.diagram(definition.sources, instance.process_id, run.workflow, errored,
                                 f"{definition.name}: instance {instance.id}")


def process_report(ctx: Context, process_id: str, since: str | datetime | None = None,
                   until: str | datetime | None = None, period: str | None = None,
                   override: str | None = None) -> dict[str, Any]:
    """One process over a period: instances started in it, cycle times of those completed, time per step,
    overrides (with `override`), late tasks, duty refusals and administrative acts of the period, and the
    findings open now (instances in error or suspended, overdue tasks, chains that fail verification)."""
    if since is None and period is None:
        raise InvalidInput("give the period: --since DATE (and --until DATE), or --period 2027-Q1")
    now = clock.db_now()
    chosen = audit_filters(process=process_id, since=since, until=until, period=period, override=override)
    chosen.until = chosen.until or now + timedelta(microseconds=1)
    assert chosen.since is not None, "--since or --period was required above, and either sets the start"
    ctx.db.check_schema()
    with ctx.tx() as session:
        audit.check_filters(session, chosen)
        latest = session.scalar(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                                .order_by(ProcessDefinition.version.desc()).limit(1))
        rows = list(session.scalars(select(ProcessInstance).where(
            ProcessInstance.process_id == process_id, ProcessInstance.started_at >= chosen.since,
            ProcessInstance.started_at < chosen.until).order_by(ProcessInstance.id)))
        completions, steps = _steps(session, [i.id for i in rows], now)

        def period_events(**extra: Any) -> list[Event]:
            return audit.query(session, audit.Filters(process=process_id, since=chosen.since,
                                                      until=chosen.until, **extra))

        late = _late(session, period_events(late=True), process_id, now)
        overrides = _overrides(session, period_events(override=override), override) if override else None
        refusals = [{**_when(e), "task": e.task_name or e.task_bpmn_id, "rule": e.payload.get("rule")}
                    for e in period_events(types=("duty_refused",))]
        admin = [{**_when(e), "type": e.type, "reason": e.payload.get("reason"),
                  "before": e.payload.get("before"), "after": e.payload.get("after")}
                 for e in period_events(types=audit.ADMIN_TYPES)]
        findings = _findings(session, process_id, late)
        process = {"process_id": process_id, "name": latest.name if latest else process_id,
                   "latest_version": latest.version if latest else None}
        period_view = {"since": clock.as_utc(chosen.since).isoformat(),
                       "until": clock.as_utc(chosen.until).isoformat()}
        return reporting.process_report(process, period_view, [instance_view(i) for i in rows], completions,
                                        steps, overrides, override, late, refusals, admin, findings, now)


def _when(e: Event) -> dict[str, Any]:
    return {"instance_id": e.instance_id, "seq": e.seq, "at": clock.as_utc(e.at).isoformat(), "actor": e.actor}


def _steps(session: Session, ids: list[int], now: datetime) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """When each instance completed, and the time each of its steps took, read 500 instances at a time."""
    completions: dict[int, str] = {}
    steps: list[dict[str, Any]] = []
    for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)):
        events = list(session.scalars(select(Event).where(
            Event.instance_id.in_(chunk), Event.type.like("task_%")
            | (Event.type == "instance_completed")).order_by(Event.instance_id, Event.seq)))
        for instance_id, group in itertools.groupby(events, key=lambda e: e.instance_id):
            views = [audit.export_view(e) for e in group]
            for view in views:
                if view["type"] == "instance_completed":
                    completions[instance_id] = view["at"]
            steps += reporting.steps_of(views, now)
    return completions, steps


def _late(session: Session, completed_late: list[Event], process_id: str, now: datetime) -> list[dict[str, Any]]:
    """Tasks completed after their due time in the period, and open tasks overdue now."""
    late = []
    for e in completed_late:
        due = session.scalar(select(Event.payload).where(
            Event.instance_id == e.instance_id, Event.type == "task_ready",
            Event.seq < e.seq, Event.task_bpmn_id == e.task_bpmn_id)
            .order_by(Event.seq.desc()).limit(1)) or {}
        due_at = audit.parse_moment(due["due"], "due") if due.get("due") else None
        late.append({"instance_id": e.instance_id, "name": e.task_name or e.task_bpmn_id,
                     "due": due.get("due"), "completed_at": clock.as_utc(e.at).isoformat(),
                     "completed_by": e.actor,
                     "late_seconds": (e.at - due_at).total_seconds() if due_at else None})
    for row in audit.open_tasks_overdue(session, now, process_id):
        assert row.due is not None, "an overdue task has a due time"
        late.append({"instance_id": row.instance_id, "name": row.name,
                     "due": clock.as_utc(row.due).isoformat(), "completed_at": None, "completed_by": None,
                     "late_seconds": (now - row.due).total_seconds()})
    return late


def _overrides(session: Session, overridden: list[Event], override: str) -> list[dict[str, Any]]:
    """Each submission that differs from the latest recommendation before it, with both values."""
    submitted_path, recommended_path = audit.parse_override(override)
    return [{**_when(e), "task": e.task_name or e.task_bpmn_id,
             "submitted": f"{submitted_path}={_at_path(e.payload, submitted_path)}",
             "recommended": f"{recommended_path}={_latest_fact(session, e, recommended_path)}"}
            for e in overridden]


def _findings(session: Session, process_id: str, late: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is open now: instances in error or suspended, overdue tasks, chains that fail verification."""
    findings = [{"instance_id": i.id, "kind": i.status,
                 "detail": (i.error or {}).get("message") if i.status == "error" else
                 f"suspended since {clock.as_utc(i.updated_at).isoformat()}"}
                for i in session.scalars(select(ProcessInstance).where(
                    ProcessInstance.process_id == process_id,
                    ProcessInstance.status.in_(("error", "suspended"))).order_by(ProcessInstance.id))]
    findings += [{"instance_id": t["instance_id"], "kind": "overdue task",
                  "detail": f"{t['name']} was due {t['due']}"} for t in late if t["completed_at"] is None]
    findings += [{"instance_id": f["instance_id"], "kind": "record altered",
                  "detail": f"{f['stream']} (seq {f['seq']}): {f['problem']}"}
                 for f in audit.check(session, process_id=process_id)]
    return findings


def _at_path(payload: Any, path: str) -> Any:
    """The value at a payload path like `data.gateDecision` (None when absent)."""
    value = payload
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _latest_fact(session: Session, event: Event, path: str) -> str | None:
    """The latest value of an indexed payload path before `event` in its instance (an override's
    recommendation)."""
    return session.scalar(select(EventFact.value).join(Event, Event.id == EventFact.event_id).where(
        EventFact.key == path, Event.instance_id == event.instance_id, Event.seq < event.seq)
        .order_by(Event.seq.desc()).limit(1))
