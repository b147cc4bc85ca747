"""The script sandbox and service-task dispatch.

BPMN comes from process designers, so scripts, conditions and DMN expressions are untrusted: they run under
RestrictedPython (no imports, no dunder names, guarded attribute access) with a wall-clock limit, on a deep
copy of the task data so a script can never mutate nested data shared with earlier tasks.
"""

from __future__ import annotations

import ast
import calendar
import copy
import decimal
import json
import operator
import random
import re
import sys
import time
import uuid
from collections import namedtuple
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from types import CodeType, ModuleType
from typing import Any

from RestrictedPython import compile_restricted_eval, compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence, safer_getattr
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

SCRIPT_FILE = "<string>"  # SpiffWorkflow finds the failing line by this frame name
DEFAULT_TIME_LIMIT = 2.0

Handler = Callable[..., Any]


class ScriptTimeout(Exception):
    """A script ran past its time limit."""


class ScriptRefused(SyntaxError):
    """A script uses something the sandbox does not allow; refused before it runs."""


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "|=": operator.ior,
    "&=": operator.iand, "^=": operator.ixor, "<<=": operator.ilshift, ">>=": operator.irshift,
}

_EXTRA_BUILTINS = {
    name: getattr(__import__("builtins"), name)
    for name in ("all", "any", "dict", "enumerate", "filter", "format", "list", "map", "max", "min", "reversed",
                 "set", "sorted", "sum", "tuple", "zip", "frozenset")
}


# C code such as date.today() and strptime imports these through the builtins; scripts themselves cannot
# name __import__ (RestrictedPython refuses underscore names) and import statements are refused.
_INTERNAL_IMPORTS = {"time", "_strptime"}


def _internal_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name not in _INTERNAL_IMPORTS:
        raise ImportError(f"imports are not allowed in scripts (tried '{name}')")
    return __import__(name, globals, locals, fromlist, level)


def _guards() -> dict[str, Any]:
    return {
        "__builtins__": {**safe_builtins, **_EXTRA_BUILTINS, "__import__": _internal_import},
        "_getattr_": safer_getattr,
        "_getitem_": lambda obj, key: obj[key],
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": lambda obj: obj,
        "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y),
        "_print_": lambda *a, **k: _NullPrinter(),
    }


class _NullPrinter:
    """Scripts may call print(); output is discarded (use task data to say things)."""

    def _call_print(self, *args, **kwargs) -> None:
        pass

    def __call__(self) -> str:
        return ""


def _refuse_imports(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            raise ScriptRefused("imports are not allowed in scripts; use a service task handler", (
                SCRIPT_FILE, node.lineno, node.col_offset, ""))


@lru_cache(maxsize=2048)
def compile_script(source: str, mode: str) -> CodeType:
    """Compile a script ('exec') or expression ('eval') under RestrictedPython; cached per source text."""
    try:
        tree = ast.parse(source, SCRIPT_FILE, mode)
    except SyntaxError as exc:
        raise ScriptRefused(f"syntax error: {exc.msg}", (SCRIPT_FILE, exc.lineno, exc.offset, "")) from None
    _refuse_imports(tree)
    compiler = compile_restricted_exec if mode == "exec" else compile_restricted_eval
    result = compiler(source, SCRIPT_FILE)
    if result.errors:
        raise ScriptRefused("not allowed: " + "; ".join(result.errors), (SCRIPT_FILE, 1, 0, ""))
    return result.code


def _time_limited(fn: Callable[[], Any], limit: float) -> Any:
    """Run fn, interrupting Python-level code in the script frame once `limit` seconds have passed."""
    deadline = time.monotonic() + limit

    def local_trace(frame, event, arg):
        if time.monotonic() > deadline:
            raise ScriptTimeout(f"script exceeded its time limit of {limit:g} s")
        return local_trace

    def global_trace(frame, event, arg):
        if frame.f_code.co_filename != SCRIPT_FILE:
            return None
        frame.f_trace_opcodes = True  # a one-line `while True: pass` emits no line events
        return local_trace

    previous = sys.gettrace()
    sys.settrace(global_trace)
    try:
        return fn()
    finally:
        sys.settrace(previous)


def _is_data(key: str, value: Any) -> bool:
    return not key.startswith("_") and not callable(value) and not isinstance(value, ModuleType)


def _namespace(name: str, **members: Any) -> tuple:
    """A read-only stand-in for a module: only the listed members. Never the module itself, whose other
    attributes (uuid.os, random._os, json.decoder ...) lead out of the sandbox; a named tuple also cannot be
    rebound (`json.dumps = ...` fails), so one script cannot change what the next one gets."""
    return namedtuple(name, members)(**members)


# The helpers every script, condition and decision sees: those of the SpiffWorkflow modeler's engine
# (spiff-arena: datetime and timedelta are the classes; time, json, decimal, re, uuid, calendar and random are
# modules there and read-only namespaces of their safe members here), plus date and Decimal. Task data may not
# use these names (SCRIPT_HELPERS).
STANDARD_HELPERS = {
    "datetime": datetime, "date": date, "timedelta": timedelta, "Decimal": Decimal,
    "time": _namespace("time", time=time.time, strftime=time.strftime, gmtime=time.gmtime,
                       localtime=time.localtime, mktime=time.mktime),
    "json": _namespace("json", dumps=json.dumps, loads=json.loads, JSONDecodeError=json.JSONDecodeError),
    "decimal": _namespace("decimal", Decimal=decimal.Decimal, InvalidOperation=decimal.InvalidOperation,
                          **{n: getattr(decimal, n) for n in ("ROUND_UP", "ROUND_DOWN", "ROUND_CEILING",
                                                              "ROUND_FLOOR", "ROUND_HALF_UP", "ROUND_HALF_DOWN",
                                                              "ROUND_HALF_EVEN", "ROUND_05UP")}),
    "re": _namespace("re", **{n: getattr(re, n) for n in (
        "match", "search", "sub", "subn", "findall", "finditer", "fullmatch", "split", "compile", "escape",
        "error", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A")}),
    "uuid": _namespace("uuid", uuid4=uuid.uuid4, uuid5=uuid.uuid5, uuid3=uuid.uuid3, UUID=uuid.UUID,
                       NAMESPACE_DNS=uuid.NAMESPACE_DNS, NAMESPACE_URL=uuid.NAMESPACE_URL),
    "calendar": _namespace("calendar", monthrange=calendar.monthrange, isleap=calendar.isleap,
                           leapdays=calendar.leapdays, weekday=calendar.weekday,
                           monthcalendar=calendar.monthcalendar, timegm=calendar.timegm,
                           month_name=tuple(calendar.month_name), month_abbr=tuple(calendar.month_abbr),
                           day_name=tuple(calendar.day_name), day_abbr=tuple(calendar.day_abbr),
                           **{n: int(getattr(calendar, n)) for n in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY",
                                                                     "FRIDAY", "SATURDAY", "SUNDAY")}),
    "random": _namespace("random", random=random.random, randint=random.randint, randrange=random.randrange,
                         choice=random.choice, choices=random.choices, shuffle=random.shuffle,
                         sample=random.sample, uniform=random.uniform),
}
SCRIPT_HELPERS = frozenset(STANDARD_HELPERS) | {"process_initiator", "task_performer"}  # task data may not take


class SandboxEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluates expressions and runs scripts in RestrictedPython against a deep copy of task data."""

    def __init__(self, helpers: Mapping[str, Any] | None = None, time_limit: float = DEFAULT_TIME_LIMIT):
        super().__init__({**STANDARD_HELPERS, **(helpers or {})})
        self.time_limit = time_limit

    def _namespace(self, context: Mapping[str, Any], external: Mapping[str, Any] | None) -> dict[str, Any]:
        clashes = set(context) & set(self.globals)
        if clashes:
            raise ValueError(f"task data uses the name(s) {sorted(clashes)} of script helpers; rename the field(s)")
        return {**_guards(), **self.globals, **(external or {}), **copy.deepcopy(dict(context))}

    def evaluate(self, expression: str, context: dict, external_context: dict | None = None) -> Any:
        code = compile_script(expression, "eval")
        namespace = self._namespace(context, external_context)
        return _time_limited(lambda: eval(code, namespace), self.time_limit)

    def execute(self, script: str, context: dict, external_context: dict | None = None) -> bool:
        code = compile_script(script, "exec")
        namespace = self._namespace(context, external_context)
        _time_limited(lambda: exec(code, namespace), self.time_limit)
        hidden = set(_guards()) | set(self.globals) | set(external_context or {})
        result = {k: v for k, v in namespace.items() if k not in hidden and _is_data(k, v)}
        context.clear()
        context.update(result)
        return True


class SandboxScriptEngine(PythonScriptEngine):
    """SpiffWorkflow's script engine with the sandbox and a `call_service` that reports handler errors."""

    def __init__(self, handlers: Mapping[str, Handler], helpers: Mapping[str, Any] | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT) -> None:
        super().__init__(environment=SandboxEnvironment(helpers, time_limit))
        self.handlers = handlers

    def call_service(self, task, operation_name: str, operation_params: dict[str, dict[str, Any]], **_) -> str:
        handler = self.handlers.get(operation_name)
        if handler is None:
            raise WorkflowTaskException(f"no handler is registered for service operator '{operation_name}'",
                                        task=task)
        kwargs = {name: param["value"] for name, param in operation_params.items()}
        try:
            result = handler(**copy.deepcopy(kwargs))
            return json.dumps(result, default=_json_default)
        except Exception as exc:  # a handler is user code: report any failure on the task
            raise WorkflowTaskException(f"handler '{operation_name}' failed: {type(exc).__name__}: {exc}",
                                        task=task, exception=exc) from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"a handler returned a {type(value).__name__}, which is not JSON data")
