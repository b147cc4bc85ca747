"""Process libraries: what an organisation ships to the engine (handlers, BPMN/DMN, forms, its people).

The engine never imports a library; it finds the installed ones here. A library is a `Library` object (or a
function returning one) named in the entry-point group `pmoflow.libraries` of a distribution's metadata:

    [options.entry_points]
    pmoflow.libraries =
        pmo = pmoflow.workflows:library

`PMOFLOW_LIBRARY=module:attribute[,module:attribute...]` overrides the entry points (tests, a library under
development that is not installed).
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pmoflow.engine.errors import InvalidInput

ENTRY_POINT_GROUP = "pmoflow.libraries"
ENV = "PMOFLOW_LIBRARY"


@dataclass(frozen=True)
class Library:
    """One organisation's processes and the trusted Python their service tasks call.

    `handlers` maps service-operator ids to plain functions; `process_dirs` are deployed by `pmoflow init`;
    `form_dirs` are searched for JSON Schema forms; `organisation` is the TOML file `init` loads when no
    `--org` is given; `demo(out, keep)` is the narrated walk `pmoflow demo` runs, if the library has one."""

    name: str
    handlers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    process_dirs: tuple[Path, ...] = ()
    form_dirs: tuple[Path, ...] = ()
    organisation: Path | None = None
    demo: Callable[..., Any] | None = None

    def roles(self) -> set[str]:
        """The roles its organisation file hands out (what its lanes may name)."""
        if self.organisation is None:
            return set()
        try:
            users = tomllib.loads(self.organisation.read_text(encoding="utf-8")).get("users", [])
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return set()
        return {role for user in users if isinstance(user, dict)
                for role in user.get("roles", []) if isinstance(role, str)}


def installed() -> list[Library]:
    """The libraries of this installation: `PMOFLOW_LIBRARY` when set, else every registered entry point."""
    return list(_installed(os.environ.get(ENV, "").strip()))


@cache
def _installed(override: str) -> tuple[Library, ...]:
    if override:
        found = [(ref.strip(), _import(ref.strip())) for ref in override.split(",") if ref.strip()]
    else:
        found = [(f"{point.name} = {point.value}", point.load())
                 for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name)]
    libraries = [_as_library(value, ref) for ref, value in found]
    check_distinct(libraries)
    return tuple(libraries)


def _import(ref: str) -> Any:
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise InvalidInput(f"{ENV}: '{ref}' is not module:attribute (for example pmoflow.workflows:library)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"{ENV}: cannot import {module_name}: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise InvalidInput(f"{ENV}: {module_name} has no attribute '{attribute}'") from None


def _as_library(value: Any, ref: str) -> Library:
    if callable(value) and not isinstance(value, Library):
        value = value()
    if not isinstance(value, Library):
        raise InvalidInput(f"process library '{ref}' is a {type(value).__name__}, not a pmoflow Library")
    return value


def handlers_of(libraries: Iterable[Library]) -> dict[str, Callable[..., Any]]:
    """Every service operator of the libraries, with its handler."""
    return {operator: fn for library in libraries for operator, fn in library.handlers.items()}


def check_distinct(libraries: Iterable[Library]) -> None:
    """Two libraries may not claim the same service operator: which one a process called would be a guess."""
    owner: dict[str, str] = {}
    for library in libraries:
        for operator in library.handlers:
            if operator in owner and owner[operator] != library.name:
                raise InvalidInput(f"service operator '{operator}' is registered by both the '{owner[operator]}' "
                                   f"and the '{library.name}' process libraries")
            owner[operator] = library.name


def default_organisation(libraries: Iterable[Library]) -> Path:
    """The organisation file `init` loads when none is given: the one the installed libraries ship."""
    files = [library.organisation for library in libraries if library.organisation is not None]
    if len(files) != 1:
        which = "no installed process library ships one" if not files else \
            "several installed process libraries ship one"
        raise InvalidInput(f"give the organisation file with --org FILE: {which}")
    return files[0]
