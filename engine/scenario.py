"""Test cases for processes: run a BPMN process from start to end without a database, as `pmoflow test` does.

A designer writes, next to ``name.bpmn``, a file ``test_name.json`` in the format of the SpiffWorkflow
modeler's (spiff-arena's) BPMN unit tests, so a file written there runs here unchanged::

    {
      "authorised": {
        "tasks": {
          "project_initiation:start_request": {"data": [{"title": "Customer portal", "...": "..."}]},
          "intake_review": {"data": [{"intakeDecision": "Return"}, {"intakeDecision": "Accept"}]},
          "register_request": {"data": [{"registration": {"requestId": "REQ-1"}}]},
          "tmr_approval_reminder": {"data": [{}]}
        },
        "mocks": {"process_initiator": "sam.sponsor"},
        "expected_output_json": {"outcome": "Authorised", "project": {"gatesPlanned": 3}}
      }
    }

Contract: ``run_tests(paths, handlers=None) -> list[CaseResult]``. A path is a BPMN file (its ``test_<name>.json``
runs), a test file (``test_<name>.json``, run against ``<name>.bpmn`` beside it) or a folder (every
``test_*.json`` in it, not recursively, like ``pmoflow deploy``). Usage errors raise :class:`InvalidInput`: a path
that does not exist, a BPMN file without its test file, other files, or paths naming no test file at all.
Everything else is a :class:`CaseResult`, one per case in file order, whose message names the task and the
difference key by key. A problem with a whole file (unreadable JSON, a BPMN that does not parse, no BPMN beside
it) is one failed result with case ``"-"``. Nothing raised inside a process (a failing script, a handler error, a
decision without a matching row) escapes as a traceback: it is a failed case naming the task, line and message.

Each case runs on a fresh workflow the way the engine runs an instance: the BPMN is parsed and checked by
``pmoflow.engine.parser``, scripts run in the engine's sandbox, the workflow class is the engine's, submitted data
is checked as ``pmoflow complete`` checks it (the form's JSON Schema, only the fields the form declares, no
reserved names) and the instance is saved and loaded back after every step, so data the engine could not store
fails here too. Per case:

``tasks``
    Keyed by ``taskBpmnId`` or ``ProcessId:taskBpmnId`` (the id of the process or subprocess holding the task;
    the prefixed key wins when both are given). ``data`` is a list with one entry per visit of the task:

    * a user or manual task (a human task) gets its next entry as its form submission; a user task reached with
      no entry left fails the case, naming the task and how many entries were given. A manual task with no entry
      is completed with no data (as in spiff-arena);
    * a service task's entry is merged into the task data *instead of* calling its handler (a mock), then the
      task's result variable is set from the merged data (null when the mock does not name it). A service task
      the case does not list calls the real handler from ``handlers`` (default: the installed process
      libraries' handlers, which are plain functions); pass ``handlers={}`` to require a mock for every service
      task, as spiff-arena does. A listed service task visited more times than it has entries fails the case;
    * a script task's entry replaces the script: the entry is merged into the data and the script does not run;
    * the process's start event's entry is the data the instance starts with, checked against the start form;
    * a timer event's entries (an extension: spiff-arena cannot fire timers) say, for each time the timer starts
      waiting (each visit of the task it is attached to, for a boundary timer), whether to fire it: ``{}`` (or
      any object, merged into the timer's data) fires it at once, before the task it is attached to gets its
      data; ``null`` lets that visit's timer wait. Firing moves only that timer's due time into the past, as the
      worker would see it when it comes due; time does not otherwise pass, so a timer the case does not fire
      never fires (timers already due, e.g. ``"PT0S"``, fire as they would in the engine). When several listed
      timers wait at once they fire in the order they come due.

``mocks``
    ``{"name": value}``: script helper functions replaced by a function returning ``value`` (spiff-arena's
    method mocks). ``process_initiator`` returns ``"tester"`` and ``task_performer`` ``None`` unless mocked.

``expected_output_json``
    Compared with the data of the completed process: every key given must be there with an equal value; keys
    the case does not name are not checked. The comparison recurses into objects (so ``{"project":
    {"gatesPlanned": 3}}`` checks one key of ``project``); lists must have the same length and are compared item
    by item under the same rule; ``true`` is not ``1``. Without it, a case only checks that the process completes.

``description``
    Free text, ignored.

The process runs until it completes; a case fails when it stops earlier (a human task without data, only timers
or messages left to wait for), when a process error happens, after 1000 submissions and timer firings or 5000
engine steps (a loop that never ends), when the final data differs from ``expected_output_json``, and when
entries are left over (the process did not take the path the case describes).

Deviations from spiff-arena's ``ProcessModelTestRunner`` (spiffworkflow_backend/services/
process_model_test_runner_service.py), each because pmoflow runs processes differently or to catch a mistake:

* ``expected_output_json`` is a (recursive) subset check, not equality: pmoflow processes carry generated ids,
  dates and routing keys a designer should not have to copy. Final data equal to the expected output still
  passes. Both compare the workflow's data at completion; here it is first put in JSON form (dates as ISO text).
* Task keys, case keys and entries are checked before the case runs: a key naming no task of the process, an
  unknown case key, data for a task that takes none (a gateway, a business rule task) or an entry that is not an
  object fails the case instead of being ignored; so do entries left over at the end.
* Human task data is validated against the task's form and replaces top-level keys (``dict.update``, as
  ``pmoflow complete`` does) instead of being deep-merged; mocks are merged the same way. As with ``complete``,
  a field the form does not declare passes only when it repeats the task data unchanged (recorded test data
  echoes the task's data back; the field is dropped), ``null`` passes for an optional field, choices named by
  ``options_from_task_data_var:NAME`` come from the task's data, and a user task's
  ``spiffworkflow:variableName`` puts the whole submission under that name.
* Unlisted service tasks call the registered handler (see above) instead of failing; a mocked service task's
  parameter expressions are still evaluated (an error in them fails the case), only the handler call is replaced.
* Parallel human tasks are completed in the order they became ready (the engine's order), not tree order.
* Timers can be fired (see above). ``ProcessId`` prefixes are matched against the process or subprocess that
  holds the task (for a call activity, the called process's id), as in spiff-arena, but when a case gives both
  ``ProcessId:task`` and ``task``, the prefixed key wins (spiff-arena takes the bare one).
* ``mocks`` functions accept and ignore any arguments (spiff-arena's take none).
* Folders are searched for test files without recursing (spiff-arena searches a process model's whole tree), and
  a test file without its BPMN is a failed result rather than an error that stops the whole run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptTask
from SpiffWorkflow.bpmn.specs.mixins.service_task import ServiceTask
from SpiffWorkflow.dmn.specs.business_rule_task_mixin import BusinessRuleTaskMixin
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from pmoflow.engine import audit, clock, forms, parser, serialization
from pmoflow.engine.errors import InvalidInput, InvalidProcess, PmoflowError
from pmoflow.engine.scripting import SCRIPT_HELPERS, Handler, SandboxScriptEngine
from pmoflow.engine.workflow import PmoflowWorkflow

TEST_PREFIX = "test_"
CASE_KEYS = {"tasks", "mocks", "expected_output_json", "description"}
DEFAULT_INITIATOR = "tester"
ROUTING_KEYS = {"lane_owners", "lane_roles"}  # what a task without a form may not set (as in the engine)
MAX_ACTIONS = 1000  # human task submissions and timer firings per case
MAX_ENGINE_STEPS = 5000  # engine tasks (scripts, gateways, events) per case; the cost grows with its square
FORM_PROPERTY = "formJsonSchemaFilename"
BPMN_NS = parser.NS["bpmn"]


@dataclass
class CaseResult:
    """The outcome of one test case; `message` says which task and what differs when it failed."""

    file: str
    case: str
    passed: bool
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.case}: {'passed' if self.passed else 'FAILED'}: {self.message}"


class CaseFailure(Exception):
    """A test case failed; the message is what the designer reads."""


# -- discovery --------------------------------------------------------------------------------------------


def discover(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(test file, BPMN file) pairs for the given BPMN files, test files and folders, in a stable order."""
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidInput(f"{path}: no such file or folder")
        if path.is_dir():
            for test_file in sorted(path.glob(f"{TEST_PREFIX}*.json")):
                found.setdefault(test_file, bpmn_for(test_file))
        elif parser.kind_of(path) == "bpmn":
            test_file = path.with_name(f"{TEST_PREFIX}{_base_name(path)}.json")
            if not test_file.is_file():
                raise InvalidInput(f"{path}: no test file {test_file.name} next to it")
            found.setdefault(test_file, path)
        elif path.suffix == ".json" and path.name.startswith(TEST_PREFIX):
            found.setdefault(path, bpmn_for(path))
        else:
            raise InvalidInput(f"{path}: not a .bpmn file, a test_<name>.json file or a folder")
    if not found:
        raise InvalidInput(f"no test files ({TEST_PREFIX}*.json) in {', '.join(map(str, paths))}")
    return list(found.items())


def bpmn_for(test_file: Path) -> Path:
    """spiff-arena's naming: `test_<name>.json` tests `<name>.bpmn` (or `<name>.bpmn20.xml`) in the same folder."""
    name = test_file.stem[len(TEST_PREFIX):]
    plain = test_file.with_name(name + ".bpmn")
    other = test_file.with_name(name + ".bpmn20.xml")
    return other if other.is_file() and not plain.is_file() else plain


def _base_name(bpmn_file: Path) -> str:
    """A BPMN file's name without its ending (.bpmn or .bpmn20.xml)."""
    return bpmn_file.name[:-len(".bpmn20.xml")] if bpmn_file.name.lower().endswith(".bpmn20.xml") else bpmn_file.stem


# -- the process under test -------------------------------------------------------------------------------


@dataclass
class TaskInfo:
    """What a case may say about one BPMN task."""

    process: str
    bpmn_id: str
    kind: str  # human, service, script, start, timer, other
    label: str
    form: str | None


@dataclass
class Model:
    """One BPMN file's process, parsed and checked the way `pmoflow deploy` does."""

    parsed: parser.ParsedProcess
    tasks: list[TaskInfo] = field(default_factory=list)

    @property
    def process_id(self) -> str:
        return self.parsed.process_id

    def schema(self, form: str) -> dict[str, Any]:
        text = self.parsed.sources.get(f"forms/{form}")
        if text is None:
            raise CaseFailure(f"form {form} was not found with the process")
        return forms.load_schema(text, form)

    def start_event(self) -> TaskInfo | None:
        return next((t for t in self.tasks if t.kind == "start"), None)


def load_model(bpmn_file: Path) -> Model:
    if not bpmn_file.is_file():
        raise CaseFailure(f"no {bpmn_file.name} next to the test file")
    files = _related_files(bpmn_file)
    form_dirs = [Path(str(resources.files("pmoflow.forms")))]
    try:
        processes = parser.parse(files, handlers=None, form_dirs=form_dirs)
    except InvalidProcess as exc:
        raise CaseFailure("\n".join([f"{bpmn_file.name} does not parse: {exc.message}", *exc.details])) from None
    parsed = _process_of(bpmn_file, processes)
    model = Model(parsed)
    specs = {parsed.spec.name: parsed.spec, **{k: v for k, v in parsed.subprocess_specs.items() if v is not None}}
    start_ids = {s.name for s in _case_start_events(parsed.spec)}
    for process, spec in specs.items():
        for task_spec in spec.task_specs.values():
            bpmn_id = getattr(task_spec, "bpmn_id", None)
            if not bpmn_id:
                continue
            kind = _kind(task_spec, process == parsed.spec.name and task_spec.name in start_ids)
            props = (getattr(task_spec, "extensions", None) or {}).get("properties", {})
            model.tasks.append(TaskInfo(process, bpmn_id, kind, _label(task_spec), props.get(FORM_PROPERTY)))
    start = model.start_event()
    if start is not None and start.form is None:
        start.form = parsed.start_form
    return model


def _related_files(bpmn_file: Path) -> list[Path]:
    """The BPMN file, the BPMN files beside it defining the processes it calls, and the DMN files beside it."""
    folder = bpmn_file.parent
    defined: dict[str, Path] = {}
    called: dict[Path, set[str]] = {}
    for file in sorted(f for f in folder.iterdir() if parser.kind_of(f) == "bpmn"):
        try:
            root = etree.parse(str(file), etree.XMLParser(resolve_entities=False)).getroot()
        except (etree.XMLSyntaxError, OSError):
            continue  # the parser reports the file under test; others only matter when called
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            defined.setdefault(process.get("id"), file)
        called[file] = {el.get("calledElement") for el in root.iter(f"{{{BPMN_NS}}}callActivity")}
    needed, todo = [bpmn_file], [bpmn_file]
    while todo:
        for process_id in sorted(called.get(todo.pop(), set()) - {None}):
            callee = defined.get(process_id)
            if callee is not None and callee not in needed:
                needed.append(callee)
                todo.append(callee)
    return needed + sorted(folder.glob("*.dmn"))


def _process_of(bpmn_file: Path, processes: list[parser.ParsedProcess]) -> parser.ParsedProcess:
    """The process the file is for: its executable process that no other process of the file calls."""
    mine = [p for p in processes if Path(p.spec.file).resolve() == bpmn_file.resolve()]
    root = etree.parse(str(bpmn_file)).getroot()
    executable = {el.get("id") for el in root.iter(f"{{{BPMN_NS}}}process") if el.get("isExecutable") == "true"}
    called = {el.get("calledElement") for el in root.iter(f"{{{BPMN_NS}}}callActivity")}
    candidates = [p for p in mine if p.process_id in executable] or mine
    preferred = [p for p in candidates if p.process_id not in called] or candidates
    if not preferred:
        raise CaseFailure(f"{bpmn_file.name} defines no process to test")
    return preferred[0]


def _case_start_events(spec) -> list:
    """The start event a case's start data goes to. Several start events sit behind SpiffWorkflow's
    StartEventSplit; timer and message start events are the worker's and the sender's to enter (a case cannot
    start there), so the one plain start event beside them takes the data. Otherwise: the process's first
    task spec(s)."""
    starts = [o for s in spec.start.outputs for o in (s.outputs if type(s).__name__ == "StartEventSplit" else [s])]
    plain = [s for s in starts if type(getattr(s, "event_definition", None)).__name__ == "NoneEventDefinition"]
    return plain if len(plain) == 1 else list(spec.start.outputs)


def _kind(task_spec, is_start: bool) -> str:
    if task_spec.manual:
        return "human"
    if isinstance(task_spec, ServiceTask):
        return "service"
    if isinstance(task_spec, ScriptTask):
        return "script"
    if isinstance(task_spec, StartEvent) and is_start:
        return "start"
    if isinstance(getattr(task_spec, "event_definition", None), TimerEventDefinition):
        return "timer"
    return "other"


def _label(task_spec) -> str:
    name = getattr(task_spec, "bpmn_name", None)
    return f"{task_spec.bpmn_id} ({name})" if name else task_spec.bpmn_id


# -- one case's plan --------------------------------------------------------------------------------------


@dataclass
class Entries:
    key: str
    info: TaskInfo
    data: list[dict[str, Any] | None]
    used: int = 0


class Plan:
    """A case's task data, checked against the process, handed out one visit at a time."""

    def __init__(self, model: Model, case: Any) -> None:
        if not isinstance(case, dict):
            raise CaseFailure("a test case must be a JSON object with 'tasks' and 'expected_output_json'")
        unknown = sorted(set(case) - CASE_KEYS)
        if unknown:
            raise CaseFailure(f"unknown key(s) {', '.join(unknown)} in the case; the keys are "
                              f"{', '.join(sorted(CASE_KEYS))}")
        self.model = model
        self.expected = case.get("expected_output_json")
        self.has_expected = "expected_output_json" in case
        self.mocks = {} if case.get("mocks") is None else case["mocks"]
        if not isinstance(self.mocks, dict):
            raise CaseFailure("'mocks' must be an object of helper name -> value")
        tasks = {} if case.get("tasks") is None else case["tasks"]
        if not isinstance(tasks, dict):
            raise CaseFailure("'tasks' must be an object of task id -> {\"data\": [...]}")
        self.entries = {key: self._entries(key, value) for key, value in tasks.items()}

    def _entries(self, key: str, value: Any) -> Entries:
        process, _, bpmn_id = key.rpartition(":")
        matches = [t for t in self.model.tasks if t.bpmn_id == bpmn_id and process in ("", t.process)]
        if not matches:
            raise CaseFailure(f"tasks: '{key}' names no task of process {self.model.process_id} "
                              f"(or of the processes it calls)")
        info = matches[0]
        if info.kind == "other":
            raise CaseFailure(f"tasks: '{key}' is not a task that takes data in a test: only user, manual, service "
                              f"and script tasks, the start event and timer events do")
        if not isinstance(value, dict) or set(value) - {"data"} or not isinstance(value.get("data"), list):
            raise CaseFailure(f"tasks: '{key}' must be {{\"data\": [...]}}, one entry per visit of the task")
        for n, entry in enumerate(value["data"], start=1):
            if entry is None and info.kind == "timer":
                continue
            if not isinstance(entry, dict):
                allowed = "an object or null" if info.kind == "timer" else "an object"
                raise CaseFailure(f"tasks: '{key}' entry {n} must be {allowed}")
            _check_keys(entry, set(self.mocks), f"task {info.label}, entry {n}")
        return Entries(key, info, list(value["data"]))

    def lookup(self, task: Task) -> Entries | None:
        bpmn_id = task.task_spec.bpmn_id
        return self.entries.get(f"{task.workflow.spec.name}:{bpmn_id}") or self.entries.get(bpmn_id)

    def take(self, task: Task, what: str) -> dict[str, Any] | None:
        """The next entry for `task`; None when the case does not list it. Fails when its entries ran out."""
        entries = self.lookup(task)
        if entries is None:
            return None
        if entries.used >= len(entries.data):
            raise CaseFailure(f"{what} {entries.info.label} is reached for the {_ordinal(entries.used + 1)} time "
                              f"but the case gives {_entries_count(len(entries.data))} for '{entries.key}'")
        entries.used += 1
        return copy.deepcopy(entries.data[entries.used - 1])

    def leftovers(self) -> list[str]:
        return [f"task {e.info.label}: {_entries_count(len(e.data))} given but only {e.used} used (the process did "
                f"not take the path the case describes)"
                for e in self.entries.values() if any(d is not None for d in e.data[e.used:])]

    def start_data(self) -> dict[str, Any]:
        start = self.model.start_event()
        entry: dict[str, Any] = {}
        if start is not None:
            keys = (f"{start.process}:{start.bpmn_id}", start.bpmn_id)
            entries = next((self.entries[k] for k in keys if k in self.entries), None)
            if entries is not None and entries.data:
                entries.used = 1
                entry = copy.deepcopy(entries.data[0] or {})  # entries of a start event are objects
            entry = _validate(self.model, start.form, entry, f"start event {start.label}")
        return entry


def _check_keys(data: dict[str, Any], mocked: set[str], where: str) -> None:
    """The engine's rules for submitted data: storable JSON, no leading underscore, no script-helper names."""
    try:
        serialization.check_data(data)
    except InvalidInput as exc:
        raise CaseFailure(f"{where}: {exc.message}") from None
    bad = sorted(k for k in data if k.startswith("_") or k in SCRIPT_HELPERS | mocked)
    if bad:
        raise CaseFailure(f"{where}: reserved field name(s) {', '.join(bad)} (script helpers, or a leading "
                          f"underscore)")


def _validate(model: Model, form: str | None, data: dict[str, Any], where: str,
              task_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check a submission as `pmoflow complete` does (forms.submission: the form's fields and rules; task data
    echoed back unchanged is dropped, a null optional field passes); return what it stores."""
    if form is None:
        extra = sorted(set(data) & ROUTING_KEYS)
        if extra:
            raise CaseFailure(f"{where}: a task without a form may not set {', '.join(extra)}")
        return data
    try:
        return forms.submission(model.schema(form), data, form, task_data)
    except InvalidProcess as exc:
        raise CaseFailure(f"{where}: {exc.message}") from None
    except InvalidInput as exc:
        raise CaseFailure("\n  ".join([f"{where}: {exc.message}", *exc.details])) from None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _entries_count(n: int) -> str:
    return f"{n} data entr{'y' if n == 1 else 'ies'}"


# -- the script engine ------------------------------------------------------------------------------------


class CaseScriptEngine(SandboxScriptEngine):
    """The engine's sandbox, with the case's service and script mocks and helper mocks."""

    def __init__(self, plan: Plan, handlers: Mapping[str, Handler]) -> None:
        helpers: dict[str, Any] = {"process_initiator": lambda: DEFAULT_INITIATOR,
                                   "task_performer": lambda bpmn_id: None}
        for name, value in plan.mocks.items():
            helpers[name] = _returning(value)
        super().__init__(handlers, helpers=helpers)
        self.plan = plan

    def call_service(self, task, operation_name: str, operation_params: dict[str, dict[str, Any]], **kw) -> str:
        mock = self.plan.take(task, "service task")
        if mock is None:
            if operation_name not in self.handlers:
                raise CaseFailure(f"service task {_label(task.task_spec)} has no mock in the case and no handler is "
                                  f"registered for '{operation_name}': list '{task.task_spec.bpmn_id}' under tasks "
                                  f"with the data it returns")
            return super().call_service(task, operation_name, operation_params, **kw)
        task.data.update(mock)
        return json.dumps(task.data.get(task.task_spec.result_variable))

    def execute(self, task, script, external_context=None):
        spec = task.task_spec
        if isinstance(spec, ScriptTask) and script is spec.script and self.plan.lookup(task) is not None:
            task.data.update(self.plan.take(task, "script task"))
            return True
        return super().execute(task, script, external_context)


def _returning(value: Any) -> Callable[..., Any]:
    return lambda *args, **kwargs: copy.deepcopy(value)


# -- running a case ---------------------------------------------------------------------------------------


class CaseRun:
    """One case driven on a fresh workflow, step by step, like a user and the worker would drive it."""

    def __init__(self, model: Model, plan: Plan, handlers: Mapping[str, Handler]) -> None:
        self.model, self.plan = model, plan
        self.engine = CaseScriptEngine(plan, handlers)
        self.wf = PmoflowWorkflow(model.parsed.spec, model.parsed.subprocess_specs)
        self.wf.script_engine = self.engine
        self.engine_steps = 0
        self.actions = 0
        self.timer_plan: dict[Any, dict[str, Any] | None] = {}  # waiting timer task id -> its entry
        self.fired: set[Any] = set()
        self.last = "the start"

    def run(self) -> dict[str, Any]:
        start = self.plan.start_data()
        for task in self.wf.get_tasks(state=TaskState.READY):
            task.data.update(copy.deepcopy(start))
        self.advance()
        while not self.wf.is_completed():
            self.actions += 1
            if self.actions > MAX_ACTIONS:
                raise CaseFailure(f"stopped after {MAX_ACTIONS} task submissions and timer firings: the process "
                                  f"seems to loop forever (last: {self.last})")
            if not (self.fire_next_timer() or self.complete_next_task()):
                raise CaseFailure(self.stuck())
        if not self.wf.success:
            raise CaseFailure("the process ended without success (it was cancelled)")
        return audit.to_json_data(dict(self.wf.data))

    # -- steps ------------------------------------------------------------------------------------------

    def advance(self) -> None:
        try:
            self.wf.refresh_timers()
            self.wf.do_engine_steps(did_complete_task=self._engine_step)
        except CaseFailure:
            raise
        except Exception as exc:  # anything a process does wrong is a failed case, never a traceback
            raise CaseFailure(process_error(exc)) from None
        self.roundtrip()

    def _engine_step(self, task: Task) -> None:
        self.engine_steps += 1
        if self.engine_steps > MAX_ENGINE_STEPS:
            raise CaseFailure(f"stopped after {MAX_ENGINE_STEPS} engine steps: the process loops without waiting "
                              f"for anyone (last: {_label(task.task_spec)})")
        spec = task.task_spec
        if isinstance(spec, BusinessRuleTaskMixin) and not spec.dmnEngine.decide(task):
            table = spec.dmnEngine.decision_table
            raise CaseFailure(f"business rule task {_label(spec)}: decision table '{table.name or table.id}' matched "
                              f"no rule (the engine stops the instance with an error here); add a default row")

    def roundtrip(self) -> None:
        """Save and load the instance as the engine does after every command: unstorable data fails here too."""
        try:
            state = serialization.dump_state(self.wf)
            self.wf = serialization.load_state(state, (self.model.parsed.spec, self.model.parsed.subprocess_specs))
        except Exception as exc:  # the engine would fail to save the instance
            raise CaseFailure(f"after {self.last}, the instance could not be saved: {type(exc).__name__}: {exc}") \
                from None
        self.wf.script_engine = self.engine

    def complete_next_task(self) -> bool:
        for task in self.wf.ready_manual_tasks():
            entries = self.plan.lookup(task)
            available = entries is not None and entries.used < len(entries.data)
            if not available and (entries is not None or not _is_manual_task(task)):
                continue  # stuck, unless another ready task can move the process on
            label = _label(task.task_spec)
            visit = (entries.used + 1) if entries is not None else 1
            data = (self.plan.take(task, "task") if available else None) or {}  # a task's entries are objects
            where = f"task {label}, visit {visit}"
            data = _validate(self.model, _form(task), data, where, task.data)
            self.last = f"task {label}"
            task.data.update(forms.landing(task.task_spec, data))
            try:
                task.run()
            except CaseFailure:
                raise
            except Exception as exc:  # a post-script failed: a process error on this task
                raise CaseFailure(process_error(exc)) from None
            self.advance()
            return True
        return False

    def fire_next_timer(self) -> bool:
        waiting = [t for wf in self.wf.all_workflows() for t in list(wf.tasks.values())
                   if t.state == TaskState.WAITING and _is_timer(t)]
        for task in waiting:
            if task.id not in self.timer_plan:
                entries = self.plan.lookup(task)
                if entries is not None and entries.used < len(entries.data):
                    self.timer_plan[task.id] = self.plan.take(task, "timer")
                else:
                    self.timer_plan[task.id] = None
        due = [t for t in waiting if self.timer_plan.get(t.id) is not None and t.id not in self.fired]
        if not due:
            return False
        task = min(due, key=_due_time)
        self.fired.add(task.id)
        self.last = f"timer {_label(task.task_spec)}"
        task.data.update(self.timer_plan[task.id])
        _make_due(task)
        self.advance()
        return True

    def stuck(self) -> str:
        ready = self.wf.ready_manual_tasks()
        if ready:
            task = ready[0]
            entries = self.plan.lookup(task)
            label = _label(task.task_spec)
            keys = f"'{task.workflow.spec.name}:{task.task_spec.bpmn_id}' or '{task.task_spec.bpmn_id}'"
            if entries is None:
                return f"task {label} is ready but the case gives no data for it (list {keys} under tasks)"
            return (f"task {label} is ready for the {_ordinal(entries.used + 1)} time but the case gives "
                    f"{_entries_count(len(entries.data))} for '{entries.key}'")
        timers = [_label(t.task_spec) for wf in self.wf.all_workflows() for t in wf.tasks.values()
                  if t.state == TaskState.WAITING and _is_timer(t)]
        waiting = [_label(t.task_spec) for wf in self.wf.all_workflows() for t in wf.tasks.values()
                   if t.state == TaskState.WAITING and getattr(t.task_spec, "bpmn_id", None) and not _is_timer(t)]
        parts = [f"timer(s) {', '.join(timers)} (list one under tasks with {{\"data\": [{{}}]}} to fire it)"] \
            if timers else []
        parts += [f"{', '.join(waiting)}"] if waiting else []
        return f"the process did not complete: after {self.last} it waits for " + ("; ".join(parts) or "nothing")


def _is_timer(task: Task) -> bool:
    return isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition)


def _is_manual_task(task: Task) -> bool:
    """A BPMN manual task (no form to fill in), as opposed to a user task."""
    return type(task.task_spec).__name__ == "ManualTask"


def _form(task: Task) -> str | None:
    return (getattr(task.task_spec, "extensions", None) or {}).get("properties", {}).get(FORM_PROPERTY)


def _due_time(task: Task) -> datetime:
    value = task.internal_data.get("event_value")
    try:
        if isinstance(value, dict):
            return datetime.fromisoformat(value["next"])
        return TimerEventDefinition.get_datetime(value)
    except (KeyError, TypeError, ValueError):
        return datetime.max.replace(tzinfo=UTC)


def _make_due(task: Task) -> None:
    """Move a waiting timer's due time just into the past (of pmoflow's clock, which its timers read); the next
    refresh fires it."""
    past = (clock.timer_now() - timedelta(seconds=1)).isoformat()
    value = task.internal_data.get("event_value")
    if isinstance(value, dict):  # a cycle timer: its next occurrence
        value["next"] = past
    else:
        task.internal_data["event_value"] = past


def process_error(exc: Exception) -> str:
    """A process error as the engine reports it: the task, the line and the message."""
    if isinstance(exc, PmoflowError):
        return exc.message
    task = getattr(exc, "task", None)
    where = f"task {_label(task.task_spec)}" if task is not None and getattr(task.task_spec, "bpmn_id", None) \
        else "the process"
    text = (str(exc).splitlines() or [""])[0].strip().rstrip(".").strip() or type(exc).__name__
    if ": " not in text and ":" in text:  # SpiffWorkflow writes "NameError:name 'x' is not defined"
        text = text.replace(":", ": ", 1)
    cause = getattr(exc, "exception", None)
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    line = getattr(exc, "line_number", None)
    error_line = (getattr(exc, "error_line", "") or "").strip()
    at = f", line {line}" + (f" ({error_line})" if error_line else "") if line else ""
    return f"{where} failed{at}: {text}"


# -- comparing the final data -----------------------------------------------------------------------------


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Key-by-key differences: every key of `expected` must be in `actual` with an equal value."""
    where = path or "(the data)"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object {_show(expected)}, got {_show(actual)}"]
        found = []
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                found.append(f"{sub}: expected {_show(value)}, but the key is missing")
            else:
                found.extend(differences(value, actual[key], sub))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [d for i, (e, a) in pairs for d in differences(e, a, f"{path}[{i}]")]
    if _same(expected, actual):
        return []
    return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _show(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ends(wf) -> list[str]:
    return [t.task_spec.bpmn_id for t in wf.tasks.values()
            if t.state == TaskState.COMPLETED and isinstance(t.task_spec, EndEvent)]


# -- the entry point --------------------------------------------------------------------------------------


def run_case(model: Model, case: Any, handlers: Mapping[str, Handler]) -> tuple[bool, str]:
    """Run one case; (passed, message)."""
    plan = Plan(model, case)
    run = CaseRun(model, plan, handlers)
    final = run.run()
    problems = differences(plan.expected, final) if plan.has_expected else []
    if problems:
        problems.insert(0, f"the final data differs from expected_output_json (the process ended at "
                           f"{', '.join(_ends(run.wf)) or '-'}):")
    leftovers = plan.leftovers()
    if leftovers:
        problems.append("data left over:")
        problems.extend(leftovers)
    if problems:
        return False, "\n  ".join(problems)
    return True, f"completed at {', '.join(_ends(run.wf)) or 'the end'}"


def run_tests(paths: Sequence[str | Path], handlers: Mapping[str, Handler] | None = None) -> list[CaseResult]:
    """Run every test case of the given BPMN files, test files and folders; one result per case."""
    if handlers is None:
        from pmoflow.engine.library import handlers_of, installed

        handlers = handlers_of(installed())
    results = []
    models: dict[Path, Model | CaseFailure] = {}
    for test_file, bpmn_file in discover(paths):
        name = str(test_file)
        try:
            cases = json.loads(test_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            results.append(CaseResult(name, "-", False, f"cannot read the test file: {exc}"))
            continue
        if not isinstance(cases, dict) or not cases:
            results.append(CaseResult(name, "-", False, "a test file is a JSON object of case name -> case"))
            continue
        if bpmn_file not in models:
            try:
                models[bpmn_file] = load_model(bpmn_file)
            except CaseFailure as exc:
                models[bpmn_file] = exc
        model = models[bpmn_file]
        if isinstance(model, CaseFailure):
            results.append(CaseResult(name, "-", False, str(model)))
            continue
        for case_name, case in cases.items():
            try:
                passed, message = run_case(model, case, handlers)
            except CaseFailure as exc:
                passed, message = False, str(exc)
            except Exception as exc:  # a bug here or in SpiffWorkflow: still a result, not a traceback
                passed, message = False, f"the test runner failed: {type(exc).__name__}: {exc}"
            results.append(CaseResult(name, case_name, passed, message))
    return results
