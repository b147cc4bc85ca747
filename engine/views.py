"""Plain-dict views of stored rows: what `--json` prints and what the Python API returns."""

from __future__ import annotations

from typing import Any

from pmoflow.engine.clock import as_utc
from pmoflow.engine.models import Event, HumanTask, ProcessDefinition, ProcessInstance


def _iso(moment) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def definition_view(d: ProcessDefinition) -> dict[str, Any]:
    return {"process_id": d.process_id, "version": d.version, "name": d.name, "content_hash": d.content_hash,
            "deployed_by": d.deployed_by, "deployed_at": _iso(d.deployed_at), "start_form": d.start_form,
            "files": sorted(d.sources)}


def instance_view(i: ProcessInstance) -> dict[str, Any]:
    return {"instance_id": i.id, "process_id": i.process_id, "version": i.version, "status": i.status,
            "business_key": i.business_key, "started_by": i.started_by, "started_at": _iso(i.started_at),
            "updated_at": _iso(i.updated_at), "next_due": _iso(i.next_due), "error": i.error}


def task_view(t: HumanTask) -> dict[str, Any]:
    offered = [c for c in t.candidates if c.kind != "excluded"]
    return {"id": t.id, "instance_id": t.instance_id, "process_id": t.process_id, "name": t.name,
            "bpmn_id": t.bpmn_id, "lane": t.lane, "candidates": sorted(c.name for c in offered),
            "candidate_kind": offered[0].kind if offered else None,
            "excluded": sorted(c.name for c in t.candidates if c.kind == "excluded"), "assignee": t.assignee,
            "due": _iso(t.due), "state": t.state, "form": t.form, "instructions": t.instructions,
            "created_at": _iso(t.created_at), "completed_by": t.completed_by, "completed_at": _iso(t.completed_at)}


def event_view(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "at": _iso(e.at), "actor": e.actor, "type": e.type, "instance_id": e.instance_id,
            "process_id": e.process_id, "process_version": e.process_version, "task": e.task_bpmn_id,
            "task_name": e.task_name, "payload": e.payload, "hash": e.hash}
