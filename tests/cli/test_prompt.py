"""`complete` without --data asks for each form field when a person is at the terminal."""

from __future__ import annotations

import json

from click.testing import CliRunner

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine import cli


def test_complete_prompts_field_by_field_and_re_asks_on_bad_answers(db_url, monkeypatch, cli_handlers):
    monkeypatch.setattr(cli, "interactive", lambda: True)
    runner = CliRunner()

    def run(*args, user="alice", input=None):
        return runner.invoke(cli.main, ["--db", db_url, "--user", user, *args], input=input)

    assert run("init", "--org", str(TEST_ORG)).exit_code == 0
    assert run("deploy", str(FIXTURES / "simple.bpmn")).exit_code == 0
    assert run("start", "simple", "--data", '{"title": "abc", "amount": 2}').exit_code == 0
    # approved (boolean): "maybe" is refused, then "yes"; comment (optional): left empty
    result = run("complete", "1", input="maybe\nyes\n\n")
    assert result.exit_code == 0, result.output
    assert "answer yes or no" in result.output
    history = json.loads(run("history", "1", "--json").stdout)
    completed = [e for e in history if e["type"] == "task_completed"]
    assert completed[0]["payload"]["data"] == {"approved": True}


def test_complete_without_data_outside_a_terminal_lists_the_missing_fields(db_url, cli_handlers):
    runner = CliRunner()
    base = ["--db", db_url, "--user", "alice"]
    runner.invoke(cli.main, [*base, "init", "--org", str(TEST_ORG)])
    runner.invoke(cli.main, [*base, "deploy", str(FIXTURES / "simple.bpmn")])
    runner.invoke(cli.main, [*base, "start", "simple", "--data", '{"title": "abc", "amount": 2}'])
    result = runner.invoke(cli.main, [*base, "complete", "1"])
    assert result.exit_code == 1
    assert "approved: 'approved' is a required property" in result.stderr
