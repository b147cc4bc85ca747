"""SpiffWorkflow's script engine, bounded: how scripts, conditions, DMN entries, timers, cardinalities and service
parameters are evaluated, and service-task dispatch.

Model code is untrusted (designers write it). Each piece is compiled under RestrictedPython
(`engine/restricted.py`); code that is bounded by construction runs in-process (`engine/bounded.py`), anything
else in a disposable sandbox process with CPU, memory and wall-clock limits (`engine/sandbox.py`). Whatever
it raises, `BaseException` included, and whatever it leaves that task data cannot store, comes back as an
error of the task that ran it. Neither path changes the task data a script did not assign, nor anything
another script sees.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sized
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.exceptions import SpiffWorkflowException

from pmoflow.engine import bounded, clock, restricted, sandbox, serialization
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.restricted import (  # noqa: F401 (the names the parser, services and tests import from here)
    SCRIPT_FILE,
    SCRIPT_HELPERS,
    STANDARD_HELPERS,
    ScriptRefused,
    compile_script,
)
from pmoflow.engine.sandbox import Limits, ScriptError, ScriptTimeout  # noqa: F401

DEFAULT_TIME_LIMIT = Limits.seconds
MAX_INSTANCES_ENV = "PMOFLOW_MAX_INSTANCES"  # multi-instance cardinality limit
FAST_PATH_ENV = "PMOFLOW_FAST_PATH"
DEFAULT_MAX_INSTANCES = 1_000
HORIZON = timedelta(days=3653)  # timers further away than ten years are a typo (P99999999Y), not a plan

Handler = Callable[..., Any]


def max_instances() -> int:
    try:
        return max(1, int(os.environ.get(MAX_INSTANCES_ENV, DEFAULT_MAX_INSTANCES)))
    except ValueError:
        return DEFAULT_MAX_INSTANCES


class SandboxEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluates expressions and runs scripts, bounded, against task data.

    `helpers` beyond the standard ones are the engine's own functions (`task_performer` reads the store): they
    run in the engine's process when model code in the sandbox calls them. `time_limit` overrides the wall-clock
    limit of PMOFLOW_SCRIPT_SECONDS; the memory limit is PMOFLOW_SCRIPT_MEMORY_MB."""

    def __init__(self, helpers: Mapping[str, Any] | None = None, time_limit: float | None = None):
        super().__init__({**STANDARD_HELPERS, **(helpers or {})})
        self.parent_helpers = {k: v for k, v in (helpers or {}).items() if callable(v)}
        self.helper_values = {k: v for k, v in (helpers or {}).items() if not callable(v)}
        self.time_limit = time_limit

    def limits(self) -> Limits:
        limits = Limits.from_env()
        return limits if self.time_limit is None else Limits(self.time_limit, limits.memory_mb)

    def _check_names(self, context: Mapping[str, Any]) -> None:
        clashes = set(context) & set(self.globals)
        if clashes:
            raise ValueError(f"task data uses the name(s) {sorted(clashes)} of script helpers; rename the field(s)")

    def evaluate(self, expression: str, context: dict, external_context: dict | None = None) -> Any:
        return self._run(expression, "eval", context, external_context or {})

    def execute(self, script: str, context: dict, external_context: dict | None = None) -> bool:
        result = self._run(script, "exec", context, external_context or {})
        if isinstance(result, _Assigned):
            for name, value in result.values.items():
                context.pop(name, None) if value is bounded.DROP else context.__setitem__(name, value)
        else:
            context.clear()
            context.update(result)
        return True

    def _run(self, source: str, mode: str, context: dict, external: dict) -> Any:
        self._check_names(context)
        code = compile_script(source, mode)  # refused here exactly as the sandbox would refuse it
        fast = bounded.compile_bounded(source, mode) if _fast_path() and (mode == "eval" or not external) else None
        if fast is not None:
            try:
                result = bounded.run(fast, mode, {**self.globals, **external, **context})
                _check_storable(result if mode == "eval" else
                                {k: v for k, v in result.items() if v is not bounded.DROP}, mode)
                return result if mode == "eval" else _Assigned(result)
            except bounded.NeedsSandbox:
                pass  # not provably cheap on this data: the sandbox runs it
            except restricted.Unstorable as exc:
                raise sandbox.script_error("UnstorableValue", str(exc)) from None
        result = sandbox.run(mode, code, context, {**self.helper_values, **external}, self.parent_helpers,
                             self.limits())
        _check_storable(result, mode)
        return result


def _fast_path() -> bool:
    """PMOFLOW_FAST_PATH=0 sends every evaluation to the sandbox (to rule the fast path out, or to measure)."""
    return os.environ.get(FAST_PATH_ENV, "1") != "0"


class _Assigned:
    """What a fast-path script assigned: only these names change in the task data."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values


def _check_storable(value: Any, mode: str) -> None:
    """Refuse, at the task that made it, a value the database would not store alike or the workflow could not
    load back (the same rules as submitted data: serialization.check_data)."""
    try:
        serialization.check_data(value, "" if mode == "exec" else "the expression's value",
                                 allow=serialization.SERIALIZED_TYPES)
    except InvalidInput as exc:
        raise sandbox.script_error("UnstorableValue", str(exc)) from None


class SandboxScriptEngine(PythonScriptEngine):
    """SpiffWorkflow's script engine with bounded evaluation, limits on what an expression may ask of the engine
    (multi-instance cardinality, timer horizon), task errors for whatever a script raises, and a `call_service`
    that reports handler errors."""

    def __init__(self, handlers: Mapping[str, Handler], helpers: Mapping[str, Any] | None = None,
                 time_limit: float | None = None) -> None:
        super().__init__(environment=SandboxEnvironment(helpers, time_limit))
        self.handlers = handlers

    def evaluate(self, task, expression: str, external_context: dict | None = None) -> Any:
        value = super().evaluate(task, expression, external_context)
        spec = task.task_spec
        if isinstance(spec, MultiInstanceTask) and expression == spec.cardinality:
            _check_cardinality(task, value)
        event = getattr(spec, "event_definition", None)
        if isinstance(event, TimerEventDefinition) and expression == event.expression:
            problem = timer_too_far(value, clock.timer_now(), dates=False)
            if problem:
                raise WorkflowTaskException(f"timer value {value!r} {problem}", task=task)
        return value

    def execute(self, task, script: str, external_context: dict | None = None) -> bool:
        result = super().execute(task, script, external_context)
        check_fan_out(task)  # a script's list may feed the multi-instance task after it
        return result

    def create_task_exec_exception(self, task, script: str, err: Exception) -> WorkflowTaskException:
        """SpiffWorkflow's, with the line a sandboxed script failed at, and any exception argument (its own
        version fails with a TypeError on `ValueError(1)`)."""
        if isinstance(err, ScriptError):
            line = err.script_line or 0
            text = script.splitlines()[line - 1] if 0 < line <= len(script.splitlines()) else ""
        else:
            line, text = self.get_error_line_number_and_content(script, err)
        if isinstance(err, SpiffWorkflowException):
            err.line_number, err.error_line = line, text
            err.add_note(f"Python script error on line {line}: '{text}'")
            return err
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        return WorkflowTaskException(detail, task=task, exception=err, line_number=line, error_line=text)

    def call_service(self, task, operation_name: str, operation_params: dict[str, dict[str, Any]], **_) -> str:
        handler = self.handlers.get(operation_name)
        if handler is None:
            raise WorkflowTaskException(f"no handler is registered for service operator '{operation_name}'",
                                        task=task)
        kwargs = {name: param["value"] for name, param in operation_params.items()}
        try:
            result = handler(**copy.deepcopy(kwargs))
            text = json.dumps(result, default=_json_default, allow_nan=False)  # NaN: PostgreSQL would refuse it
        except Exception as exc:  # a handler is user code: report any failure on the task
            raise WorkflowTaskException(f"handler '{operation_name}' failed: {type(exc).__name__}: {exc}",
                                        task=task, exception=exc) from exc
        variable = getattr(task.task_spec, "result_variable", None)
        check_fan_out(task, {**task.data, variable: result} if variable else None)
        return text


def check_fan_out(task, data: Mapping[str, Any] | None = None) -> None:
    """Refuse, at the task about to complete, a collection too large for the multi-instance task after it.

    SpiffWorkflow starts a multi-instance task's instances while the task before it completes, all at once when
    parallel, each with a copy of the task data: inside its own code, where no sandbox bounds it (8,000 items
    took 12 s and 500 MB; 100,000 would take hours). So the engine checks each task's successors before they
    are reached: after a script (`execute`), a handler (`call_service`), before an engine step and before a
    human task completes (engine/runtime.py)."""
    limit = max_instances()
    values = task.data if data is None else data
    for successor in task.task_spec.outputs:
        collection = getattr(successor, "data_input", None)
        if not isinstance(successor, MultiInstanceTask) or collection is None:
            continue
        items = values.get(collection.bpmn_id)  # every BpmnDataSpecification has one
        if isinstance(items, Sized) and not isinstance(items, str) and len(items) > limit:
            raise WorkflowTaskException(
                f"{collection.bpmn_id} has {len(items):,} items, and the multi-instance task "
                f"'{successor.bpmn_id}' after this one would start an instance for each; at most {limit:,} may "
                f"run (set {MAX_INSTANCES_ENV} to change the limit)", task=task)


def _check_cardinality(task, value: Any) -> None:
    limit = max_instances()
    if type(value) is not int or value < 0:
        raise WorkflowTaskException(f"the loop cardinality {task.task_spec.cardinality} gave {value!r}; it must be "
                                    f"a whole number of at least 0", task=task)
    if value > limit:
        raise WorkflowTaskException(f"the loop cardinality {task.task_spec.cardinality} asks for {value:,} "
                                    f"instances; at most {limit:,} may run (set {MAX_INSTANCES_ENV} to change "
                                    f"the limit)", task=task)


def timer_too_far(value: Any, now: datetime | None = None, dates: bool = True) -> str | None:
    """Why a timer value comes due beyond HORIZON, or None (also when it cannot be read: other checks say so).
    A value is a duration (`"P5D"`, a timedelta), a date and time, or an ISO repeating interval (`"R/P1Y"`).
    `dates=False` checks durations only: at run time a date computed from task data may lie far ahead (a
    scenario's planned dates), while a far duration makes SpiffWorkflow count its months for minutes."""
    now = now or datetime.now(UTC)
    if isinstance(value, timedelta):
        return _too_far(lambda: now + value, now)
    if isinstance(value, datetime):
        return _too_far(lambda: value if value.tzinfo else value.replace(tzinfo=UTC), now) if dates else None
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    parts = text.replace("--", "/").lstrip("R").split("/")[1:] if text.startswith("R") else [text]
    for part in parts if dates else [p for p in parts if p.startswith("P")]:
        problem = _part_too_far(part, now)
        if problem:
            return problem
    return None


def _part_too_far(part: str, now: datetime) -> str | None:
    try:
        if part.startswith("P"):
            parsed = TimerEventDefinition.parse_iso_duration(part)
            # SpiffWorkflow adds the months of a duration one by one: P99999999Y would take it minutes
            if parsed.get("years", 0) * 12 + parsed.get("months", 0) > HORIZON.days // 30:
                return f"is more than {HORIZON.days // 365} years away"
            return _too_far(lambda: now + TimerEventDefinition.get_timedelta_from_start(parsed, now), now)
        moment = TimerEventDefinition.get_datetime(part)
    except Exception:  # noqa: BLE001 (SpiffWorkflow raises bare Exceptions for values it cannot read)
        return None
    return _too_far(lambda: moment if moment.tzinfo else moment.replace(tzinfo=UTC), now)


def _too_far(due: Callable[[], datetime], now: datetime) -> str | None:
    try:
        moment = due()
    except (OverflowError, ValueError):  # beyond year 9999
        return f"is more than {HORIZON.days // 365} years away (beyond what a date can hold)"
    return f"is more than {HORIZON.days // 365} years away" if moment - now > HORIZON else None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"a handler returned a {type(value).__name__}, which is not JSON data")
