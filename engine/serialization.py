"""Workflow state to JSON and back, with the types SpiffWorkflow forgets and the keys that break it.

Specs are stored once per deployed version and restored once per process; an instance's state is stored
without them, so saving and loading an instance never converts its process definition.
"""

from __future__ import annotations

import json
import math
import os
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnSubWorkflowConverter,
    BpmnWorkflowConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from pmoflow.engine import limits, specs
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.workflow import PmoflowSubWorkflow, PmoflowWorkflow

RESERVED_KEY = "typename"  # SpiffWorkflow's own type marker: data carrying it cannot be loaded back
Specs = tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]


class InstanceStateConverter(BpmnWorkflowConverter):
    """SpiffWorkflow's workflow converter, minus the specs (restored from the definition instead)."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct: dict[str, Any], specs: Specs) -> BpmnWorkflow:
        spec, subprocess_specs = specs
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _build_serializer() -> BpmnWorkflowSerializer:
    registry = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda d: Decimal(d["value"]))
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda d: date.fromisoformat(d["value"]))
    InstanceStateConverter(PmoflowWorkflow, registry, "BpmnWorkflow")
    BpmnSubWorkflowConverter(PmoflowSubWorkflow, registry, "BpmnSubWorkflow")
    specs.register(registry)  # stored specs name the stock classes; pmoflow's run in their place
    return BpmnWorkflowSerializer(registry)


SERIALIZER = _build_serializer()


def dump_specs(spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]) -> str:
    """The process spec and its subprocess specs, stored once per deployed version."""
    registry = SERIALIZER.registry
    return json.dumps({
        "spec": registry.convert(spec),
        "subprocess_specs": {k: registry.convert(v) for k, v in subprocess_specs.items()},
    })


def load_specs(specs: str) -> Specs:
    dct = json.loads(specs)
    registry = SERIALIZER.registry
    return registry.restore(dct["spec"]), {k: registry.restore(v) for k, v in dct["subprocess_specs"].items()}


CHECK_ENV = "PMOFLOW_CHECK_STATE"  # set it to compare every incremental dump with a full one (the tests do)


def dump_state(workflow: BpmnWorkflow) -> str:
    """The instance state without its specs, as `serialize_json` would write it.

    A finished task (completed, cancelled) never changes again until a reset changes its state, so its JSON
    is kept on the workflow object and reused: a save converts only the tasks that are still open, and the
    cost of a step stops growing with the history (the workflow object lives on in the engine's cache)."""
    registry = SERIALIZER.registry
    registry._encoder_mode = True
    try:
        text = _dump_workflow(workflow, registry)
    finally:
        registry._encoder_mode = False
    if os.environ.get(CHECK_ENV) and json.loads(text) != json.loads(SERIALIZER.serialize_json(workflow)):
        raise AssertionError("the incremental state dump differs from a full serialization")
    return text


def _dump_workflow(workflow: BpmnWorkflow, registry) -> str:
    parts = {
        **_workflow_fields(workflow, registry),
        "subprocesses": _Raw("{" + ",".join(
            f"{json.dumps(str(k))}:{_dump_subworkflow(sp, registry)}" for k, sp in workflow.subprocesses.items()
        ) + "}"),
        "bpmn_events": registry.convert(workflow.bpmn_events),
        "typename": registry.typenames[type(workflow)],
        SERIALIZER.VERSION_KEY: SERIALIZER.VERSION,
    }
    return _join(parts)


def _dump_subworkflow(subprocess, registry) -> str:
    return _join({**_workflow_fields(subprocess, registry), "parent_task_id": str(subprocess.parent_task_id),
                  "spec": subprocess.spec.name, "typename": registry.typenames[type(subprocess)]})


def _workflow_fields(wf, registry) -> dict[str, Any]:
    """What SpiffWorkflow's WorkflowConverter writes, with the task map assembled from cached parts."""
    return {
        "data": registry.convert(registry.clean(wf.data)),
        "correlations": wf.correlations,
        "last_task": str(wf.last_task.id) if wf.last_task is not None else None,
        "success": wf.success,
        "completed": wf.completed,
        "tasks": _Raw("{" + ",".join(f'"{t.id}":{_task_json(t, registry)}' for t in wf.tasks.values()) + "}"),
        "root": str(wf.task_tree.id),
    }


def _task_json(task, registry) -> str:
    memo = task.workflow.__dict__.setdefault("_pmoflow_task_json", {})
    key = (task.state, task.last_state_change, tuple(task._children))
    cached = memo.get(task.id)
    if cached is not None and cached[0] == key:
        return cached[1]
    text = json.dumps(registry.convert(task), cls=SERIALIZER._encoder_cls)
    if task.state & TaskState.FINISHED_MASK:
        memo[task.id] = (key, text)
    return text


class _Raw(str):
    """Already-encoded JSON, spliced in as it is."""


def _join(parts: dict[str, Any]) -> str:
    encoded = (v if isinstance(v, _Raw) else json.dumps(v, cls=SERIALIZER._encoder_cls) for v in parts.values())
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in zip(parts, encoded, strict=True)) + "}"


def load_state(state: str, specs: Specs) -> BpmnWorkflow:
    """Rebuild a workflow from its stored state and its definition's specs."""
    dct = json.loads(state)
    version = dct.pop(SERIALIZER.VERSION_KEY, None)
    if version != SERIALIZER.VERSION:
        raise InvalidInput(f"stored state was written by serializer format {version}, this engine reads "
                           f"{SERIALIZER.VERSION}; migrate the database with the matching pmoflow version")
    return SERIALIZER.registry.restore(dct, specs=specs)


MAX_DEPTH = 100  # nesting a form or script may produce; deeper data overflows the serializer's recursion
INT_RANGE = (-2**63, 2**63 - 1)  # what a 64-bit integer holds: what other programs reading the record can take
SERIALIZED_TYPES = (date, timedelta, Decimal, UUID)  # what the serializer registry stores beside JSON (dates,
# datetimes, durations, decimals, UUIDs): script results may hold them, submitted JSON cannot


def check_data(data: Any, path: str = "", *, allow: tuple[type, ...] = ()) -> None:
    """Refuse data that SQLite and PostgreSQL would not store alike, or SpiffWorkflow would store but not load:
    a NUL character or a lone surrogate in any text or key, NaN or Infinity, an integer beyond 64 bits, nesting
    deeper than MAX_DEPTH (or data that contains itself), a `typename` key, non-string keys, non-JSON values.
    The error names the key path (`team[2].name`) below `path`. Values produced by scripts may also be of the
    types the serializer stores: pass `allow=SERIALIZED_TYPES`."""
    _check(data, path, allow, 0, set())


def _where(path: str) -> str:
    """The path for a message: deep paths keep their two ends."""
    if not path:
        return "the data"
    return path if len(path) <= 120 else f"{path[:50]}...{path[-50:]}"


def _member(path: str, key: str) -> str:
    plain = key and key.isprintable() and not any(c in key for c in ".[]'\" ")
    return f"{path}.{key}" if plain and path else key if plain else f"{path}[{key!r}]"


def _check(data: Any, path: str, allow: tuple[type, ...], depth: int, within: set[int]) -> None:
    if isinstance(data, dict | list):
        if id(data) in within:
            raise InvalidInput(f"{_where(path)}: the value contains itself, which cannot be stored")
        if depth >= MAX_DEPTH:
            raise InvalidInput(f"{_where(path)}: nested more than {MAX_DEPTH} levels deep")
        within.add(id(data))
        if isinstance(data, dict):
            for key, value in data.items():
                _check(value, _check_key(key, path), allow, depth + 1, within)
        else:
            for i, value in enumerate(data):
                _check(value, f"{path}[{i}]", allow, depth + 1, within)
        within.discard(id(data))
    elif isinstance(data, str):
        problem = limits.text_problem(data)
        if problem:
            raise InvalidInput(f"{_where(path)}: the text {problem}")
    elif isinstance(data, bool) or data is None:
        pass
    elif isinstance(data, int):
        if not INT_RANGE[0] <= data <= INT_RANGE[1]:
            shown = str(data) if data.bit_length() <= 128 else f"an integer of {data.bit_length()} bits"
            raise InvalidInput(f"{_where(path)}: {shown} is beyond the 64-bit integer range "
                               f"({INT_RANGE[0]} to {INT_RANGE[1]})")
    elif isinstance(data, float):
        if not math.isfinite(data):
            raise InvalidInput(f"{_where(path)}: {data} is not a finite number")
    elif allow and isinstance(data, allow):
        if isinstance(data, Decimal) and not data.is_finite():
            raise InvalidInput(f"{_where(path)}: {data} is not a finite number")
    else:
        raise InvalidInput(f"{_where(path)}: a {type(data).__name__} is not JSON data")


def _check_key(key: Any, path: str) -> str:
    """The path of a dict member, once its key is known to be storable."""
    if not isinstance(key, str):
        raise InvalidInput(f"{_where(path)}: keys must be strings, not {type(key).__name__} ({key!r:.60})")
    member = _member(path, key)
    problem = limits.text_problem(key)
    if problem:
        raise InvalidInput(f"{member}: the key {problem}")
    if key == RESERVED_KEY:
        raise InvalidInput(f"{member}: the key 'typename' is reserved by the workflow engine; rename it")
    return member
