"""Model code that is bounded by construction runs in the engine's own process, without a sandbox child.

Most gateway conditions, timer values, service parameters, DMN entries and many short scripts are things like
`decision == "GO"`, `len(findings) > 0`, `"P5D"`, `"Reminder: " + title`, `round = round + 1`. A sandbox child
costs a few milliseconds; these cost microseconds. `compile_bounded` accepts a piece of code only if every node
is in a whitelist, and the rewritten code checks at run time what the syntax cannot show.

Why an accepted piece of code ends quickly and small, whatever the data:
* it has no loops, comprehensions, lambdas, function definitions, imports or `**`, so each node runs at most
  once: the number of operations is at most the number of nodes (an `if` runs one branch of its body);
* the only calls are `len str int float bool abs min max`, each linear in its argument, and a few methods of
  text, dicts and dates (`_method_`, checked against the receiver's exact type), each linear in the receiver;
  `str`/`int` of huge numbers are refused by Python's 4,300-digit limit;
* every other operation is linear in its operands (comparison, subscript, slice, attribute, f-string without a
  format spec), or goes through `_binop_`/`_inplace_`: `+` and `*` whose result would exceed MAX_SIZE items or
  MAX_BITS bits, `%` on text (printf widths) and in-place changes of lists and dicts are not done here;
* so every value is at most the size of the task data plus MAX_SIZE per node, and each operation costs at most
  linear (int division: quadratic) time in values of that size.
Whatever this cannot prove cheap raises NeedsSandbox before it changes anything, and the caller runs the same
code in the sandbox instead: the fast path decides where code runs, never what it means. Attribute access
goes through RestrictedPython's `safer_getattr`, as in the sandbox, and code RestrictedPython refuses is
refused before this module sees it.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from types import CodeType
from typing import Any

from pmoflow.engine import restricted

MAX_SIZE = 100_000  # items or characters a + or * may produce in-process
MAX_BITS = 4_096  # bits an integer * may produce in-process

SAFE_CALLS: dict[str, Callable[..., Any]] = {
    "len": len, "str": str, "int": int, "float": float, "bool": bool, "abs": abs, "min": min, "max": max}
SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({"strip", "lstrip", "rstrip", "lower", "upper", "startswith", "endswith", "isdigit", "split"}),
    dict: frozenset({"get", "keys", "values", "items"}),
    datetime: frozenset({"isoformat", "date"}),
    date: frozenset({"isoformat"}),
}
_METHOD_NAMES = frozenset().union(*SAFE_METHODS.values())
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
_FUNCS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod}
_SEQUENCES = (str, bytes, list, tuple)


class NeedsSandbox(Exception):
    """This piece of code, on this data, is not provably cheap in-process: run it in the sandbox."""


class Bounded:
    """A piece of code accepted for the fast path: its rewritten code and the names a script assigns."""

    def __init__(self, code: CodeType, assigned: frozenset[str]) -> None:
        self.code, self.assigned = code, assigned


@lru_cache(maxsize=4096)
def compile_bounded(source: str, mode: str) -> Bounded | None:
    """The fast-path form of an expression ('eval') or script ('exec'), or None when it is not in the whitelist."""
    try:
        tree = ast.parse(source, restricted.SCRIPT_FILE, mode)
        assigned: set[str] = set()
        if not (_statements(tree.body, assigned) if isinstance(tree, ast.Module)
                else isinstance(tree, ast.Expression) and _expr(tree.body)):
            return None
        tree = ast.fix_missing_locations(_Rewrite().visit(tree))
        return Bounded(compile(tree, restricted.SCRIPT_FILE, mode), frozenset(assigned))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _statements(body: list[ast.stmt], assigned: set[str]) -> bool:
    return all(_statement(node, assigned) for node in body)


def _statement(node: ast.stmt, assigned: set[str]) -> bool:
    if isinstance(node, ast.Assign):
        names = [n for target in node.targets for n in _target_names(target)]
        if not names or None in names:
            return False
        assigned.update(n for n in names if n is not None)
        return _expr(node.value)
    if isinstance(node, ast.AugAssign):
        if not isinstance(node.target, ast.Name) or type(node.op) not in _OPS or not _free(node.target.id):
            return False
        assigned.add(node.target.id)
        return _expr(node.value)
    if isinstance(node, ast.If):
        return _expr(node.test) and _statements(node.body, assigned) and _statements(node.orelse, assigned)
    return isinstance(node, ast.Pass) or isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _target_names(target: ast.expr) -> list[str | None]:
    if isinstance(target, ast.Name):
        return [target.id if _free(target.id) else None]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)] if target.elts else [None]
    return [None]


def _free(name: str) -> bool:
    """A name a fast-path script may assign: not a helper (the sandbox drops those), not an underscore name."""
    return not name.startswith("_") and name not in restricted.SCRIPT_HELPERS


def _expr(node: ast.expr | None) -> bool:
    if node is None:
        return True
    match node:
        case ast.Constant():
            return True
        case ast.Name(id=name):
            return not name.startswith("_")
        case ast.Attribute(value=value, attr=attr):
            return not attr.startswith("_") and _expr(value)
        case ast.Subscript(value=value, slice=index):
            return _expr(value) and _expr(index)
        case ast.Slice(lower=lower, upper=upper, step=step):
            return _expr(lower) and _expr(upper) and _expr(step)
        case ast.Compare(left=left, comparators=rest):
            return _expr(left) and all(map(_expr, rest))
        case ast.BoolOp(values=values):
            return all(map(_expr, values))
        case ast.UnaryOp(operand=operand):
            return _expr(operand)
        case ast.BinOp(left=left, op=op, right=right):
            return type(op) in _OPS and _expr(left) and _expr(right)
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _expr(test) and _expr(body) and _expr(orelse)
        case ast.List(elts=elts) | ast.Tuple(elts=elts) | ast.Set(elts=elts):
            return all(_expr(e.value if isinstance(e, ast.Starred) else e) for e in elts)
        case ast.Dict(keys=keys, values=values):
            return all(map(_expr, keys)) and all(map(_expr, values))
        case ast.JoinedStr(values=values):
            return all(map(_expr, values))
        case ast.FormattedValue(value=value, format_spec=spec):
            return spec is None and _expr(value)
        case ast.Call(func=func, args=args, keywords=keywords):
            if keywords or any(isinstance(a, ast.Starred) for a in args) or not all(map(_expr, args)):
                return False
            if isinstance(func, ast.Name):
                return func.id in SAFE_CALLS
            return isinstance(func, ast.Attribute) and func.attr in _METHOD_NAMES and _expr(func.value)
    return False


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Rewrite(ast.NodeTransformer):
    """Route every operation the syntax cannot bound through a run-time check."""

    def visit_Call(self, node: ast.Call) -> ast.expr:  # noqa: N802 (NodeTransformer's naming)
        args = [self.visit(a) for a in node.args]
        if isinstance(node.func, ast.Name):
            call = _call("_call_", node.func, ast.Constant(node.func.id), *args)
        else:
            assert isinstance(node.func, ast.Attribute), "_expr admits calls of names and attributes only"
            call = _call("_method_", self.visit(node.func.value), ast.Constant(node.func.attr), *args)
        return ast.copy_location(call, node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:  # noqa: N802
        return ast.copy_location(_call("_getattr_", self.visit(node.value), ast.Constant(node.attr)), node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:  # noqa: N802
        return ast.copy_location(_call("_binop_", ast.Constant(_OPS[type(node.op)]), self.visit(node.left),
                                       self.visit(node.right)), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:  # noqa: N802
        assert isinstance(node.target, ast.Name), "_statement admits augmented assignments to names only"
        name = node.target.id
        value = ast.copy_location(_call("_inplace_", ast.Constant(_OPS[type(node.op)]),
                                        ast.Name(id=name, ctx=ast.Load()), self.visit(node.value)), node)
        return ast.copy_location(ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=value), node)


def _binop_(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES) and len(a) + len(b) > MAX_SIZE:
        raise NeedsSandbox
    if op == "*":
        if type(a) is int and type(b) is int and a.bit_length() + b.bit_length() > MAX_BITS:
            raise NeedsSandbox
        for seq, times in ((a, b), (b, a)):
            if isinstance(seq, _SEQUENCES) and isinstance(times, int) and len(seq) * times > MAX_SIZE:
                raise NeedsSandbox
    if op == "%" and isinstance(a, str | bytes):  # printf-style formatting: '%*d' % (10**9, 1) is a GB
        raise NeedsSandbox
    return _FUNCS[op](a, b)


def _inplace_(op: str, a: Any, b: Any) -> Any:
    if type(a) in (list, dict):  # += changes the list itself, which other names may share
        raise NeedsSandbox
    return _binop_(op, a, b)


def _call_(function: Any, name: str, *args: Any) -> Any:
    if function is not SAFE_CALLS[name]:  # task data under a builtin's name: let the sandbox say what it is
        raise NeedsSandbox
    return function(*args)


def _method_(receiver: Any, name: str, *args: Any) -> Any:
    if name not in SAFE_METHODS.get(type(receiver), ()):
        raise NeedsSandbox
    return getattr(receiver, name)(*args)


RUNTIME = {"_getattr_": restricted.safer_getattr, "_binop_": _binop_, "_inplace_": _inplace_, "_call_": _call_,
           "_method_": _method_}


DROP = object()  # a script bound this name to something that is not data (a helper, a builtin): drop the key


def run(bounded: Bounded, mode: str, namespace: dict[str, Any]) -> Any:
    """Run fast-path code in `namespace` (helpers and task data; the checks are added here). An expression gives
    its value, a script the names it assigned with their values (DROP for a function or helper, which the
    sandbox would leave out of the data too). Values are checked and normalised as the sandbox checks them
    (`restricted.plain_data`)."""
    namespace.update(RUNTIME, __builtins__=restricted.BUILTINS)
    if mode == "eval":
        return restricted.plain_data(eval(bounded.code, namespace), "the expression's value")
    exec(bounded.code, namespace)
    return {name: restricted.plain_data(namespace[name], name) if restricted.is_data(name, namespace[name]) else DROP
            for name in bounded.assigned if name in namespace}
