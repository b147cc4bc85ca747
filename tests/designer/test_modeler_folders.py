"""Process-model folders in the SpiffWorkflow modeler's format (tests/fixtures/modeler, see its README) pass
`pmoflow validate`, `pmoflow test` and a deploy-and-run unchanged."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine.cli import main
from pmoflow.engine.parser import lint

MODELER = FIXTURES / "modeler"
FOLDERS = sorted(p for p in MODELER.iterdir() if (p / "process_model.json").is_file())


def test_there_are_folders_to_check():
    assert {p.name for p in FOLDERS} >= {"leave-request", "dynamic-enum", "script-pause"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_folder_validates_without_errors(folder):
    assert [str(f) for f in lint([folder]) if f.severity == "error"] == []


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_folder_passes_pmoflow_test_unchanged(folder, cli_handlers):
    result = CliRunner().invoke(main, ["test", str(folder)])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


def test_a_modeler_folder_deploys_and_runs_as_its_recorded_test_says(make_pmo):
    alice = make_pmo("alice")
    alice.init(TEST_ORG)
    [deployed] = alice.deploy([MODELER / "dynamic-enum"])
    assert deployed["name"] == "Dynamic enum"
    iid = alice.start(deployed["process_id"])["instance_id"]
    [pick] = [t for t in alice.tasks(all_tasks=True) if t["instance_id"] == iid]
    fruits = [{"value": "apples", "label": "Apples"}, {"value": "oranges", "label": "Oranges"},
              {"value": "bananas", "label": "Bananas"}]
    alice.complete(pick["id"], {"favoriteFruit": "oranges", "comment": None, "greeting": "Pick one", "fruits": fruits})
    [show] = [t for t in alice.tasks(all_tasks=True) if t["instance_id"] == iid]
    alice.complete(show["id"], {})
    shown = alice.show(iid)
    assert shown["status"] == "completed"
    assert shown["data"]["pick"] == {"favoriteFruit": "oranges", "comment": None}
    assert shown["data"]["chosen"] == "oranges"
