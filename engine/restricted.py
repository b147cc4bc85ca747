"""What model code is compiled with and what it can reach: RestrictedPython, its guards, the helper stand-ins,
and the data a script may leave behind.

BPMN comes from process designers, so scripts, conditions and DMN expressions are untrusted. This module imports
neither SpiffWorkflow nor the database: the sandbox process (`engine/sandbox.py`) loads it, and a small process
forks fast.
"""

from __future__ import annotations

import ast
import calendar
import decimal
import json
import operator
import random
import re
import time
import uuid
from collections import namedtuple
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from types import CodeType, ModuleType
from typing import Any
from uuid import UUID

from RestrictedPython import compile_restricted_eval, compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence, safer_getattr

SCRIPT_FILE = "<string>"  # SpiffWorkflow finds the failing line by this frame name


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


def _write_guard(obj: Any) -> Any:
    """`a.b = c` and `a[b] = c` in a script: only the lists and dicts of its own data may change. A class such
    as uuid.UUID or a helper stand-in is never writable, so no script can change what another one sees."""
    if type(obj) in (dict, list):
        return obj
    raise TypeError(f"scripts may change only lists and dicts, not a {type(obj).__name__}")


BUILTINS = {**safe_builtins, **_EXTRA_BUILTINS, "__import__": _internal_import,
            "setattr": lambda obj, name, value: setattr(_write_guard(obj), name, value),
            "delattr": lambda obj, name: delattr(_write_guard(obj), name)}


def guards() -> dict[str, Any]:
    """The names RestrictedPython's compiled code calls: a fresh dict for every run."""
    return {
        "__builtins__": BUILTINS,
        "_getattr_": safer_getattr,
        "_getitem_": lambda obj, key: obj[key],
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": _write_guard,
        "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y),
        "_print_": lambda *a, **k: _NullPrinter(),
    }


GUARD_NAMES = frozenset(guards())


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
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, nesting past the parser's limits
        raise ScriptRefused(f"cannot be compiled: {type(exc).__name__}: {exc}", (SCRIPT_FILE, 1, 0, "")) from None
    _refuse_imports(tree)
    compiler = compile_restricted_exec if mode == "exec" else compile_restricted_eval
    try:
        result = compiler(source, SCRIPT_FILE)
    except (RecursionError, MemoryError) as exc:  # RestrictedPython's transformer recurses per nesting level
        raise ScriptRefused(f"too deeply nested to compile ({type(exc).__name__})", (SCRIPT_FILE, 1, 0, "")) from None
    if result.errors:
        raise ScriptRefused("not allowed: " + "; ".join(result.errors), (SCRIPT_FILE, 1, 0, ""))
    assert result.code is not None, "RestrictedPython returns code whenever it reports no errors"
    return result.code


def is_data(key: str, value: Any) -> bool:
    """Whether a name a script left behind is task data (its functions, classes and helpers are not)."""
    return not key.startswith("_") and not callable(value) and not isinstance(value, ModuleType)


def _namespace(name: str, **members: Any) -> tuple:
    """A read-only stand-in for a module: only the listed members. Never the module itself, whose other
    attributes (uuid.os, random._os, json.decoder ...) lead out of the sandbox; a named tuple also cannot be
    rebound (`json.dumps = ...` fails), so one script cannot change what the next one gets."""
    return namedtuple(name, members)(**members)


# The helpers every script, condition and decision sees: those of the SpiffWorkflow modeler's engine
# (spiff-arena: datetime and timedelta are the classes; time, json, decimal, re, uuid, calendar and random are
# modules there and read-only namespaces of their safe members here), plus date and Decimal. Task data may not
# use these names (SCRIPT_HELPERS). The classes (datetime, UUID, Decimal ...) are C types or guarded by
# `_write_guard`: a script cannot set their attributes.
STANDARD_HELPERS = {
    "datetime": datetime, "date": date, "timedelta": timedelta, "Decimal": Decimal,
    "time": _namespace("time", time=time.time, strftime=time.strftime, gmtime=time.gmtime,
                       localtime=time.localtime, mktime=time.mktime,
                       sleep=time.sleep),  # bounded: the sandbox's wall-clock limit ends a script that sleeps past it
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
PARENT_HELPERS = frozenset({"process_initiator", "task_performer"})  # answered by the engine, which reads the store
SCRIPT_HELPERS = frozenset(STANDARD_HELPERS) | PARENT_HELPERS  # task data may not take these names


# -- the data a script may leave behind -----------------------------------------------------------------------

# What the workflow serializer stores: JSON's types plus the ones pmoflow registers (engine/serialization.py).
STORABLE_TYPES = (str, int, float, bool, type(None), datetime, date, timedelta, Decimal, UUID)
_LEAVES = frozenset(STORABLE_TYPES)  # exact types: a subclass could carry state of its own
MAX_DEPTH = 100  # lists and objects inside each other
MAX_VALUES = 200_000  # values in one result, shared ones counted each time they are reached


class Unstorable(ValueError):
    """A value a script produced that task data cannot hold."""


def plain_data(value: Any, path: str) -> Any:
    """The value as task data stores it, or Unstorable naming where and why. Tuples become lists (as a save and
    load would make them); a set, bytes, a compiled pattern, a key that is not text, a structure that contains
    itself or nests past MAX_DEPTH are refused. Bounded: it stops after MAX_VALUES values, so a structure that
    shares itself exponentially (`[[x] * 10] * 10 ...`) is refused rather than walked."""
    budget = [MAX_VALUES]
    return _plain(value, path, 0, set(), budget)


def _plain(value: Any, path: str, depth: int, inside: set[int], budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise Unstorable(f"{where(path)}: more than {MAX_VALUES:,} values in one result")
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind not in (dict, list, tuple):
        raise Unstorable(f"{where(path)}: a {kind.__name__} cannot be stored in task data (text, numbers, true/false, "
                         f"null, lists, objects, dates, Decimal and UUID can)")
    if id(value) in inside:
        raise Unstorable(f"{where(path)}: contains itself, so it cannot be stored")
    if depth >= MAX_DEPTH:
        raise Unstorable(f"{where(path)}: nested more than {MAX_DEPTH} levels deep")
    inside.add(id(value))
    try:
        if kind is dict:
            result = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise Unstorable(f"{where(path)}: has a key {_short(key)} ({type(key).__name__}); "
                                     f"keys must be text")
                result[key] = _plain(item, f"{path}.{key}", depth + 1, inside, budget)
            return result
        return [_plain(item, f"{path}[{i}]", depth + 1, inside, budget) for i, item in enumerate(value)]
    finally:
        inside.discard(id(value))


def where(path: str) -> str:
    """A path for a message: a value nested a hundred levels deep is named by its start."""
    return path if len(path) <= 60 else path[:57] + "..."


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a key's repr is code of its own class; say what it is instead
        return f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."
