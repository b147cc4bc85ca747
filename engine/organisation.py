"""The organisation file: who works here and which roles each person holds.

The file is checked in full before anything is stored, against the columns it fills, so that SQLite and
PostgreSQL take the same files; every problem is listed at once as FILE:LINE: ... (tomllib reports lines only
for syntax errors, so `_Lines` finds the line of each `[[users]]` table and key in the text itself).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.limits import shown, string_length
from pmoflow.engine.models import User, UserRole

USER_KEYS = {"name", "full_name", "email", "department", "roles"}
TOP_KEYS = {"users"}
NAME = re.compile(r"[^\W_][\w.@+-]*")  # a login: letters, digits and . _ - @ +, from a letter or a digit
NAME_RULE = "letters, digits and . _ - @ +, starting with a letter or a digit"
EMAIL = re.compile(r"[^@\s\"'<>(),;:\\]+@[^@\s\"'<>(),;:\\.]+(\.[^@\s\"'<>(),;:\\.]+)+")
LIMITS = {"name": string_length(User.name), "full_name": string_length(User.full_name),
          "email": string_length(User.email), "department": string_length(User.department),
          "role": string_length(UserRole.role)}


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


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a user's login, or None: the rule the organisation file and `--user` share."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > LIMITS["name"]:
        return f"is {len(name)} characters long; at most {LIMITS['name']}"
    if not NAME.fullmatch(name):
        return f"may hold only {NAME_RULE}"
    return None


def load(path: str | Path) -> Organisation:
    """Read and check an organisation TOML file; InvalidInput lists every problem with its line."""
    path = Path(path)
    text = _read(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
        message = str(exc)[:where.start()].strip() if where else str(exc)
        line = f":{where.group(1)}:{where.group(2)}" if where else ""
        raise InvalidInput(f"{path}{line}: not valid TOML: {message}") from None
    lines = _Lines(text)
    problems: list[str] = []
    for key in sorted(set(data) - TOP_KEYS):
        problems.append(f"{path}:{lines.top.get(key, 1)}: unknown key {key!r}; an organisation file holds "
                        "[[users]] tables only")
    users = data.get("users")
    if not isinstance(users, list) or not users:
        problems.append(f"{path}:{lines.top.get('users', 1)}: expected one or more [[users]] tables")
        users = []
    people: list[Person] = []
    first_seen: dict[str, str] = {}
    for i, user in enumerate(users, 1):
        person = _person(user, i, path, lines, problems)
        if person is None:
            continue
        if person.name in first_seen:
            problems.append(f"{lines.at(path, i, 'name')}: user {person.name!r} is listed twice (first at "
                            f"{first_seen[person.name]})")
            continue
        first_seen[person.name] = f"line {lines.line(i, 'name')}"
        people.append(person)
    if problems:
        raise InvalidInput(f"{path}: the organisation file has {len(problems)} problem(s); nothing was loaded",
                           problems)
    return Organisation(people=people, source=str(path))


def _read(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read organisation file {path}: {exc.strerror}") from None
    except ValueError as exc:  # a path holding a NUL character
        raise InvalidInput(f"cannot read organisation file {str(path)!r}: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidInput(f"{path}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file "
                           "as UTF-8") from None


def _person(user: Any, i: int, path: Path, lines: _Lines, problems: list[str]) -> Person | None:
    """One [[users]] table as a Person, or None with its problems added."""
    if not isinstance(user, dict):
        problems.append(f"{lines.at(path, i)}: user #{i} must be a table (name = ..., roles = [...]), not "
                        f"{type(user).__name__}")
        return None
    before = len(problems)
    name = user.get("name")
    problem = name_problem(name)
    who = f"user {name!r}" if problem is None else f"user #{i}"
    if problem is not None:
        shown = "" if name is None else f" ({_shown(name)})"
        problems.append(f"{lines.at(path, i, 'name')}: {who}: 'name'{shown} {problem}")
    for key in sorted(set(user) - USER_KEYS):
        problems.append(f"{lines.at(path, i, key)}: {who}: unknown key {key!r}; a user has "
                        f"{', '.join(sorted(USER_KEYS))}")
    for key in ("full_name", "department", "email"):
        problem = _text_problem(user.get(key, ""), LIMITS[key])
        if problem is None and key == "email" and user.get(key) and not EMAIL.fullmatch(user[key]):
            problem = "is not an e-mail address like name@example.org"
        if problem is not None:
            problems.append(f"{lines.at(path, i, key)}: {who}: {key!r} {problem}")
    roles = user.get("roles", [])
    if not isinstance(roles, list):
        problems.append(f"{lines.at(path, i, 'roles')}: {who}: 'roles' must be a list of role names, like "
                        "[\"SQA\"]")
        roles = []
    for role in roles:
        problem = _text_problem(role, LIMITS["role"])
        if problem is None and (not role.strip() or role != role.strip()):
            problem = "must be a role name without leading or trailing spaces"
        if problem is not None:
            problems.append(f"{lines.at(path, i, 'roles')}: {who}: the role {_shown(role)} {problem}")
    if len(problems) > before:
        return None
    assert isinstance(name, str), "name_problem refuses anything else"
    return Person(name=name, roles=tuple(roles), full_name=user.get("full_name", ""),
                  email=user.get("email", ""), department=user.get("department", ""))


def _shown(value: Any) -> str:
    return shown(value) if isinstance(value, str) else repr(value)


def _text_problem(value: Any, limit: int) -> str | None:
    """Why a value is not one line of text of at most `limit` characters, or None."""
    if not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit}"
    if not value.isprintable():
        return "holds a control character (a tab, a line break ...)"
    return None


class _Lines:
    """Where each top-level key, each `[[users]]` table and each of its keys is in the file's text."""

    HEADER = re.compile(r"""\s*\[\[\s*(?:users|"users"|'users')\s*\]\]\s*(#.*)?$""")
    TABLE = re.compile(r"""\s*\[\[?[^\[\]]+\]\]?\s*(#.*)?$""")
    KEY = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[=.]""")

    def __init__(self, text: str) -> None:
        self.top: dict[str, int] = {}
        self.tables: list[dict[str, int]] = []
        current: dict[str, int] | None = self.top
        for number, line in enumerate(text.splitlines(), 1):
            if self.HEADER.match(line):
                current = {"": number}
                self.tables.append(current)
            elif self.TABLE.match(line):
                current = None  # some other table: its keys are not a user's
            elif current is not None and (m := self.KEY.match(line)):
                current.setdefault(m.group(1).strip("\"'"), number)

    def line(self, i: int, key: str = "") -> int:
        """The line of user #i's `key` (or of its table), else of the `users` key (an inline array), else 1."""
        table = self.tables[i - 1] if i <= len(self.tables) else {}
        return table.get(key) or table.get("") or self.top.get("users", 1)

    def at(self, path: Path, i: int, key: str = "") -> str:
        return f"{path}:{self.line(i, key)}"
