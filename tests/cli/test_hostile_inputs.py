"""Inputs users will type that once ended in "unexpected failure" or a PostgreSQL `DataError` (issue #10, items 7
and 8): each is refused with one plain line naming the field, the documented exit code, and nothing changed; a
few are valid and answered. On SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_fuzz import ENV, Fingerprint

from conftest import FIXTURES, HERE, TEST_ORG
from pmoflow.engine import cli
from pmoflow.engine.cli import main

DEEP = "[" * 100_000 + "]" * 100_000


def run(url: str, *args: str, user: str | None = "alice", input=None):
    argv = ["--db", url] + (["--user", user] if user is not None else [])
    return CliRunner(env=ENV).invoke(main, argv + list(args), input=input)


@pytest.fixture
def db(db_url, tmp_path, monkeypatch, seeds) -> str:
    """The test organisation, the fixture processes, instance 1 of `simple` waiting at task 1 (review): a copy
    of a database the CLI set up so once per process (conftest's `seeds`)."""
    monkeypatch.chdir(tmp_path)

    def build(url: str) -> None:
        for args in (["init", "--org", str(TEST_ORG)], ["deploy", str(FIXTURES)],
                     ["start", "simple", "--data", '{"title": "abc", "amount": 2}']):
            assert run(url, *args).exit_code == 0

    seeds.copy_into(db_url, "test_hostile_inputs.db", build)
    return db_url


def refused(db: str, code: int, fragment: str, *args: str, user: str | None = "alice", input=None):
    fingerprint = Fingerprint(db)
    before = fingerprint()
    result = run(db, *args, user=user, input=input)
    output = result.stdout + result.stderr
    try:
        assert result.exit_code == code, output
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in output and "unexpected failure" not in output, output
        assert fragment in result.stderr, result.stderr
        assert fingerprint() == before, "the database changed"
    finally:
        fingerprint.engine.dispose()
    return result


def test_times_outside_the_calendar_are_plain_errors_or_answered(db):
    refused(db, 1, "--period: 0000-01: years run from 1 to 9999", "audit", "events", "--period", "0000-01")
    refused(db, 1, "--until: 0001-01-01T00:00:00+01:00 is outside the calendar", "audit", "events", "--until",
            "0001-01-01T00:00:00+01:00")
    refused(db, 1, "later than the last time accepted", "audit", "events", "--until",
            "9999-12-31T23:59:59.999999+00:00")
    refused(db, 1, "--now: 9999-12-31T23:59:59+00:00 is outside the years the worker evaluates timers in",
            "worker", "--once", "--now", "9999-12-31T23:59:59+00:00")
    # the last periods of the calendar are valid: everything up to its end
    for args in (["--period", "9999-Q4"], ["--until", "9999-12-31"], ["--period", "9999"]):
        result = run(db, "audit", "events", "--format", "json", *args)
        assert result.exit_code == 0, result.output
    assert len(json.loads(run(db, "audit", "events", "--json", "--until", "9999-12-31").stdout)) > 0


def test_data_postgresql_could_not_store_is_refused_naming_the_field(db):
    refused(db, 1, "title: the text contains a NUL character", "start", "simple", "--data",
            '{"title": "a\\u0000bc", "amount": 2}')
    refused(db, 1, "title: the text contains '\\ud800', which is not valid Unicode text", "start", "simple", "--data",
            '{"title": "ab\\ud800", "amount": 2}')
    refused(db, 1, "amount: nan is not a finite number", "start", "simple", "--data", '{"title": "abc", "amount": NaN}')
    refused(db, 1, "amount: 18446744073709551616 is beyond the 64-bit integer range", "start", "simple", "--data",
            '{"title": "abc", "amount": 18446744073709551616}')
    refused(db, 1, "the data is nested too deeply", "start", "simple", "--data", DEEP)
    refused(db, 1, "comment: the text contains a NUL character", "complete", "1", "--data",
            '{"approved": true, "comment": "\\u0000"}')
    refused(db, 1, "the business key is 201 characters long; at most 200 fit", "start", "simple", "--data",
            '{"title": "abc", "amount": 2}', "--business-key", "k" * 201)
    refused(db, 1, "--correlate.id: nan is not a finite number", "message", "ping", "--correlate", "id=NaN")


def test_arguments_no_database_can_take_are_usage_errors(db):
    refused(db, 2, "--business-key contains a NUL character", "start", "simple", "--business-key", "a\x00b")
    refused(db, 2, "--reason contains '\\udcff'", "suspend", "1", "--reason", "caf\udcff")
    refused(db, 2, "--user contains a NUL character", "show", "1", user="al\x00ice")
    refused(db, 2, "0 is not in the range 1<=x<=2147483647", "audit", "events", "--limit", "0")
    refused(db, 2, "2147483648 is not in the range", "diff", "simple", "1", "2147483648")


def test_files_that_are_not_utf8_name_the_file_and_line(db, tmp_path):
    data = tmp_path / "latin1.json"
    data.write_bytes('{"title": "caf\xe9", "amount": 2}'.encode("latin-1"))
    refused(db, 1, f"{data}:1: not UTF-8 text (byte 0xe9)", "start", "simple", "--data-file", str(data))
    org = tmp_path / "org.toml"
    org.write_bytes('[[users]]\nname = "caf\xe9"\nroles = []\n'.encode("latin-1"))
    refused(db, 1, f"{org}:2:12: not UTF-8 text (byte 0xe9)", "init", "--org", str(org))
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"title": "abc", "amount": 2}')
    assert run(db, "start", "simple", "--data-file", str(bom)).exit_code == 0


def test_a_process_without_diagram_data_is_a_plain_error(db, tmp_path):
    refused(db, 1, "process 'simple' has no diagram (BPMNDI) to draw", "diagram", "simple", "--out",
            str(tmp_path / "simple.svg"))
    assert not (tmp_path / "simple.svg").exists()


@pytest.mark.parametrize("answers", ["", "yes\n"], ids=["ctrl-d-at-the-first-field", "ctrl-d-at-the-second"])
def test_an_interrupted_prompt_submits_nothing(db, monkeypatch, answers):
    """Ctrl-D (end of input) and Ctrl-C both reach click.prompt as Abort: the task stays open, nothing changes."""
    monkeypatch.setattr(cli, "interactive", lambda: True)
    result = refused(db, 1, "task 1 was not completed: the prompt was interrupted and nothing was submitted",
                     "complete", "1", input=answers)
    assert "Aborted!" not in result.output
    [task] = json.loads(run(db, "tasks", "--all", "--json").stdout)
    assert task["id"] == 1 and task["state"] == "ready"


class CtrlC(io.RawIOBase):
    """A terminal whose user presses Ctrl-C at the first prompt: reading raises KeyboardInterrupt."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if len(buffer):
            raise KeyboardInterrupt
        return 0


def test_ctrl_c_at_a_prompt_submits_nothing(db, monkeypatch):
    monkeypatch.setattr(cli, "interactive", lambda: True)
    refused(db, 1, "the prompt was interrupted and nothing was submitted", "complete", "1", input=CtrlC())


def test_every_command_run_as_an_unknown_user_says_so_with_exit_4(db):
    """Before anything else: the same refusal whether the task exists or not, the data is valid or not."""
    for args in (["claim", "1"], ["claim", "999"], ["complete", "999", "--data", "{"], ["show", "1"],
                 ["data", "1", "--set", "{}"], ["tasks"], ["instances"], ["whoami"]):
        refused(db, 4, "unknown user 'nobody': not in the organisation file", *args, user="nobody")
    refused(db, 4, "no user given", "whoami", user=None)
    me = json.loads(run(db, "whoami", "--json", user="bob").stdout)
    assert me["name"] == "bob" and "Project Manager" in me["roles"]


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`pmoflow users | true`: the reader is gone before pmoflow writes; no traceback, no message."""
    env = {**os.environ, "PMOFLOW_DB": f"sqlite:///{tmp_path / 'p.db'}", "PMOFLOW_USER": "alice",
           "PMOFLOW_LIBRARY": "conftest:TEST_LIBRARY",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    command = [str(Path(sys.executable).parent / "pmoflow")]
    assert subprocess.run([*command, "init", "--org", str(TEST_ORG)], env=env, capture_output=True).returncode == 0
    child = subprocess.Popen([*command, "users"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # nobody reads: the first write meets a closed pipe
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1
    assert stderr == ""
