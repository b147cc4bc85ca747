"""The README's auditor section is true: each of its pmoflow lines runs (on a gate process named as in the README,
with twelve instances, one overridden and one late), and the files it names are written and verify."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import html as lxml_html

from conftest import FIXTURES, TEST_LIBRARY, TEST_ORG
from pmoflow.engine import clock, runtime
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.cli import main

ROOT = Path(__file__).parents[2]


def auditor_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## For auditors"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("pmoflow ")]


@pytest.fixture
def gate_db(db_url, tmp_path, monkeypatch, cli_handlers):
    """The fixture gate process deployed as `quality_gate`; twelve instances, the first overridden and late."""
    folder = tmp_path / "quality_gate"
    shutil.copytree(FIXTURES / "audit_trail", folder)
    bpmn = folder / "audit_gate.bpmn"
    bpmn.write_text(bpmn.read_text().replace('"audit_gate"', '"quality_gate"'))
    admin = Pmoflow(db_url, user="alice", libraries=[TEST_LIBRARY])
    admin.init(TEST_ORG)
    admin.deploy([folder])
    bob = Pmoflow(db_url, user="bob", libraries=[TEST_LIBRARY])
    carol = Pmoflow(db_url, user="carol", libraries=[TEST_LIBRARY])
    for n in range(12):
        bob.start("quality_gate", {"project": f"Project {n}", "score": 6})
    [first] = [t for t in bob.tasks(all_tasks=True) if t["instance_id"] == 1]
    with clock.frozen(datetime.fromisoformat(first["due"]) + timedelta(days=1)):
        carol.complete(first["id"], {"gateDecision": "Go"})  # Hold recommended: an override, and late
    for app in (admin, bob, carol):
        app.close()
    monkeypatch.chdir(tmp_path)
    return db_url


def test_the_auditor_commands_of_the_readme_run(gate_db, tmp_path):
    commands = auditor_commands()
    assert len(commands) >= 8
    runner = CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None})
    for args in commands:
        args = [a.replace("2026-01-01", "2999-01-01") for a in args]  # archive what finished up to now
        runtime._CACHE.clear()
        result = runner.invoke(main, ["--db", gate_db, "--user", "alice", *args])
        assert result.exit_code == 0, f"pmoflow {' '.join(args)}: {result.stdout}{result.stderr}"
    page = (tmp_path / "gate-history-12.html").read_text(encoding="utf-8")
    assert lxml_html.document_fromstring(page).xpath("//section[@id='diagram']//*[local-name()='svg']")
    assert (tmp_path / "pmo-2025.pmoarchive").is_file()


def test_the_readme_queries_find_the_override_and_the_late_task(gate_db):
    runner = CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None})

    def events(*args) -> list[dict]:
        result = runner.invoke(main, ["--db", gate_db, "audit", "events", *args, "--json"])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    period = ["--since", "2000-01-01", "--until", "2999-12-31"]
    [override] = events(*period, "--override", "data.gateDecision=outputs.recommendation")
    [late] = events(*period, "--late")
    assert override["instance_id"] == late["instance_id"] == 1 and late["actor"] == "carol"
