"""pmoflow's BpmnWorkflow: SpiffWorkflow's, with its per-step tree walks replaced by scans of its task map.

SpiffWorkflow 3.2 walks the whole task tree for every engine step and every completed task, so the cost of
a step grows with the instance's history (quadratic over a long loop). `wf.tasks` is a dict of every task:
scanning it finds the same READY and WAITING tasks without recursion or depth limits. Tasks that are READY
at the same moment run in creation order rather than tree order; the tests pin the behaviour that matters.
"""

from __future__ import annotations

from collections.abc import Iterator

from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState


def _in_state(workflow, state: int) -> list[Task]:
    return [t for t in list(workflow.tasks.values()) if t.state & state]


class PmoflowWorkflow(BpmnWorkflow):
    """A BpmnWorkflow whose engine loop costs what the ready work costs, not what the history weighs."""

    def is_completed(self) -> bool:
        if not self.completed and not any(t.state & TaskState.NOT_FINISHED_MASK for t in self.tasks.values()):
            self.completed = True
        return self.completed

    def update_waiting_tasks(self) -> None:
        for task in _in_state(self, TaskState.WAITING):
            task.task_spec._update(task)

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
