"""Process libraries are plugins: the engine runs one that is not the PMO's, finds the PMO's through its entry
point like any other, and never imports the PMO library itself."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import FIXTURES
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.library import ENTRY_POINT_GROUP, Library, check_distinct, default_organisation, installed

ENGINE = Path(__file__).parents[2] / "engine"
THIRD_PARTY = FIXTURES / "third_party"

ACME_RUN = """
import json, sys
from pmoflow.engine.api import Pmoflow

db = sys.argv[1]
setup = Pmoflow(db, user="ann.clerk").init()
started = Pmoflow(db, user="ann.clerk").start("parcel", {"reference": "p-17"})
courier = Pmoflow(db, user="max.courier")
[task] = courier.tasks()
data = courier.task(task["id"])["data"]
done = courier.complete(task["id"], {})
print(json.dumps({"deployed": [p["process_id"] for p in setup["processes"]], "users": setup["users"],
                  "task": task["name"], "stamp": data["stamp"], "status": done["status"],
                  "pmo_imported": any(m.startswith("pmoflow.workflows") for m in sys.modules)}))
"""


def test_the_engine_runs_a_library_that_is_not_the_pmos(tmp_path, db_url):
    """In a fresh process told of the ACME library only, init loads ACME's people and deploys its process, whose
    service task calls ACME's handler; the PMO library is never imported."""
    env = {**os.environ, "PMOFLOW_LIBRARY": "acme_library:library", "PYTHONPATH": str(THIRD_PARTY)}
    done = subprocess.run([sys.executable, "-c", ACME_RUN, db_url], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"deployed": ["parcel"], "users": 2, "task": "Deliver the parcel",
                      "stamp": {"stamped": "ACME/P-17"}, "status": "completed", "pmo_imported": False}


def test_the_pmo_library_is_found_through_its_entry_point(monkeypatch):
    monkeypatch.delenv("PMOFLOW_LIBRARY", raising=False)
    assert "pmo" in {point.name for point in entry_points(group=ENTRY_POINT_GROUP)}
    [pmo] = [library for library in installed() if library.name == "pmo"]
    assert "gate.load_checklist" in pmo.handlers
    assert any(path.name == "project_initiation.bpmn" for folder in pmo.process_dirs for path in folder.iterdir())
    assert default_organisation([pmo]).name == "demo-organisation.toml"
    assert "PMO Administrator" in pmo.roles()


def test_no_engine_module_imports_the_pmo_library():
    """The engine depends on no process library: no `import pmoflow.workflows` anywhere under engine/."""
    offenders = []
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ENGINE)}: {n}" for n in names if n.startswith("pmoflow.workflows")]
    assert offenders == []


@pytest.mark.parametrize("override, message", [
    ("nonsense", "is not module:attribute"),
    ("no_such_module_here:library", "cannot import no_such_module_here"),
    ("conftest:no_such_name", "has no attribute 'no_such_name'"),
    ("conftest:FIXTURES", "is a PosixPath, not a pmoflow Library"),
])
def test_a_misnamed_library_is_a_plain_error(monkeypatch, override, message):
    monkeypatch.setenv("PMOFLOW_LIBRARY", override)
    with pytest.raises(InvalidInput, match=message):
        installed()


def test_two_libraries_may_not_claim_one_operator():
    one, two = Library("one", {"x.run": print}), Library("two", {"x.run": len})
    with pytest.raises(InvalidInput, match="'x.run' is registered by both the 'one' and the 'two'"):
        check_distinct([one, two])


def test_init_without_an_organisation_file_says_which_to_give():
    with pytest.raises(InvalidInput, match="give the organisation file with --org FILE: no installed"):
        default_organisation([Library("bare")])
