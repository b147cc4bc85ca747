"""pmoflow leaves SpiffWorkflow as it found it, and says so loudly when SpiffWorkflow changes under it.

pmoflow runs its own subclasses (engine/workflow.py, engine/specs.py) instead of patching SpiffWorkflow: a
program that imports pmoflow and uses SpiffWorkflow directly sees stock SpiffWorkflow. Those subclasses copy
or lean on SpiffWorkflow internals, pinned below at their 3.2.0 signature and source: an upgrade that changes
one fails here, naming the pmoflow code to re-check, instead of silently changing how instances run.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from conftest import FIXTURES
from pmoflow.engine import clock, serialization, specs
from pmoflow.engine.scripting import SandboxScriptEngine
from pmoflow.engine.workflow import PmoflowSubWorkflow, PmoflowWorkflow

PINNED_VERSION = "3.2.0"

CHECK_UNTOUCHED = r"""
import importlib, json, pkgutil, sys
from datetime import UTC, datetime, timedelta

import pmoflow.engine
for module in pkgutil.walk_packages(pmoflow.engine.__path__, "pmoflow.engine."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)

from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskIterator, TaskState

from pmoflow.engine import clock, parser
from pmoflow.engine.scripting import SandboxScriptEngine
from pmoflow.engine.workflow import PmoflowWorkflow

fixtures = sys.argv[1]

# pmoflow's own workflow: a one-day timer fires when pmoflow's clock says two days have passed ...
process = parser.parse([f"{fixtures}/workers/wait_a_day.bpmn"], handlers=None)[0]
wf = PmoflowWorkflow(process.spec, process.subprocess_specs)
wf.script_engine = SandboxScriptEngine({})
wf.do_engine_steps()
assert not wf.is_completed(), "the timer should wait"
with clock.frozen(datetime.now(UTC) + timedelta(days=2)):
    # ... while SpiffWorkflow's timer module still reads the real time, even inside pmoflow's frozen clock
    assert abs(spiff_timer.datetime.now(UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    wf.refresh_timers()
    wf.do_engine_steps()
assert wf.is_completed(), "pmoflow's clock should have fired the timer"

# stock SpiffWorkflow is untouched
assert spiff_timer.datetime is datetime, f"SpiffWorkflow's timer module reads {spiff_timer.datetime}"
assert TaskIterator.__init__.__defaults__ == (None, 1000, True, None), TaskIterator.__init__.__defaults__
assert BpmnTaskIterator.__init__.__defaults__ == (None, 1000, True, False, None), BpmnTaskIterator.__init__.__defaults__

# a plain BpmnWorkflow still loses sight of a long loop at depth 1000, as stock 3.2.0 does ...
stock = BpmnParser()
stock.add_bpmn_file(f"{fixtures}/loop.bpmn")
plain = BpmnWorkflow(stock.get_spec("long_loop"))
plain.get_tasks(state=TaskState.READY)[0].data["iterations"] = 400
plain.do_engine_steps()
stalled = [t for t in plain.tasks.values() if t.state == TaskState.READY]
assert stalled and plain.is_completed() and not plain.get_tasks(state=TaskState.READY), \
    "stock BpmnWorkflow no longer stops at depth 1000"
assert plain.get_tasks(state=TaskState.READY, max_depth=sys.maxsize) == stalled

# ... while pmoflow's runs the same loop to its end
loop = parser.parse([f"{fixtures}/loop.bpmn"], handlers=None)[0]
mine = PmoflowWorkflow(loop.spec, loop.subprocess_specs)
mine.script_engine = SandboxScriptEngine({})
mine.get_tasks(state=TaskState.READY)[0].data["iterations"] = 400
mine.do_engine_steps()
ready = mine.get_tasks(state=TaskState.READY)
assert [t.task_spec.bpmn_id for t in ready] == ["confirm"] and ready[0].data["i"] == 400, ready
assert not mine.is_completed()

# SpiffWorkflow's own serializer configuration still restores its own classes
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.control import _EndJoin
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from pmoflow.engine import serialization
registry = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)
restored = registry.restore(json.loads(serialization.dump_specs(process.spec, {}))["spec"])
kinds = {type(t.event_definition) for t in restored.task_specs.values() if hasattr(t, "event_definition")}
assert spiff_timer.DurationTimerEventDefinition in kinds, kinds
assert type(restored.task_specs["wait_a_day.EndJoin"]) is _EndJoin
print("untouched")
"""


def test_importing_and_running_pmoflow_leaves_spiffworkflow_stock():
    result = subprocess.run([sys.executable, "-c", CHECK_UNTOUCHED, str(FIXTURES)], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parent)
    assert result.returncode == 0 and result.stdout.strip() == "untouched", result.stderr[-3000:]


def test_specs_and_states_stored_under_the_stock_names_run_as_pmoflows_and_are_written_back_unchanged():
    """A database written before pmoflow had its own classes names SpiffWorkflow's (as does one written now):
    it loads into pmoflow's classes, its timers follow pmoflow's clock, and pmoflow writes the same names."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(FIXTURES / "clock" / "timers_in_a_subprocess.bpmn"))
    stock_wf = BpmnWorkflow(parser.get_spec("timers_in_a_subprocess"),
                            parser.get_subprocess_specs("timers_in_a_subprocess"))
    stock_wf.do_engine_steps()
    stored = json.loads(BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG)).serialize_json(stock_wf))
    stored_specs = json.dumps({"spec": stored.pop("spec"), "subprocess_specs": stored.pop("subprocess_specs")})

    loaded = serialization.load_specs(stored_specs)
    assert json.loads(serialization.dump_specs(*loaded)) == json.loads(stored_specs)
    process, inner = loaded[0], loaded[1]["wait_inside"]
    assert type(process.task_specs["every_20_minutes"].event_definition) is specs.CycleTimerEventDefinition
    assert type(inner.task_specs["an_hour"].event_definition) is specs.DurationTimerEventDefinition
    assert type(inner.task_specs["new_year"].event_definition) is specs.TimeDateEventDefinition
    assert type(process.task_specs["timers_in_a_subprocess.EndJoin"]) is specs._EndJoin

    wf = serialization.load_state(json.dumps(stored), loaded)
    wf.script_engine = SandboxScriptEngine({})
    assert type(wf) is PmoflowWorkflow and {type(sp) for sp in wf.subprocesses.values()} == {PmoflowSubWorkflow}
    saved = json.loads(serialization.dump_state(wf))
    assert [sp["typename"] for sp in saved["subprocesses"].values()] == ["BpmnSubWorkflow"]
    started = datetime.now(UTC)
    with clock.frozen(started + timedelta(minutes=50)):  # two 20-minute reminders, the hour not yet over
        wf.refresh_timers()
        wf.do_engine_steps()
    assert [t.data.get("reminded") for t in wf.tasks.values() if t.task_spec.name == "count_reminder"] == [True, True]
    assert not wf.is_completed()
    with clock.frozen(started + timedelta(hours=2)):
        wf.refresh_timers()
        wf.do_engine_steps()
    assert wf.is_completed() and not wf.has_open_tasks()


def test_a_freshly_parsed_spec_runs_pmoflows_timers():
    """The scenario runner runs parsed specs without a serializer round trip: the workflow adopts them."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(FIXTURES / "clock" / "timers_in_a_subprocess.bpmn"))
    wf = PmoflowWorkflow(parser.get_spec("timers_in_a_subprocess"),
                         parser.get_subprocess_specs("timers_in_a_subprocess"))
    wf.script_engine = SandboxScriptEngine({})
    wf.do_engine_steps()
    with clock.timers_at(datetime.now(UTC) + timedelta(hours=2)):
        wf.refresh_timers()
        wf.do_engine_steps()
    assert wf.is_completed()


def test_spiffworkflow_is_the_version_pmoflow_was_checked_against():
    assert version("SpiffWorkflow") == PINNED_VERSION, (
        f"SpiffWorkflow {version('SpiffWorkflow')} is installed; pmoflow's overrides were checked against "
        f"{PINNED_VERSION}. Re-check each pin in {Path(__file__).name} against the new source, then update "
        f"PINNED_VERSION (and setup.cfg's pin)")


# SpiffWorkflow internal -> (what pmoflow does with it, signature in 3.2.0, sha256 of its 3.2.0 source, 16 hex)
PINS = {
    "bpmn.workflow:BpmnWorkflow._do_engine_steps": (
        "PmoflowWorkflow._do_engine_steps replaces it (scans of wf.tasks instead of tree walks)",
        "(self, will_complete_task=None, did_complete_task=None)", "1c52d09d52f72038"),
    "bpmn.workflow:BpmnWorkflow.do_engine_steps": (
        "PmoflowWorkflow relies on it calling _do_engine_steps until it returns False",
        "(self, will_complete_task=None, did_complete_task=None)", "0dddd74053a531e3"),
    "bpmn.workflow:BpmnWorkflow.get_active_subprocesses": (
        "PmoflowWorkflow._do_engine_steps calls it", "(self)", "ad2eb3f85816dc79"),
    "bpmn.workflow:BpmnWorkflow.create_subprocess": (
        "PmoflowWorkflow.create_subprocess replaces it (to make PmoflowSubWorkflows)",
        "(self, my_task, spec_name)", "d29d0ee4716cc3ba"),
    "bpmn.workflow:BpmnWorkflow.cancel": (
        "PmoflowWorkflow.cancel replaces it (without the depth limit)", "(self, workflow=None)", "65a6d8393ddb6175"),
    "bpmn.workflow:BpmnWorkflow.refresh_timers": (
        "runtime.Run.advance and the catch-up rely on it updating each waiting timer task",
        "(self)", "e1995bf4ce4f0ff0"),
    "bpmn.workflow:BpmnWorkflow.__init__": (
        "PmoflowWorkflow.__init__ wraps it (adopting pmoflow's specs first)",
        "(self, spec, subprocess_specs=None, script_engine=None, **kwargs)", "3a81d03cfd844e1a"),
    "workflow:Workflow.cancel": (
        "workflow._WholeTree._cancel_tasks copies it with an unbounded iterator",
        "(self, success: bool = False) -> list[SpiffWorkflow.task.Task]", "970d8ba9c28471b3"),
    "workflow:Workflow.is_completed": (
        "workflow._WholeTree.is_completed replaces it (a scan, no depth limit)", "(self) -> bool", "4f7a3c15bec818e9"),
    "workflow:Workflow.update_waiting_tasks": (
        "workflow._WholeTree.update_waiting_tasks replaces it (a scan, no depth limit)",
        "(self) -> None", "258ee4cb217fa709"),
    "workflow:Workflow._task_completed_notify": (
        "PmoflowWorkflow relies on it calling update_waiting_tasks, which it overrides",
        "(self, task: SpiffWorkflow.task.Task) -> None", "a87c9bea38b2f71e"),
    "bpmn.util.subworkflow:BpmnBaseWorkflow.get_tasks_iterator": (
        "workflow._WholeTree.get_tasks_iterator passes max_depth to it", "(self, first_task=None, **kwargs)",
        "d238edf6a8b16727"),
    "bpmn.util.subworkflow:BpmnSubWorkflow.__init__": (
        "PmoflowWorkflow.create_subprocess builds PmoflowSubWorkflow with these arguments",
        "(self, spec, parent_task_id, top_workflow, **kwargs)", "db2b701bf21b28a0"),
    "specs.base:TaskSpec._update": (
        "PmoflowWorkflow._do_engine_steps and update_waiting_tasks call task_spec._update(task)",
        "(self, my_task)", "6b138d31ca684e6b"),
    "bpmn.specs.event_definitions.timer:TimeDateEventDefinition.has_fired": (
        "specs.TimeDateEventDefinition.has_fired copies it with pmoflow's clock", "(self, my_task)",
        "919a32f7b56f51c0"),
    "bpmn.specs.event_definitions.timer:DurationTimerEventDefinition.has_fired": (
        "specs.DurationTimerEventDefinition.has_fired copies it with pmoflow's clock", "(self, my_task)",
        "c78bee4e63b01fbc"),
    "bpmn.specs.event_definitions.timer:CycleTimerEventDefinition.cycle_complete": (
        "specs.CycleTimerEventDefinition.cycle_complete copies it with pmoflow's clock", "(self, my_task)",
        "14378cef17d05489"),
    "bpmn.specs.event_definitions.timer:CycleTimerEventDefinition.update_task": (
        "specs.CycleTimerEventDefinition relies on it calling cycle_complete", "(self, my_task)", "6cd859500eddae74"),
    "bpmn.specs.event_definitions.timer:TimerEventDefinition.parse_iso_recurring_interval": (
        "specs.recurring_interval copies its no-start case with pmoflow's clock", "(expression)", "a6cd84f8353b1abc"),
    "bpmn.specs.event_definitions.timer:TimerEventDefinition.get_timedelta_from_start": (
        "specs' timers call it with pmoflow's now as the start", "(parsed_duration, start=None)",
        "455b8eac225823e0"),
    "bpmn.specs.control:_EndJoin._check_threshold_unstructured": (
        "specs._EndJoin._check_threshold_unstructured copies it with an unbounded iterator", "(self, my_task)",
        "e466d541083a5bf8"),
    "bpmn.specs.mixins.events.event_types:CatchingEvent._update_hook": (
        "specs' timers rely on it calling event_definition.has_fired", "(self, my_task)", "4ecffc9f45f998dd"),
    "bpmn.specs.event_definitions.multiple:MultipleEventDefinition.has_fired": (
        "specs.adopt relies on it asking each inner timer's has_fired", "(self, my_task)", "735a9c586e81e112"),
    "util.task:TaskIterator.__init__": (
        "workflow and specs pass max_depth by keyword to lift its depth limit",
        "(self, task, end_at_spec=None, max_depth=1000, depth_first=True, task_filter=None, **kwargs)",
        "86cd5292d76b19c4"),
    "bpmn.util.task:BpmnTaskIterator.__init__": (
        "workflow._WholeTree.get_tasks_iterator passes max_depth by keyword",
        "(self, task, end_at_spec=None, max_depth=1000, depth_first=True, skip_subprocesses=False, "
        "task_filter=None, **kwargs)", "d2e1aaf4d8328c22"),
    "bpmn.serializer.default.workflow:BpmnWorkflowConverter.from_dict": (
        "serialization.InstanceStateConverter.from_dict copies it without the specs", "(self, dct)",
        "7515b23286170925"),
    "bpmn.serializer.default.workflow:BpmnWorkflowConverter.subprocesses_from_dict": (
        "serialization.InstanceStateConverter restores PmoflowSubWorkflows through it",
        "(self, dct, workflow, top_workflow=None)", "08c71df1fee4f9a7"),
    "bpmn.serializer.default.workflow:BpmnSubWorkflowConverter.from_dict": (
        "serialization registers it for PmoflowSubWorkflow", "(self, dct, task, top_workflow)", "2cdaa9bb752f4ece"),
    "bpmn.serializer.default.process_spec:BpmnProcessSpecConverter.from_dict": (
        "specs.register relies on it restoring the end join through the registry", "(self, dct)",
        "f889b84dc74203a3"),
    "bpmn.serializer.helpers.dictionary:DictionaryConverter.register": (
        "specs.register relies on the last registration of a type name winning",
        "(self, cls, to_dict, from_dict, typename=None)", "ee7ce26ae65c2f45"),
    "bpmn.specs.bpmn_process_spec:BpmnProcessSpec.__init__": (
        "specs.adopt relies on each process spec making its own _EndJoin",
        "(self, name=None, description=None, filename=None, svg=None)", "4c0511ce1defb2f1"),
}


def _resolve(path: str):
    module, qualname = path.split(":")
    target = importlib.import_module(f"SpiffWorkflow.{module}")
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


@pytest.mark.parametrize("path", sorted(PINS))
def test_a_spiffworkflow_internal_pmoflow_relies_on_is_unchanged(path):
    use, signature, digest = PINS[path]
    target = _resolve(path)
    found_signature = str(inspect.signature(target))
    found_digest = hashlib.sha256(inspect.getsource(target).encode()).hexdigest()[:16]
    assert (found_signature, found_digest) == (signature, digest), (
        f"SpiffWorkflow {version('SpiffWorkflow')} changed {path}, and {use}: read the new code, adapt pmoflow, "
        f"then pin the new signature and source hash here (signature {found_signature}, hash {found_digest})")


def test_the_task_state_masks_pmoflow_tests_against_are_unchanged():
    from SpiffWorkflow.util.task import TaskState
    found = {name: getattr(TaskState, name) for name in (
        "MAYBE", "LIKELY", "FUTURE", "WAITING", "READY", "STARTED", "COMPLETED", "ERROR", "CANCELLED",
        "FINISHED_MASK", "DEFINITE_MASK", "PREDICTED_MASK", "NOT_FINISHED_MASK")}
    assert found == {"MAYBE": 1, "LIKELY": 2, "FUTURE": 4, "WAITING": 8, "READY": 16, "STARTED": 32,
                     "COMPLETED": 64, "ERROR": 128, "CANCELLED": 256, "FINISHED_MASK": 448, "DEFINITE_MASK": 60,
                     "PREDICTED_MASK": 3, "NOT_FINISHED_MASK": 63}, (
        f"SpiffWorkflow's TaskState values changed ({found}): the scans in engine/workflow.py, the projections "
        f"in engine/runtime.py and stored instance states (state numbers) must be re-checked")
