"""Human tasks: the inbox, one task, and claiming, delegating and completing it under its duties."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import SelectBase

from pmoflow.engine import audit, clock, forms, runtime
from pmoflow.engine.errors import Conflict, NotFound, PermissionDenied
from pmoflow.engine.models import HumanTask, ProcessInstance, TaskCandidate, User
from pmoflow.engine.services.advance import finish
from pmoflow.engine.services.context import Context, instance_row, load_run, task_row
from pmoflow.engine.services.submissions import require_object, validate_form
from pmoflow.engine.views import task_view


class DutyRefused(PermissionDenied):
    """A segregation-of-duties refusal, carrying what the audit record needs."""

    def __init__(self, message: str, instance_id: int, task_id: int, actor: str, rule: str) -> None:
        super().__init__(message)
        self.instance_id, self.task_id, self.actor, self.rule = instance_id, task_id, actor, rule


def inbox(ctx: Context, all_tasks: bool = False, process: str | None = None, limit: int | None = None,
          after: int | None = None) -> list[dict[str, Any]]:
    """Open tasks the user may take (or all open tasks), oldest first: a query on the projection only. A page
    of them with `limit`, the next page with `after` (the last id seen): keyset paging, so a page costs about
    the same however many tasks are open."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        opened = select(HumanTask.id).where(HumanTask.state == "ready")
        if process is not None:
            opened = opened.where(HumanTask.process_id == process)
        if after is not None:
            opened = opened.where(HumanTask.id > after)
        if all_tasks:
            wanted: SelectBase = opened
        else:
            user = ctx.actor(session)
            candidate = select(TaskCandidate.task_id).where(TaskCandidate.task_id == HumanTask.id)
            mine = candidate.where(or_(
                (TaskCandidate.kind == "user") & (TaskCandidate.name == user.name),
                (TaskCandidate.kind == "role") & TaskCandidate.name.in_(user.role_names)))
            barred = candidate.where((TaskCandidate.kind == "excluded") & (TaskCandidate.name == user.name))
            opened = opened.where(~barred.exists())
            # Two pages merged, not one query with `assignee = me OR EXISTS (...)`: under an OR, PostgreSQL
            # hashes every candidate row of the user's roles before it returns a first task (171 ms at 100,000
            # open tasks); as a plain EXISTS it walks the tasks in id order and stops at the page's end.
            assigned = _page(opened.where(HumanTask.assignee == user.name), limit).subquery()
            offered = _page(opened.where(HumanTask.assignee.is_(None), mine.exists()), limit).subquery()
            wanted = union_all(select(assigned.c.id), select(offered.c.id))
        query = _page(select(HumanTask).where(HumanTask.id.in_(wanted)), limit)
        return [task_view(t) for t in session.scalars(query)]


def _page(query: Any, limit: int | None) -> Any:
    query = query.order_by(HumanTask.id)
    return query if limit is None else query.limit(limit)


def show(ctx: Context, task_id: int | str) -> dict[str, Any]:
    """One task with its data, form schema and UI schema (the modeler's `formUiSchemaFilename`) while it is
    open, and its instance's lock version (what a client names to act only on what it read)."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        row = task_row(session, task_id)
        instance = instance_row(session, row.instance_id)
        view = {**task_view(row), "instance_lock_version": instance.lock_version}
        if row.state == "ready":
            run = load_run(ctx, session, instance, "viewer")
            spiff_task = runtime.find_task(run.workflow, row.spiff_task_id)
            view["data"] = audit.to_json_data(spiff_task.data) if spiff_task else {}
            if row.form:
                view["schema"] = forms.load_schema(run.definition.sources[f"forms/{row.form}"], row.form)
            ui_schema = _ui_schema(run.definition.sources, spiff_task)
            if ui_schema is not None:
                view["ui_schema"] = ui_schema
        return view


def _ui_schema(sources: dict[str, str], spiff_task: Any) -> dict[str, Any] | None:
    """The task's UI schema, stored with the definition's forms when the modeler named one."""
    props = (getattr(spiff_task.task_spec, "extensions", None) or {}).get("properties", {}) if spiff_task else {}
    name = props.get("formUiSchemaFilename")
    text = sources.get(f"forms/{name}") if name else None
    return json.loads(text) if text else None


def claim(ctx: Context, task_id: int | str) -> dict[str, Any]:
    """Take a task; refused when its duties would keep you from completing it."""
    with refusals_recorded(ctx), ctx.tx() as session:
        row, user, instance = _open_task(ctx, session, task_id)
        _check_may_take(row, user)
        _check_duties(session, row, _spiff_task(ctx, session, row, instance), user, instance)
        if row.assignee == user.name:
            return task_view(row)
        row.assignee = user.name
        audit.InstanceLog(session, instance, user.name).add("task_claimed", task=row, task_id=row.id)
        return task_view(row)


def unclaim(ctx: Context, task_id: int | str) -> dict[str, Any]:
    with ctx.tx() as session:
        row, user, instance = _open_task(ctx, session, task_id)
        if row.assignee != user.name:
            raise Conflict(f"task {row.id} is not claimed by {user.name}")
        row.assignee = None
        audit.InstanceLog(session, instance, user.name).add("task_unclaimed", task=row, task_id=row.id)
        return task_view(row)


def delegate(ctx: Context, task_id: int | str, to_user: str) -> dict[str, Any]:
    """Hand a task to another person who may also take it; the delegation is recorded."""
    with refusals_recorded(ctx), ctx.tx() as session:
        row, user, instance = _open_task(ctx, session, task_id)
        _check_may_take(row, user)
        target = session.get(User, to_user)
        if target is None:
            raise NotFound(f"no user '{to_user}'")
        if not _may_act(row, target):
            raise PermissionDenied(f"{to_user} may not take task {row.id} ({row.name}): not a candidate")
        _check_duties(session, row, _spiff_task(ctx, session, row, instance), target, instance)
        previous, row.assignee = row.assignee, target.name
        audit.InstanceLog(session, instance, user.name).add(
            "task_delegated", task=row, task_id=row.id, from_user=previous or user.name, to_user=target.name)
        return task_view(row)


def complete(ctx: Context, task_id: int | str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate the form data, check duties, complete the task and run the instance on."""
    data = require_object(data or {})
    ctx.db.check_schema()
    with refusals_recorded(ctx), ctx.tx() as session:
        row, user, instance = _open_task(ctx, session, task_id)
        _check_may_take(row, user)
        run = load_run(ctx, session, instance, user.name)
        spiff_task = runtime.find_task(run.workflow, row.spiff_task_id)
        if spiff_task is None or not spiff_task.has_state(runtime.TaskState.READY):
            raise Conflict(f"task {row.id} is no longer waiting for input")
        data = validate_form(run.definition, row.form, data, spiff_task.data)
        checks = _check_duties(session, row, spiff_task, user, instance)
        row.assignee = user.name
        row.completed_by, row.completed_at = user.name, clock.db_now()
        run.log.add("task_completed", task=row, task_id=row.id, data=data, duty_checks=checks)
        run.complete_human_task(spiff_task, data)
        finish(ctx, run)
        return {"task_id": row.id, "instance_id": instance.id, "status": instance.status,
                "error": instance.error}


def _open_task(ctx: Context, session: Session, task_id: int | str) -> tuple[HumanTask, User, ProcessInstance]:
    row = task_row(session, task_id)
    user = ctx.actor(session)
    instance = instance_row(session, row.instance_id)  # a stale If-Match is refused before anything else
    if row.state != "ready":
        raise Conflict(f"task {row.id} is already {row.state}")
    if instance.status not in ("running", "waiting"):
        raise Conflict(f"instance {instance.id} is {instance.status}; its tasks cannot be worked on")
    return row, user, instance


def _may_act(row: HumanTask, user: User) -> bool:
    return any((c.kind == "user" and c.name == user.name) or (c.kind == "role" and c.name in user.role_names)
               for c in row.candidates if c.kind != "excluded")


def _check_may_take(row: HumanTask, user: User) -> None:
    if row.assignee and row.assignee != user.name:
        raise Conflict(f"task {row.id} is claimed by {row.assignee}")
    if row.assignee != user.name and not _may_act(row, user):
        who = ", ".join(f"{c.kind} {c.name}" for c in row.candidates if c.kind != "excluded")
        raise PermissionDenied(f"task {row.id} ({row.name}) is for {who}; {user.name} is not one of them")


def _spiff_task(ctx: Context, session: Session, row: HumanTask, instance: ProcessInstance):
    spiff_task = runtime.find_task(load_run(ctx, session, instance, "viewer").workflow, row.spiff_task_id)
    if spiff_task is None:
        raise Conflict(f"task {row.id} is no longer waiting for input")
    return spiff_task


def _check_duties(session: Session, row: HumanTask, spiff_task, user: User,
                  instance: ProcessInstance) -> list[dict[str, Any]]:
    """Segregation of duties declared on the task: its performer must differ from the named others."""
    checks = []
    for rule in runtime.duty_rules(spiff_task):
        others = {instance.started_by} if rule == "starter" else runtime.performers(
            session, instance.id, spiff_task, rule)
        if user.name in others:
            message = (f"segregation of duties: {user.name} may not take '{row.name}' because they "
                       f"{'started this instance' if rule == 'starter' else f'performed task {rule}'}")
            raise DutyRefused(message, instance.id, row.id, user.name, f"performer differs from {rule}")
        checks.append({"rule": f"performer differs from {rule}", "result": "passed"})
    return checks


@contextmanager
def refusals_recorded(ctx: Context) -> Iterator[None]:
    """After the refused command rolled back, the refusal itself becomes part of the record."""
    try:
        yield
    except DutyRefused as refusal:
        with ctx.tx() as session:
            instance = instance_row(session, refusal.instance_id)
            row = task_row(session, refusal.task_id)
            audit.InstanceLog(session, instance, refusal.actor).add(
                "duty_refused", task=row, task_id=row.id, rule=refusal.rule, message=refusal.message)
        raise
