"""What model code may name: the calls the sandbox will refuse at run time, found before a file is deployed.

RestrictedPython refuses imports and names starting with `_` when code is compiled, but a call of a Python
builtin the sandbox does not provide (`vars()`, `globals()`, `locals()`, `eval`, `open`, `getattr` ...) compiles
and fails only when an instance reaches it, with a NameError. Task data cannot hold functions, so such a call
can never succeed: `validate` reports it with the file and line, and so does a string naming an attribute that
starts with `_` given to `getattr`, `hasattr`, `setattr` or `delattr`.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from pmoflow.engine.restricted import BUILTINS, SCRIPT_HELPERS

# `print` is rewritten by RestrictedPython (its output is discarded), so it is not a refused name.
REFUSED_CALLS = frozenset(n for n in dir(builtins) if not n.startswith("_") and n not in BUILTINS
                          and n not in SCRIPT_HELPERS and n != "print" and not n[0].isupper())
ATTRIBUTE_CALLS = frozenset({"getattr", "hasattr", "setattr", "delattr"})


@dataclass(frozen=True)
class Refusal:
    """A call the sandbox refuses: where in the code (1-based line, 0-based column) and why."""

    line: int
    column: int
    message: str


def refusals(source: str, mode: str) -> list[Refusal]:
    """Every call in `source` (a script, 'exec', or an expression, 'eval') that the sandbox refuses; code that
    does not parse gives none (compiling it reports that)."""
    try:
        tree = ast.parse(source, "<model code>", mode)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    assigned = {t.id for node in ast.walk(tree) for t in _targets(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        if name in REFUSED_CALLS and name not in assigned:
            found.append(Refusal(node.lineno, node.col_offset, f"{name}() is not available in scripts and "
                                                               f"conditions (the sandbox refuses it)"))
        elif name in ATTRIBUTE_CALLS and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_"):
            found.append(Refusal(node.lineno, node.col_offset, f"{name}() of '{node.args[1].value}': names "
                                                               f"starting with '_' are refused by the sandbox"))
    return sorted(found, key=lambda r: (r.line, r.column))


def _targets(node: ast.AST) -> list[ast.Name]:
    """Names a script binds itself (a function it defines may shadow a builtin)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [ast.Name(id=node.name)]
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.For | ast.comprehension):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []
