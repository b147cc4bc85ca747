"""pmoflow's BpmnWorkflow: SpiffWorkflow's, with its per-step tree walks replaced by scans of its task map.

SpiffWorkflow 3.2 walks the whole task tree for every engine step and every completed task, so the cost of
a step grows with the instance's history (quadratic over a long loop). `wf.tasks` is a dict of every task:
scanning it finds the same READY and WAITING tasks without recursion or depth limits. Tasks that are READY
at the same moment run in creation order rather than tree order; the tests pin the behaviour that matters.

The tree walks that remain (`get_tasks`, `get_next_task`, `cancel`) go without SpiffWorkflow's depth limit:
its iterators stop at depth 1000, so past ~250 rounds of a loop the next READY task is invisible,
`is_completed()` turns True and the instance would be marked completed for good (silent data loss). Only
pmoflow's workflows lift the limit; SpiffWorkflow's classes keep theirs for everyone else. Subprocesses are
`PmoflowSubWorkflow`s for the same reason, and the specs run are pmoflow's (`engine/specs.py`: its timers
read pmoflow's clock).
"""

from __future__ import annotations

from collections.abc import Iterator

from SpiffWorkflow.bpmn.util.subworkflow import BpmnBaseWorkflow, BpmnSubWorkflow
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskIterator, TaskState

from pmoflow.engine import specs
from pmoflow.engine.specs import UNBOUNDED


def _in_state(workflow, state: int) -> list[Task]:
    return [t for t in list(workflow.tasks.values()) if t.state & state]


class _WholeTree:
    """What both of pmoflow's workflow classes change: scans instead of walks, walks without a depth limit."""

    tasks: dict
    task_tree: Task
    completed: bool

    def get_tasks_iterator(self, first_task: Task | None = None, **kwargs):
        kwargs.setdefault("max_depth", UNBOUNDED)
        # A mixin: mypy sees `object` as the superclass, the MRO gives SpiffWorkflow's workflow class.
        return super().get_tasks_iterator(first_task, **kwargs)  # type: ignore[misc]

    def is_completed(self) -> bool:
        if not self.completed and not any(t.state & TaskState.NOT_FINISHED_MASK for t in self.tasks.values()):
            self.completed = True
        return self.completed

    def update_waiting_tasks(self) -> None:
        for task in _in_state(self, TaskState.WAITING):
            task.task_spec._update(task)

    def _cancel_tasks(self, success: bool = False) -> list[Task]:
        """SpiffWorkflow's `Workflow.cancel`, with the whole tree in reach."""
        self.success, self.completed = success, True
        cancelled = list(TaskIterator(self.task_tree, max_depth=UNBOUNDED, state=TaskState.NOT_FINISHED_MASK))
        for task in cancelled:
            task.cancel()
        return cancelled


class PmoflowSubWorkflow(_WholeTree, BpmnSubWorkflow):
    """A subprocess or called process of a `PmoflowWorkflow`."""

    def cancel(self, success: bool = False) -> list[Task]:
        return self._cancel_tasks(success)


class PmoflowWorkflow(_WholeTree, BpmnWorkflow):
    """A BpmnWorkflow whose engine loop costs what the ready work costs, not what the history weighs."""

    def __init__(self, spec, subprocess_specs=None, **kwargs) -> None:
        for process_spec in [spec, *(subprocess_specs or {}).values()]:
            if process_spec is not None:
                specs.adopt(process_spec)
        super().__init__(spec, subprocess_specs, **kwargs)

    def create_subprocess(self, my_task: Task, spec_name: str) -> PmoflowSubWorkflow:
        subprocess = PmoflowSubWorkflow(self.subprocess_specs[spec_name], parent_task_id=my_task.id,
                                        top_workflow=self)
        self.subprocesses[my_task.id] = subprocess
        return subprocess

    def cancel(self, workflow: BpmnBaseWorkflow | None = None) -> list[Task]:
        """BpmnWorkflow's cancel: the workflow's open tasks, then the subprocesses they ran."""
        wf = workflow or self
        cancelled = wf._cancel_tasks() if isinstance(wf, _WholeTree) else BpmnBaseWorkflow.cancel(wf)
        ids = {t.id for t in cancelled}
        for subprocess in [sp for sp_id, sp in self.subprocesses.items() if sp_id in ids]:
            cancelled.extend(self.cancel(subprocess))
        return cancelled

    def _do_engine_steps(self, will_complete_task=None, did_complete_task=None) -> bool:
        def update_workflow(wf) -> int:
            count = 0
            for task in _in_state(wf, TaskState.READY):
                if task.state == TaskState.READY and not task.task_spec.manual:
                    if will_complete_task is not None:
                        will_complete_task(task)
                    task.run()
                    count += 1
                    if did_complete_task is not None:
                        did_complete_task(task)
            return count

        active = self.get_active_subprocesses()
        for subprocess in sorted(active, key=lambda v: v.depth, reverse=True):
            count = None
            while count is None or count > 0:
                count = update_workflow(subprocess)
            if subprocess.parent_task_id is not None:
                task = self.get_task_from_id(subprocess.parent_task_id)
                task.task_spec._update(task)
        count = update_workflow(self)
        return count > 0 or len(self.get_active_subprocesses()) > len(active)

    def all_workflows(self) -> Iterator[BpmnWorkflow]:
        yield self
        yield from self.subprocesses.values()

    def ready_manual_tasks(self) -> list[Task]:
        """READY human tasks of the workflow and its subprocesses, without a tree walk."""
        return [t for wf in self.all_workflows() for t in _in_state(wf, TaskState.READY) if t.task_spec.manual]

    def has_open_tasks(self) -> bool:
        return any(t.state & TaskState.NOT_FINISHED_MASK for wf in self.all_workflows() for t in wf.tasks.values())
