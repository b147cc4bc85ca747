"""The conformance corpus run on bare SpiffWorkflow: SpiffBpmnParser, BpmnWorkflow and a plain script engine, human
tasks completed with the fixed data of cases.json. No pmoflow module is imported here: this file is what "the
same as SpiffWorkflow" means. `python tests/conformance_bare.py FOLDER` prints one JSON object, case -> outcome;
tests/engine/test_conformance.py runs the same cases through pmoflow and compares (docs/conformance.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HUMAN_LIMIT = 50  # submissions per case: a case that needs more is looping


def to_json(value: Any) -> Any:
    """Data as JSON shows it, on both sides alike (dates and decimals as text)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def measures(workflow, outcome: str) -> dict[str, Any]:
    """What is compared: the outcome, the final data (the End task's once completed), the data objects, and the
    BPMN ids of completed tasks in the order they completed (subprocesses included)."""
    from SpiffWorkflow.util.task import TaskState

    workflows = [workflow, *workflow.subprocesses.values()]
    done = [t for wf in workflows for t in wf.tasks.values()
            if t.state == TaskState.COMPLETED and getattr(t.task_spec, "bpmn_id", None)]
    ends = [t for t in workflow.tasks.values() if t.task_spec.name == "End"]
    last = ends[0] if workflow.is_completed() and ends else workflow.last_task
    return {"outcome": outcome, "data": to_json(dict(last.data) if last is not None else {}),
            "data_objects": to_json(dict(getattr(workflow, "data_objects", {}) or {})),
            "sequence": [t.task_spec.bpmn_id for t in sorted(done, key=lambda t: t.last_state_change)]}


def next_human_task(ready: list, visits: dict[str, int], case: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The ready human task completed next (by BPMN id, so both sides pick the same) and its data."""
    task = sorted(ready, key=lambda t: (t.task_spec.bpmn_id, str(t.id)))[0]
    bpmn_id = task.task_spec.bpmn_id
    entries = case.get("tasks", {}).get(bpmn_id, [])
    data = entries[visits.get(bpmn_id, 0)] if visits.get(bpmn_id, 0) < len(entries) else {}
    visits[bpmn_id] = visits.get(bpmn_id, 0) + 1
    return task, data


def run_case(folder: Path, name: str, case: dict[str, Any]) -> dict[str, Any]:
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.exceptions import WorkflowException
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from SpiffWorkflow.util.task import TaskState

    class Engine(PythonScriptEngine):
        def call_service(self, task, operation_name, operation_params, *args, **kwargs):
            if operation_name != "test.echo":
                raise ValueError(f"no handler for {operation_name}")
            return json.dumps({"echo": operation_params["value"]["value"]})

    parser = SpiffBpmnParser()
    parser.add_bpmn_files([str(f) for f in sorted(folder.glob("*.bpmn"))])
    parser.add_dmn_files([str(f) for f in sorted(folder.glob("*.dmn"))])
    workflow = BpmnWorkflow(parser.get_spec(name), parser.get_subprocess_specs(name),
                            script_engine=Engine(environment=TaskDataEnvironment()))
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data.update(case.get("start", {}))
    visits: dict[str, int] = {}
    try:
        workflow.do_engine_steps()
        for _ in range(HUMAN_LIMIT):
            ready = workflow.get_tasks(state=TaskState.READY, manual=True)
            if not ready:
                break
            task, data = next_human_task(ready, visits, case)
            task.data.update(data)
            task.run()
            workflow.refresh_timers()
            workflow.do_engine_steps()
    except WorkflowException as exc:
        failed = getattr(exc, "task", None)
        return measures(workflow, f"error at {failed.task_spec.bpmn_id if failed else '?'}")
    return measures(workflow, "completed" if workflow.is_completed() else "waiting")


def main(folder: str) -> None:
    root = Path(folder)
    cases = json.loads((root / "cases.json").read_text())
    print(json.dumps({name: run_case(root, name, case) for name, case in cases.items()}))


if __name__ == "__main__":
    main(sys.argv[1])
