"""The README's walk-through is true: every pmoflow line of its tested block runs and ends as it says."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from pmoflow.engine.cli import main

ROOT = Path(__file__).parents[2]


def walk_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walk: .*? -->\n```sh\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("pmoflow ")]


def test_the_readme_walk_runs_and_authorises_the_project(db_url, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    commands = walk_commands()
    assert len(commands) >= 10
    for args in commands:
        result = runner.invoke(main, ["--db", db_url, *args])
        assert result.exit_code == 0, f"pmoflow {' '.join(args)}: {result.output}"
    shown = runner.invoke(main, ["--db", db_url, "show", "1", "--json"])
    data = json.loads(shown.stdout)
    assert data["status"] == "completed"
    assert data["data"]["outcome"] == "Authorised-with-conditions"
