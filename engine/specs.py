"""pmoflow's own kinds of SpiffWorkflow spec: timers that read pmoflow's clock, an end join that sees the whole tree.

SpiffWorkflow's timer event definitions read `datetime.now()` from their own module, and its end join looks
for unfinished tasks with an iterator that stops at depth 1000. Rather than change SpiffWorkflow for every
program in the process, pmoflow puts these subclasses into the specs it runs:

* the serializer restores the stock type names (`TimeDateEventDefinition`, `_EndJoin`, ...) as these classes
  (`register`), so specs stored by any pmoflow release load as pmoflow's and are still written under the
  stock names (a database stays readable by the release before);
* `adopt` turns a freshly parsed spec's stock objects into these classes (the scenario runner runs parsed
  specs without a serializer round trip); `PmoflowWorkflow` calls it on every spec it runs.

The subclasses keep SpiffWorkflow's class names on purpose: the name is the type name in stored specs and
the `event_type` that `waiting_events()` reports (the worker's due-time index matches on it).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from SpiffWorkflow.bpmn.serializer.default.event_definition import TimerConditionalEventDefinitionConverter
from SpiffWorkflow.bpmn.serializer.default.task_spec import BpmnTaskSpecConverter
from SpiffWorkflow.bpmn.specs import control
from SpiffWorkflow.bpmn.specs.event_definitions import timer
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.util.task import TaskIterator, TaskState

from pmoflow.engine import clock

UNBOUNDED = sys.maxsize  # SpiffWorkflow's iterators stop at max_depth=1000: a long loop's tasks go unseen


def _fired(my_task, due: datetime) -> bool:
    if due < clock.timer_now():
        my_task._set_internal_data(event_fired=True)
    return my_task._get_internal_data("event_fired", False)


class TimeDateEventDefinition(timer.TimeDateEventDefinition):
    """A timer at a date, due as of pmoflow's clock (`has_fired` as in SpiffWorkflow 3.2.0, `now` replaced)."""

    def has_fired(self, my_task) -> bool:
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            event_value = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            my_task._set_internal_data(event_value=event_value)
        return _fired(my_task, self.parse_time_or_duration(event_value))


class DurationTimerEventDefinition(timer.DurationTimerEventDefinition):
    """A timer after a duration, counted from pmoflow's clock (months and years on its calendar too)."""

    def has_fired(self, my_task) -> bool:
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            now = clock.timer_now()
            expression = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            duration = self.get_timedelta_from_start(self.parse_iso_duration(expression), now)
            event_value = (now + duration).isoformat()
            my_task._set_internal_data(event_value=event_value)
        return _fired(my_task, self.get_datetime(event_value))


class CycleTimerEventDefinition(timer.CycleTimerEventDefinition):
    """A repeating timer whose rounds come due by pmoflow's clock (`cycle_complete` as in SpiffWorkflow 3.2.0)."""

    def cycle_complete(self, my_task) -> bool:
        event_value = my_task._get_internal_data("event_value")
        if event_value is None:
            expression = my_task.workflow.script_engine.evaluate(my_task, self.expression)
            cycles, start, duration = recurring_interval(expression)
            event_value = {"cycles": cycles, "next": start.isoformat(), "duration": duration.total_seconds()}
        ready = False
        if event_value["cycles"] != 0:
            next_event = datetime.fromisoformat(event_value["next"])
            if next_event < clock.timer_now():
                event_value["next"] = (next_event + timedelta(seconds=event_value["duration"])).isoformat()
                event_value["cycles"] -= 1
                ready = True
        else:
            my_task.internal_data.pop("event_value", None)
            my_task.internal_data["event_fired"] = True
        my_task._set_internal_data(event_value=event_value)
        return ready


def recurring_interval(expression: str) -> tuple[int, datetime, timedelta]:
    """SpiffWorkflow's `parse_iso_recurring_interval`, except that `R/P1D` (no start) starts from pmoflow's clock."""
    parts = expression.upper().replace("--", "/").strip("R").split("/")
    if len(parts) == 2 and parts[1].startswith("P"):
        now = clock.timer_now()
        duration = timer.TimerEventDefinition.get_timedelta_from_start(
            timer.TimerEventDefinition.parse_iso_duration(parts[1]), now)
        return (int(parts[0]) if parts[0] else -1), now + duration, duration
    return timer.TimerEventDefinition.parse_iso_recurring_interval(expression)


class _EndJoin(control._EndJoin):
    """The join before a process's end: waits for every unfinished task, however deep in a long loop it sits."""

    def _check_threshold_unstructured(self, my_task) -> bool:
        for task in TaskIterator(my_task.workflow.task_tree, max_depth=UNBOUNDED, state=TaskState.NOT_FINISHED_MASK,
                                 end_at_spec=self.name):
            if task != my_task:
                return False
        return True


EVENT_DEFINITIONS = {timer.TimeDateEventDefinition: TimeDateEventDefinition,
                     timer.DurationTimerEventDefinition: DurationTimerEventDefinition,
                     timer.CycleTimerEventDefinition: CycleTimerEventDefinition}
TASK_SPECS = {control._EndJoin: _EndJoin}


def register(registry) -> None:
    """Restore the stock type names as pmoflow's classes (and write pmoflow's under the stock names)."""
    for mine in EVENT_DEFINITIONS.values():
        TimerConditionalEventDefinitionConverter(mine, registry)
    for mine in TASK_SPECS.values():
        BpmnTaskSpecConverter(mine, registry)


def adopt(spec) -> None:
    """Turn the stock timers and end join of a parsed process spec into pmoflow's (idempotent, cheap once done).

    The objects keep their state; only their class changes to a subclass with the same attributes."""
    if getattr(spec, "_pmoflow_adopted", False):
        return
    for task_spec in spec.task_specs.values():
        mine = TASK_SPECS.get(type(task_spec))
        if mine is not None:
            task_spec.__class__ = mine
        definition = getattr(task_spec, "event_definition", None)
        if definition is not None:
            _adopt_definition(definition)
    spec._pmoflow_adopted = True


def _adopt_definition(definition) -> None:
    mine = EVENT_DEFINITIONS.get(type(definition))
    if mine is not None:
        definition.__class__ = mine
    if isinstance(definition, MultipleEventDefinition):
        for inner in definition.event_definitions:
            _adopt_definition(inner)
