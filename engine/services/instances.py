"""Process instances: start one, list them, show one, read its history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pmoflow.engine import audit, limits, runtime
from pmoflow.engine.models import HumanTask, ProcessInstance
from pmoflow.engine.services.advance import advance, new_instance
from pmoflow.engine.services.context import Context, check_may_start, definition_row, final_data, instance_row, load_run
from pmoflow.engine.services.submissions import require_object, validate_form
from pmoflow.engine.views import event_view, instance_view, task_view


def start(ctx: Context, process_id: str, data: dict[str, Any] | None = None,
          business_key: str | None = None) -> dict[str, Any]:
    """Start the newest version of a process with initial data, and run it to its first wait state."""
    data = require_object(data or {})
    limits.check_text(business_key, "the business key", ProcessInstance.business_key)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = ctx.actor(session)
        definition = definition_row(session, process_id)
        check_may_start(session, definition, actor)
        validate_form(definition, definition.start_form, data)
        instance = new_instance(session, definition, actor.name, business_key)
        run = runtime.Run.new(session, instance, definition, actor.name, ctx.handlers, data)
        run.log.add("instance_started", data=data, version=definition.version, business_key=business_key)
        advance(ctx, run)
        return {"instance_id": instance.id, "status": instance.status, "error": instance.error,
                "process_id": process_id, "version": definition.version}


def instances(ctx: Context, status: str | None = None, process: str | None = None, limit: int | None = None,
              after: int | None = None) -> list[dict[str, Any]]:
    """Instances in id order, filtered; a page of them with `limit`, the next with `after` (the last id seen)."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        query = select(ProcessInstance).order_by(ProcessInstance.id)
        if status:
            query = query.where(ProcessInstance.status == status)
        if process:
            query = query.where(ProcessInstance.process_id == process)
        if after is not None:
            query = query.where(ProcessInstance.id > after)
        if limit is not None:
            query = query.limit(limit)
        return [instance_view(i) for i in session.scalars(query)]


def show(ctx: Context, instance_id: int | str) -> dict[str, Any]:
    """One instance: status, version, data, its tasks, the processes it called, and its lock version (what a
    client names to act only on what it read)."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        instance = instance_row(session, instance_id)
        run = load_run(ctx, session, instance, "viewer")
        tasks = session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id)
                                .order_by(HumanTask.id))
        return {**instance_view(instance), "data": audit.to_json_data(final_data(run.workflow)),
                "tasks": [task_view(t) for t in tasks],
                "calls": audit.to_json_data(runtime.called_processes(run.workflow)),
                "lock_version": instance.lock_version}


def history(ctx: Context, instance_id: int | str) -> list[dict[str, Any]]:
    ctx.db.check_schema()
    with ctx.tx() as session:
        instance = instance_row(session, instance_id)
        return [event_view(e) for e in audit.history(session, instance.id)]


def startable(ctx: Context) -> list[dict[str, Any]]:
    """The processes the acting user may start (newest versions whose plain start event is in a lane they
    hold, or in none), each with its start form's JSON Schema and UI schema when it has them: what the web
    workspace's start page offers. Processes started only by a message or a timer are not listed."""
    import json

    from pmoflow.engine import forms
    from pmoflow.engine.errors import PermissionDenied
    from pmoflow.engine.services.advance import newest_definitions
    from pmoflow.engine.views import definition_view

    ctx.db.check_schema()
    with ctx.tx() as session:
        actor, offered = ctx.actor(session), []
        for definition in newest_definitions(session):
            try:
                check_may_start(session, definition, actor)
            except PermissionDenied:
                continue
            spec, _ = runtime.specs_of(session, definition)
            plain = [t for t in spec.task_specs.values() if type(t).__name__ == "StartEvent"
                     and type(getattr(t, "event_definition", None)).__name__ == "NoneEventDefinition"]
            if not plain:
                continue
            props = (getattr(plain[0], "extensions", None) or {}).get("properties", {})
            ui_name = props.get("formUiSchemaFilename")
            ui_text = definition.sources.get(f"forms/{ui_name}") if ui_name else None
            form = definition.start_form
            offered.append({**definition_view(definition), "start_event": plain[0].bpmn_name or plain[0].bpmn_id,
                            "schema": forms.load_schema(definition.sources[f"forms/{form}"], form) if form else None,
                            "ui_schema": json.loads(ui_text) if ui_text else None})
        return offered
