"""Hostile values through every command (issue #10, item 8): no traceback, no "unexpected failure", an exit code
of 0 to 4, and a command that fails changes nothing in the database, on SQLite and PostgreSQL.

The commands come from click (`main.commands`), so a new command is covered without touching this file. Each
parameter of each command gets values drawn, with a fixed seed, from the hostile values of its kind (text,
integers, JSON data, files, choices), in an otherwise valid invocation. A cheap fingerprint of the database (row
counts of every table, each chain's head, each instance's lock version) before and after every failing command
proves that it changed nothing.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from conftest import FIXTURES, TEST_ORG, fresh_database
from pmoflow.engine.cli import main
from pmoflow.engine.database import resolve_url
from pmoflow.engine.models import Base, Event, ProcessInstance

SEED = 20261201
PER_PARAM = 3  # hostile values tried on each parameter; every value of a kind is used across the parameters
ENV = {"PMOFLOW_DB": None, "PMOFLOW_USER": None, "PMOFLOW_LIBRARY": "conftest:TEST_LIBRARY"}
NO_DATABASE = {"init", "validate", "test", "demo"}  # commands that need no initialised database
GIVEN = {"start": {"data": '{"title": "abc", "amount": 2}'}}  # optional values that let the others be reached
DEEP = 100_000

TEXT = ["", " ", "-1", "0", "2147483648", "9" * 40, "1e999", "nan", "a\x00b", "\ud800", "\udcff", "x" * 5000,
        "é" * 300, "../../../etc/passwd", "9999-12-31", "0000-01", "9999-Q4", "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+01:00", "=", "data.x=", "=x", "{}", "[]", "null", "-", "--", "'; DROP TABLE users; --"]
TIMES = ["0000-01", "9999-Q4", "9999", "9999-12-31", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+01:00",
         "9999-12-31T23:59:59.999999", "2027-13", "2027-Q5", "2027-02-30", "-2027", "99999", "", "x" * 500]
TIME_PARAMS = {"since", "until", "period", "before", "now_text"}
INTEGERS = ["0", "-1", "2147483648", "9" * 40, "x", "", "1.5", "nan", "\x00"]
FLOATS = ["nan", "inf", "-inf", "-1", "1e309", "x", ""]
JSON = ["[]", "1", '"x"', "null", "{", "", '{"title": "a\\u0000b", "amount": 2}', '{"title": "\\ud800", "amount": 2}',
        '{"amount": 1e999}', '{"amount": NaN}', '{"amount": 123456789012345678901234567890}',
        '{"a":' * DEEP + "1" + "}" * DEEP, "[" * DEEP + "]" * DEEP, '{"typename": 1}', '{"x": {"typename": 1}}',
        '{"title": "' + "x" * 100_000 + '", "amount": 2}', '{"lane_owners": {"Lane": ["bob"]}}',
        '{"\\u0000": 1}', '{"title": "abc", "amount": -9223372036854775809}']


def hostile_files(folder: Path) -> list[str]:
    """Files and paths a user could point a command at by mistake, or on purpose."""
    folder.mkdir(exist_ok=True)
    files = {
        "latin1.json": '{"title": "caf\xe9", "amount": 2}'.encode("latin-1"),
        "binary.bpmn": bytes(range(256)) * 4,
        "empty.json": b"",
        "deep.json": ("[" * DEEP + "]" * DEEP).encode(),
        "nul.json": b'{"title": "a\\u0000b", "amount": 2}',
        "bom.json": b'\xef\xbb\xbf{"title": "abc", "amount": 2}',
        "junk.bpmn": b"<definitions><process id='x'>",
        "latin1.toml": '[[users]]\nname = "caf\xe9"\nroles = []\n'.encode("latin-1"),
        "list.json": b"[1, 2]",
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    (folder / "a-folder").mkdir(exist_ok=True)
    return [str(folder / name) for name in files] + [str(folder / "a-folder"), str(folder / "missing" / "x.json"),
                                                     "", "\x00", str(folder / "bad\udcff.json")]


class Fuzzer:
    """Builds invocations: a valid baseline for each command, and the same with one parameter made hostile."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counter = itertools.count()
        rng = random.Random(SEED)
        files = hostile_files(folder / "hostile")
        kinds = {"text": TEXT, "time": TIMES, "int": INTEGERS, "float": FLOATS, "json": JSON, "file": files + TEXT[:6]}
        self.cycles = {kind: itertools.cycle(rng.sample(values, len(values))) for kind, values in kinds.items()}

    def fresh(self, suffix: str) -> str:
        """A new file name in the scratch folder (archives and outputs are never overwritten)."""
        return str(self.folder / f"out-{next(self.counter)}{suffix}")

    def baseline(self, command: click.Command, param: click.Parameter) -> list[str] | None:
        """A valid value for a parameter a command needs (arguments and required options), else None."""
        if param.name in GIVEN.get(command.name, {}):
            return [GIVEN[command.name][param.name]]
        if isinstance(param, click.Option) and not param.required:
            return None
        name = param.name
        values = {
            "instance": "1", "task_id": "1", "process_id": "simple", "name": "ping", "user": "bob",
            "paths": str(FIXTURES / "simple.bpmn"), "from_version": "1", "to_version": "1",
            "before": "2000-01-01", "values": '{"title": "abcd"}', "org": str(TEST_ORG),
        }
        if name in values:
            return [values[name]]
        if isinstance(param.type, click.Path):
            return [self.fresh(".out")]
        return ["x"]

    def kind(self, param: click.Parameter) -> str:
        if param.name in ("data", "values"):
            return "json"
        if param.name in TIME_PARAMS:
            return "time"
        if isinstance(param.type, click.Path) or param.name == "paths":
            return "file"
        if isinstance(param.type, click.types.IntParamType):
            return "int"
        if isinstance(param.type, click.types.FloatParamType):
            return "float"
        return "text"

    def invocations(self, path: tuple[str, ...], command: click.Command) -> Iterator[list[str]]:
        params = [p for p in command.params if not getattr(p, "is_flag", False) and p.name != "help"]
        for target in params:
            for value in itertools.islice(self.cycles[self.kind(target)], PER_PARAM):
                yield [*path, *self.argv(command, params, target, value)]

    def argv(self, command: click.Command, params: list[click.Parameter], target: click.Parameter,
             value: str) -> list[str]:
        words: list[str] = []
        for param in params:
            given = [value] if param is target else self.baseline(command, param)
            if given is None:
                continue
            if isinstance(param, click.Argument):
                words += given
            else:
                words += [param.opts[0], given[0]]
        if command.name == "worker":
            words.append("--once")  # a worker without it polls until interrupted
        if command.name == "serve":
            words.append("--check")  # a server without it serves until interrupted
        return words


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def invoke(url: str, args: list[str], user: str | None = "alice"):
    argv = ["--db", url] + (["--user", user] if user is not None else [])
    return CliRunner(env=ENV).invoke(main, argv + args)


class Fingerprint:
    """Row counts of every table, each chain's head and each instance's lock version: what any change moves."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(resolve_url(url))

        self.counts = select(*(select(func.count()).select_from(table).scalar_subquery()
                               for table in Base.metadata.sorted_tables))

    def __call__(self) -> tuple:
        with self.engine.connect() as conn:
            counts = tuple(conn.execute(self.counts).one())
            heads = tuple(conn.execute(select(Event.stream, func.max(Event.seq)).group_by(Event.stream)
                                       .order_by(Event.stream)).all())
            locks = tuple(conn.execute(select(ProcessInstance.id, ProcessInstance.lock_version,
                                              ProcessInstance.status).order_by(ProcessInstance.id)).all())
        return counts, heads, locks


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_db(request, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """An initialised database with the test organisation, the fixture processes and one started instance."""
    folder = tmp_path_factory.mktemp("fuzz")
    with fresh_database(request.param, folder) as url:
        for args in (["init", "--org", str(TEST_ORG)], ["deploy", str(FIXTURES)],
                     ["start", "simple", "--data", '{"title": "abc", "amount": 2}']):
            result = invoke(url, args)
            assert result.exit_code == 0, result.output
        yield url, folder


def check(url: str, args: list[str], result, before: tuple, fingerprint: Fingerprint) -> str | None:
    """What is wrong with one invocation's outcome, or None."""
    output = result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"uncaught {type(result.exception).__name__}: {result.exception}"
    if "Traceback" in output or "unexpected failure" in output:
        return output[-300:]
    if not 0 <= result.exit_code <= 4:
        return f"exit code {result.exit_code}"
    if result.exit_code != 0 and fingerprint() != before:
        return f"exit {result.exit_code}, yet the database changed: {result.stderr[-200:]}"
    return None


def test_hostile_values_in_every_parameter_of_every_command(fuzz_db, monkeypatch):
    url, folder = fuzz_db
    monkeypatch.chdir(folder)  # hostile names are relative paths too: outputs land in the scratch folder
    fuzzer, fingerprint = Fuzzer(folder), Fingerprint(url)
    failures, runs = [], 0
    try:
        for path, command in commands():
            for args in fuzzer.invocations(path, command):
                before = fingerprint()
                result = invoke(url, args)
                runs += 1
                problem = check(url, args, result, before, fingerprint)
                if problem:
                    failures.append(f"pmoflow {' '.join(a if len(a) < 60 else a[:40] + '...' for a in map(repr, args))}"
                                    f": {problem}")
    finally:
        fingerprint.engine.dispose()
    print(f"{runs} invocations")
    assert runs > 200
    assert not failures, f"{len(failures)} of {runs} invocations failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("user", ["nobody", " alice", "a\x00b"])
def test_hostile_users_on_every_command(fuzz_db, user, monkeypatch):
    """A user the organisation does not have is refused the same way by every command that reads the database:
    exit 4, "unknown user", before anything else is looked at (a NUL or a surrogate on the command line is
    refused as usage, exit 2); commands that need no database are left alone."""
    url, folder = fuzz_db
    monkeypatch.chdir(folder)
    fuzzer, fingerprint = Fuzzer(folder), Fingerprint(url)
    failures = []
    try:
        for path, command in commands():
            params = [p for p in command.params if not getattr(p, "is_flag", False)]
            args = [*path, *fuzzer.argv(command, params, None, "")]
            before = fingerprint()
            result = invoke(url, args, user=user)
            problem = check(url, args, result, before, fingerprint)
            unstorable = "\x00" in user  # refused as usage by every command, before anything
            expected = 2 if unstorable else None if path[-1] in NO_DATABASE else 4
            if problem is None and expected is not None and result.exit_code != expected:
                problem = f"exit {result.exit_code}, not {expected}: {result.stderr[-200:]}"
            elif problem is None and expected == 4 and "unknown user" not in result.stderr:
                problem = f"no 'unknown user' in {result.stderr[-200:]!r}"
            if problem:
                failures.append(f"pmoflow --user {user!r:.20} {' '.join(args)}: {problem}")
    finally:
        fingerprint.engine.dispose()
    assert not failures, "\n".join(failures)
