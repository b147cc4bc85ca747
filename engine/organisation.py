"""The organisation file: who works here and which roles each person holds."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pmoflow.engine.errors import InvalidInput

PMO_ROLES = (
    "Project Director", "Assistant Project Director", "Senior Project Manager", "Project Manager",
    "Quality Director", "SQA", "Configuration Manager", "Configuration Engineer", "SEPG", "Internal Auditor",
    "Measurement Analyst", "Knowledge Manager", "Training Coordinator", "Tool Developer", "Sponsor", "Auditee",
    "Steering Committee",
)
USER_KEYS = {"name", "full_name", "email", "department", "roles"}


@dataclass(frozen=True)
class Person:
    name: str
    roles: tuple[str, ...]
    full_name: str = ""
    email: str = ""
    department: str = ""


@dataclass
class Organisation:
    people: list[Person] = field(default_factory=list)
    source: str = ""


def demo_organisation_path() -> Path:
    return Path(str(resources.files("pmoflow.workflows") / "demo-organisation.toml"))


def load(path: str | Path | None = None) -> Organisation:
    """Read and check an organisation TOML file (the bundled demo organisation when no path is given)."""
    path = Path(path) if path else demo_organisation_path()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read organisation file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: not valid TOML: {exc}") from exc
    users = data.get("users")
    if not isinstance(users, list) or not users:
        raise InvalidInput(f"{path}: expected one or more [[users]] tables")
    people, seen = [], set()
    for i, user in enumerate(users, 1):
        where = f"{path}: user #{i}"
        unknown = set(user) - USER_KEYS
        if unknown:
            raise InvalidInput(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(USER_KEYS)}")
        name, roles = user.get("name"), user.get("roles", [])
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"{where}: 'name' must be a non-empty string")
        if name in seen:
            raise InvalidInput(f"{where}: user '{name}' is listed twice")
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise InvalidInput(f"{where} ({name}): 'roles' must be a list of role names")
        seen.add(name)
        people.append(Person(name=name, roles=tuple(roles), full_name=user.get("full_name", ""),
                             email=user.get("email", ""), department=user.get("department", "")))
    return Organisation(people=people, source=str(path))
