"""The README's quality gate and internal audit walk-throughs are true: every pmoflow line of each tested block
runs on a fresh database and the instances end as the README says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmoflow.engine.cli import main

ROOT = Path(__file__).parents[2]


def shell_words(line: str) -> list[str]:
    """The words the shell hands to the command of `line` (quotes, comments and `$(...)` as bash has them),
    with the virtualenv's python first on PATH, as after `. .venv/bin/activate`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True, text=True, env=env,
                          check=True, cwd=ROOT)
    return done.stdout.split("\0")[:-1]


def walk_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(rf"<!-- {marker}: .*? -->\n```sh\n(.*?)```", text, re.S).group(1)


def walk_commands(marker: str) -> list[list[str]]:
    return [shell_words(line)[1:] for line in walk_block(marker).splitlines() if line.startswith("pmoflow ")]


def run_walk(marker: str, db_url: str) -> CliRunner:
    runner = CliRunner()
    commands = walk_commands(marker)
    assert 15 <= len(commands) <= 30
    for args in commands:
        result = runner.invoke(main, ["--db", db_url, *args])
        assert result.exit_code == 0, f"pmoflow {' '.join(args)}: {result.output}"
    return runner


def cli_json(runner: CliRunner, db_url: str, *args: str):
    result = runner.invoke(main, ["--db", db_url, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("marker, folder", [("walk-gate", "gate"), ("walk-audit", "audit")])
def test_every_example_file_is_used_by_its_walk(marker, folder):
    used = set(re.findall(rf"docs/examples/{folder}/[\w.-]+", walk_block(marker)))
    assert used == {str(p.relative_to(ROOT)) for p in (ROOT / "docs/examples" / folder).iterdir()}


def test_the_gate_walk_decides_go_and_a_kill_hands_over_to_closure(db_url, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = run_walk("walk-gate", db_url)

    gate = cli_json(runner, db_url, "show", "1")
    assert (gate["process_id"], gate["status"], gate["error"]) == ("quality_gate", "completed", None)
    data = gate["data"]
    assert data["outcome"] == "GO" and data["nextStage"]["stageOpened"] == "G3"
    assert [(d["recommendation"], d["decision"], d["overridden"]) for d in data["gateDecisions"]] == [
        ("GO", "GO", False)]
    history = cli_json(runner, db_url, "history", "1")
    assert {e["task"]: e["actor"] for e in history if e["type"] == "task_completed"} == {
        "gate_package": "pete.pm", "sqa_audit": "sam.sqa", "gate_decision": "alex.apd"}
    [rule] = [e["payload"] for e in history
              if e["type"] == "decision" and "GateRecommendation" in e["payload"]["decision"]]
    assert [r["id"] for r in rule["matched_rules"]] == ["Rule_go"]

    killed = cli_json(runner, db_url, "show", "2")
    assert (killed["status"], killed["data"]["outcome"]) == ("completed", "KILLED")
    [sent] = [e["payload"] for e in cli_json(runner, db_url, "history", "2") if e["type"] == "message_sent"]
    assert (sent["message"], sent["to_instance"]) == ("closure_requested", 3)
    closure = cli_json(runner, db_url, "show", "3")
    assert (closure["process_id"], closure["started_by"], closure["status"]) == (
        "project_closure", "alex.apd", "running")
    assert closure["data"]["closureRequest"]["rationale"].startswith("The business case is gone")
    assert [(t["id"], t["lane"]) for t in closure["tasks"] if t["state"] == "ready"] == [(7, "Project Manager")]


def test_the_audit_walk_refuses_a_dependent_team_and_closes_after_its_capa(db_url, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = run_walk("walk-audit", db_url)

    audit = cli_json(runner, db_url, "show", "1")
    assert (audit["process_id"], audit["status"], audit["error"], audit["next_due"]) == (
        "internal_audit", "completed", None, None)
    data = audit["data"]
    assert data["auditOutcome"] == "Closed"
    assert [(r["grade"], r["status"], r["effective"]) for r in data["capaResults"]] == [("Minor", "Closed", True)]
    assert data["closure"]["recordsLocked"] is True and data["closure"]["capaClosed"] == 1
    assert [t for t in audit["tasks"] if t["state"] == "ready"] == []

    history = cli_json(runner, db_url, "history", "1")
    checks = [e["payload"]["result"] for e in history if e["task"] == "check_independence"]
    assert [c["independent"] for c in checks] == [False, True]
    assert "sue.sponsor belongs to the audited department (Operations)" in checks[0]["message"]
    [timer] = [e for e in history if e["type"] == "timer_fired"]
    assert (timer["task"], timer["actor"]) == ("wait_effectiveness", "worker")
    done = [(e["task"], e["actor"]) for e in history if e["type"] == "task_completed"]
    assert done[-3:] == [("verify_implementation", "ian.auditor"), ("check_effectiveness", "ian.auditor"),
                         ("close_capa", "ian.auditor")]
    assert [e["type"] for e in history][-1] == "instance_completed"
    instances = cli_json(runner, db_url, "instances")
    assert [i["process_id"] for i in instances] == ["internal_audit"]  # the worker started no yearly programme
