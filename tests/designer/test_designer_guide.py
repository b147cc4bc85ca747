"""docs/designing-processes.md is true: every pmoflow line of its walk-through runs, and ends as it says."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from pmoflow.engine.cli import main

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "designing-processes.md"


def guide_commands(marker: str = "guide") -> list[list[str]]:
    block = re.search(rf"<!-- {marker}: .*? -->\n```sh\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("pmoflow ")]


def test_the_designer_guide_walk_runs_from_drawing_to_migrated_instance(db_url, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    commands = guide_commands()
    assert len(commands) >= 15
    for args in commands:
        if args[:1] == ["diagram"]:
            args = [*args[:-1], str(tmp_path / args[-1])]  # keep the repository clean
        result = runner.invoke(main, ["--db", db_url, *args])
        assert result.exit_code == 0, f"pmoflow {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    shown = json.loads(runner.invoke(main, ["--db", db_url, "show", "1", "--json"]).stdout)
    assert shown["version"] == 2
    open_tasks = [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"]
    assert open_tasks == ["publish_document"]
    history = json.loads(runner.invoke(main, ["--db", db_url, "history", "1", "--json"]).stdout)
    migrated = [e for e in history if e["type"] == "migrated"]
    assert len(migrated) == 1
    assert (tmp_path / "document_review.svg").read_text().startswith("<svg")


def test_the_guide_example_diagram_is_the_rendered_model():
    from pmoflow.engine.diagram import render_svg

    model = (ROOT / "docs/examples/designer/v2/document_review.bpmn").read_text()
    assert (ROOT / "docs/examples/designer/document_review.svg").read_text() == render_svg(model, "document_review")


def test_the_guide_messages_walk_sends_asks_and_answers(db_url, monkeypatch):
    """Section 8: the request starts the answering process (owned by the asker), the answer comes back to the
    asking instance by its ticket, and a message for a ticket nobody waits for is refused."""
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for args in guide_commands("guide-messages"):
        result = runner.invoke(main, ["--db", db_url, *args])
        refused = "ticket=T-404" in args
        assert result.exit_code == (1 if refused else 0), f"pmoflow {' '.join(args)}:\n{result.stdout}{result.stderr}"
        if refused:
            assert "matches no instance waiting for it" in result.stderr
    asker = json.loads(runner.invoke(main, ["--db", db_url, "show", "1", "--json"]).stdout)
    assert asker["data"]["answer"] == {"ticket": "T-1", "verdict": "Add the load tests."}
    assert [t["bpmn_id"] for t in asker["tasks"] if t["state"] == "ready"] == ["read_answer"]
    answerer = json.loads(runner.invoke(main, ["--db", db_url, "show", "2", "--json"]).stdout)
    assert (answerer["process_id"], answerer["started_by"], answerer["status"]) == (
        "review_answer", "pete.pm", "completed")
