"""Files SpiffWorkflow takes that pmoflow used to refuse, and code SpiffWorkflow takes that pmoflow's sandbox will
refuse: DMN 1.1, 1.2 and 1.3 tables (SpiffWorkflow's own DMN 1.2 schema does not compile: its DMNDI import is
answered with a stub, everything else is checked); `*.bpmn20.xml` files; a half-drawn sequence flow (a warning);
`time.sleep` in a script, within the script time limit; and `validate` naming every call the sandbox refuses,
with its line. Fixtures: tests/fixtures/fidelity."""

from __future__ import annotations

import shutil

import pytest

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine import parser
from pmoflow.engine.scenario import run_tests
from pmoflow.engine.scripting import SandboxEnvironment, ScriptTimeout

FIDELITY = FIXTURES / "fidelity"
DMN_FILES = sorted(FIDELITY.glob("risk_dmn1*.dmn"))


@pytest.fixture
def app(initialised):
    return initialised("alice", TEST_ORG, FIDELITY)


@pytest.mark.parametrize("dmn", DMN_FILES, ids=lambda p: p.stem)
def test_each_dmn_version_is_checked_against_its_schema(dmn, tmp_path):
    assert [f for f in parser.lint([dmn]) if f.severity == "error"] == []
    broken = tmp_path / dmn.name  # a rule without an output entry: the schema says so
    broken.write_text(dmn.read_text().replace('<outputEntry id="risk_o2_', '<inputEntry id="risk_x2_')
                      .replace('"low"</text></outputEntry>', '"low"</text></inputEntry>'))
    errors = [f for f in parser.lint([broken]) if f.severity == "error"]
    assert errors and all("DMN schema" in f.message for f in errors)
    assert errors[0].element_id == f"risk_low_{dmn.stem[-2:]}"


def test_dmn_tables_of_every_version_decide_in_a_running_instance(app):
    started = app.start("dmn_versions", {"amount": 5000})
    data = app.show(started["instance_id"])["data"]
    assert (started["status"], data["risk_11"], data["risk_12"], data["risk_13"]) == ("completed", "high", "high",
                                                                                      "high")


def test_a_bpmn20_xml_file_is_bpmn_for_validate_deploy_and_test(app):
    assert [p["files"] for p in app.processes() if p["process_id"] == "dmn_versions"] == [
        ["dmn_versions.bpmn20.xml", "risk_dmn11.dmn", "risk_dmn12.dmn", "risk_dmn13.dmn"]]
    results = run_tests([FIDELITY / "dmn_versions.bpmn20.xml"], handlers={})
    assert [(r.case, r.passed) for r in results] == [("small_amount", True), ("large_amount", True)]


def test_a_half_drawn_sequence_flow_is_a_warning_and_the_process_runs(app):
    findings = parser.lint([FIDELITY / "stray_flow.bpmn"])
    assert [(f.line, f.severity, f.element_id, f.message) for f in findings] == [
        (10, "warning", "sf_dangling", "the sequence flow has no target: it is ignored"),
        (11, "warning", "sf_orphan", "the sequence flow has no source: it is ignored")]
    started = app.start("stray_flow")
    assert started["status"] == "completed" and app.show(started["instance_id"])["data"] == {"worked": True}


def test_a_script_may_sleep_within_its_time_limit(app):
    started = app.start("pause")
    assert started["status"] == "completed" and app.show(started["instance_id"])["data"]["slept"] is True


def test_a_script_sleeping_past_its_time_limit_is_stopped():
    with pytest.raises(ScriptTimeout):
        SandboxEnvironment(time_limit=0.3).execute("time.sleep(30)", {})


def test_validate_names_every_call_the_sandbox_refuses_with_its_line():
    bpmn = FIDELITY / "lint" / "refused_names.bpmn"
    findings = [(f.line, f.element_id, f.message) for f in parser.lint([bpmn]) if f.severity == "error"]
    assert findings == [
        (7, "rn_script", "script: vars() is not available in scripts and conditions (the sandbox refuses it)"),
        (8, "rn_script", "script: globals() is not available in scripts and conditions (the sandbox refuses it)"),
        (9, "rn_script", "script: getattr() is not available in scripts and conditions (the sandbox refuses it)"),
        (10, "rn_script", "script: setattr() of '_hidden': names starting with '_' are refused by the sandbox"),
        (12, "rn_task", "pre-script: locals() is not available in scripts and conditions (the sandbox refuses it)"),
        (17, "rn_f4", 'condition: not allowed: Line 1: "_private" is an invalid variable name because it starts '
                      'with "_"'),
        (17, "rn_f4", "condition: vars() is not available in scripts and conditions (the sandbox refuses it)"),
    ]


def test_a_name_the_script_defines_itself_is_not_a_refused_call(tmp_path):
    bpmn = tmp_path / "own.bpmn"
    shutil.copy(FIDELITY / "lint" / "refused_names.bpmn", bpmn)
    text = bpmn.read_text()
    start, end = text.index("<bpmn:script>") + len("<bpmn:script>"), text.index("</bpmn:script>")
    bpmn.write_text(text[:start] + "def locals():\n    return {}\ntotal = len(locals())" + text[end:])
    assert not [f for f in parser.lint([bpmn]) if f.element_id == "rn_script"]
