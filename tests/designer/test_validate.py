"""`pmoflow validate` as a designer's linter, and SpiffWorkflow modeler process-model folders.

One small broken file per kind of finding (tests/fixtures/validate/), each test asserting the file, line, column,
severity and element reported; the bundled library validating without errors; the `--json` shape; files mangled
every way a modeler or a disk can mangle them giving findings, never a traceback; a process-model folder
(tests/fixtures/modeler/leave-request: process_model.json, BPMN, DMN and forms side by side) that validates,
deploys on SQLite and PostgreSQL, starts and runs with the script helpers of the modeler's engine.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from conftest import FIXTURES, TEST_ORG, all_handlers, pmo_library
from pmoflow.engine import parser, scenario
from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidProcess
from pmoflow.engine.parser import Finding
from pmoflow.engine.scripting import SCRIPT_HELPERS, SandboxEnvironment

VALIDATE = FIXTURES / "validate"
MODEL = FIXTURES / "modeler" / "leave-request"
MODEL_PROCESS = "Process_leave_request_k3v9x1"
HANDLERS = {"test.echo", "test.fail"}
FINDING = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning): "
                     r"(?P<element>\S+): (?P<message>.+)$")
FINDING_KEYS = {"file", "line", "column", "severity", "element_id", "message", "hint"}
PMO = pmo_library()
[PMO_BPMN], [PMO_FORMS] = PMO.process_dirs, PMO.form_dirs
INITIATION = PMO_BPMN / "project_initiation.bpmn"


def lint(*paths: Path | str, handlers: set[str] | None = HANDLERS, roles=None) -> list[Finding]:
    """The validator's findings, lanes checked against the PMO organisation's roles unless `roles` says others."""
    roles = PMO.roles() if roles is None else roles
    return parser.lint([VALIDATE / p if isinstance(p, str) else p for p in paths], handlers=handlers, roles=roles,
                       form_dirs=[PMO_FORMS])


def only(findings: list[Finding], fragment: str) -> Finding:
    matching = [f for f in findings if f.message.startswith(fragment)] or [f for f in findings if fragment in f.message]
    assert len(matching) == 1, f"{fragment!r} in {[str(f) for f in findings]}"
    return matching[0]


def assert_at(finding: Finding, file: str, line: int, column: int | None, severity: str,
              element: str | None) -> None:
    assert Path(finding.file).name == file, finding
    assert (finding.line, finding.severity, finding.element_id) == (line, severity, element), finding
    if column is not None:
        assert finding.column == column, finding


def cli(*args, db: str | None = None) -> object:
    runner = CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None})
    return runner.invoke(main, ["--db", db or "sqlite:////nonexistent/pmoflow.db", *map(str, args)])


# -- one broken file per kind of finding ------------------------------------------------------------------------

# (file, message fragment, line, column, severity, element id, hint fragment)
CASES = [
    # XML well-formedness: libxml2's position of the mismatched end tag
    ("not_well_formed.bpmn", "not well-formed XML: Opening and ending tag mismatch: task line 5 and process",
     7, 18, "error", None, None),
    # the BPMN XSD: every error, each at its element's start tag and naming the element
    ("xsd.bpmn", "BPMN schema: Element '{http://www.omg.org/spec/BPMN/20100524/MODEL}userTask', attribute 'colour'",
     5, 5, "error", "review", None),
    ("xsd.bpmn", "BPMN schema: Element '{http://www.omg.org/spec/BPMN/20100524/MODEL}sometimes': This element is "
                 "not expected", 12, 7, "error", "f2", None),
    # the DMN XSD
    ("xsd.dmn", "DMN schema: Element '{https://www.omg.org/spec/DMN/20191111/MODEL/}decisionTable', attribute "
                "'hitPolicy'", 4, 5, "error", "grade_table", None),
    # SpiffWorkflow's own parse errors (it gives no line): mapped back to the element, one per process
    ("spiff_errors.bpmn", "A Service Task must have an operator", 5, 5, "error", "call_service",
     "spiffworkflow:serviceTaskOperator"),
    ("spiff_errors.bpmn", "Non-default exclusive outgoing sequence flow without condition", 20, 5, "error", "g_bare",
     "default flow"),
    # Python: the line and column inside the script, counted in the file
    ("python_syntax.bpmn", "script: syntax error: invalid syntax", 10, 20, "error", "compute", None),
    ("python_syntax.bpmn", "pre-script: syntax error", 15, 61, "error", "review", None),
    ("python_syntax.bpmn", "post-script: not allowed: Line 3: \"_secret\"", 18, 1, "error", "review", None),
    ("python_syntax.bpmn", "service parameter 'value': syntax error", 28, 13, "error", "notify", None),
    ("python_syntax.bpmn", "timer expression: syntax error", 36, 87, "error", "wait_timer", None),
    ("python_syntax.bpmn", "condition: syntax error", 43, 42, "error", "f_yes", None),
    # timers: unquoted (as Camunda Modeler writes them), and quoted values that are not ISO 8601
    ("timers.bpmn", 'timer value PT1H is not quoted: SpiffWorkflow evaluates timers as Python expressions, '
                    'write "PT1H"', 6, 87, "error", "wait_bare", "Camunda Modeler"),
    ("timers.bpmn", 'timer value "P1X" is not an ISO 8601 duration', 9, 53, "error", "wait_typo", '"P5D"'),
    ("timers.bpmn", 'timer value "next Monday" is not an ISO 8601 date and time', 12, 49, "error", "wait_date",
     "2027-01-31T09:00:00"),
    ("timers.bpmn", 'timer value "R3/every hour" is not an ISO 8601 repeating interval', 15, 50, "error",
     "wait_cycle", '"R3/PT1H"'),
    ("timers.bpmn", "timer value 3600 is not text", 18, 53, "error", "wait_number", None),
    # forms: missing, not JSON (at the JSON error, in the form file), not a JSON Schema, a path
    ("forms.bpmn", "form file 'no-such-form.schema.json' not found", 8, 11, "error", "fill_missing", None),
    ("forms.bpmn", "the form is not valid JSON: Expecting ',' delimiter", 5, 5, "error", "fill_broken_json",
     "used by fill_broken_json in forms.bpmn"),
    ("forms.bpmn", "a UI schema must be a JSON object", 1, 1, "error", "fill_broken_json", None),
    ("forms.bpmn", "the form is not a valid JSON Schema (draft 2020-12) at properties.amount.type", 5, 16, "error",
     "fill_bad_schema", None),
    ("forms.bpmn", "form file '../secrets/form.json' must be a file name, not a path", 33, 11, "error", "fill_path",
     None),
    # service operators without a registered handler
    ("no_handler.bpmn", "no handler is registered for service operator 'test.ecko'", 7, 9, "error", "call_echo",
     "did you mean 'test.echo'?"),
    # lanes that name no role: warnings (task data may route them)
    ("lanes.bpmn", "lane 'Quality Directr' names no role of the organisation", 9, 7, "warning", "lane_qd",
     "did you mean 'Quality Director'?"),
    ("lanes.bpmn", "lane 'Approver' names no role of the organisation", 12, 7, "warning", "lane_approver",
     "set lane_roles or lane_owners in task data"),
    # DMN input expressions and output entries are Python too
    ("dmn_expression.dmn", "decision input: syntax error", 6, 69, "error", "in_amount_expr", None),
    ("dmn_expression.dmn", "decision output: syntax error: unterminated string literal", 11, 46, "error",
     "rule_any_out", None),
    # DMN tables with no default row
    ("no_default.dmn", "the decision table has no default row", 4, 5, "warning", "RiskLevel", "'-'"),
    # exclusive gateways with no default flow (a merging one is fine)
    ("gateway.bpmn", "the exclusive gateway has no default flow", 5, 5, "warning", "size_gw", "default flow"),
    # unreachable elements: one warning where the unreachable part begins
    ("unreachable.bpmn", "not reachable from a start event: it never runs, nor do the 1 element(s) after it",
     12, 5, "warning", "forgotten", "sequence flow"),
    # ids SpiffWorkflow reserves
    ("reserved_ids.bpmn", "the ids 'Start' and 'End' are reserved by SpiffWorkflow (the process would parse into "
                          "an empty one that fails only when run)", 4, 5, "error", "Start", None),
    ("odd_root.bpmn", "not a BPMN 2.0 file: the root element is <definitions> in namespace "
                      "http://www.omg.org/spec/BPMN/20100501/MODEL", 2, 1, "error", None, "bpmn:definitions"),
]


@pytest.mark.parametrize("file, fragment, line, column, severity, element, hint", CASES,
                         ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_each_kind_of_broken_file_is_reported_at_its_line_and_element(file, fragment, line, column, severity,
                                                                       element, hint):
    finding = only([f for f in lint(file) if f.element_id == element], fragment)
    form_files = {"Expecting ','": "broken-json.schema.json", "UI schema": "broken-ui.uischema.json",
                  "JSON Schema (draft": "bad-schema.schema.json"}
    reported_in = next((name for key, name in form_files.items() if key in fragment), file)
    assert_at(finding, reported_in, line, column, severity, element)
    if hint is not None:
        assert hint in (finding.hint or ""), finding


def test_a_file_lists_every_finding_not_only_the_first():
    messages = [f.message for f in lint("python_syntax.bpmn")]
    assert len(messages) == 6 and all("syntax error" in m or "not allowed" in m for m in messages), messages
    assert len([f for f in lint("xsd.bpmn") if "schema" in f.message]) == 2
    assert len(lint("timers.bpmn")) == 5  # "P1DT12H" and a computed `deadline` are fine


def test_reserved_end_is_reported_too():
    end = [f for f in lint("reserved_ids.bpmn") if f.element_id == "End"]
    assert [(f.line, f.column, f.severity) for f in end] == [(6, 5, "error")]


def test_sound_parts_of_the_same_files_are_not_reported():
    assert not [f for f in lint("lanes.bpmn") if f.element_id == "lane_pm"]
    assert not [f for f in lint("gateway.bpmn") if f.element_id == "merge_gw"]
    assert [f.element_id for f in lint("unreachable.bpmn")] == ["forgotten"]  # not boundary or event subprocess
    assert lint("collect.dmn") == []  # a COLLECT table needs no default row


def test_camunda_modeler_files_say_what_is_ignored_and_what_to_use_instead():
    findings = lint("camunda.bpmn")
    assert_at(only(findings, "camunda:formKey attribute is ignored"), "camunda.bpmn", 4, 5, "warning", "StartEvent_1")
    assert "formJsonSchemaFilename" in only(findings, "camunda:formKey").hint
    assert "lane" in only(findings, "camunda:assignee").hint
    assert_at(only(findings, "camunda:inputOutput element"), "camunda.bpmn", 9, 9, "warning", "Activity_approve")
    assert "serviceTaskOperator" in only(findings, "camunda:class").hint
    assert_at(only(findings, "camunda:asyncBefore"), "camunda.bpmn", 27, 5, "warning", "Activity_book")
    assert_at(only(findings, "timer value P2D is not quoted"), "camunda.bpmn", 19, 62, "error",
              "TimerEventDefinition_1")
    condition = only(findings, "condition: syntax error")
    assert_at(condition, "camunda.bpmn", 42, 67, "error", "Flow_3")
    assert "JUEL" in condition.hint
    assert "groovy" in only(findings, "script: syntax error").hint
    assert_at(only(findings, "A Service Task must have an operator"), "camunda.bpmn", 27, 5, "error", "Activity_book")
    assert not [f for f in findings if "historyTimeToLive" in f.message or "modeler" in f.message]


def test_lanes_are_checked_against_the_roles_given():
    findings = lint("lanes.bpmn", roles={"Project Manager", "Quality Directr", "Approver"})
    assert not [f for f in findings if "lane" in f.message]
    assert len([f for f in lint("lanes.bpmn", roles={"Sponsor"}) if "names no role" in f.message]) == 3


def test_handlers_are_not_checked_when_none_are_given():
    assert not lint("no_handler.bpmn", handlers=None)


def test_a_file_that_is_not_utf8_is_an_error_at_the_first_bad_byte(tmp_path):
    text = INITIATION.read_text().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"', 1)
    text = text.replace('name="Intake review"', 'name="Intake révision"')
    latin = tmp_path / "latin.bpmn"
    latin.write_bytes(text.encode("latin-1"))
    finding = only(lint(latin), "not UTF-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "révision" in t)
    assert (finding.line, finding.column, finding.severity) == (line, text.splitlines()[line - 1].index("é") + 1,
                                                                "error")


def test_process_model_folder_errors_point_into_process_model_json():
    finding = only(lint("model_bad_primary"), "primary_process_id 'Process_renamed_since' is not a process")
    assert_at(finding, "process_model.json", 5, 5, "error", None)
    assert "Process_model_x7" in finding.message
    assert_at(only(lint("model_bad_json"), "process_model.json is not valid JSON"), "process_model.json", 4, 5,
              "error", None)


def test_parse_refuses_errors_but_not_warnings(tmp_path):
    with pytest.raises(InvalidProcess) as refused:
        parser.parse([VALIDATE / "timers.bpmn"])
    assert refused.value.message == "5 problem(s) found"
    assert all(FINDING.match(line) for line in refused.value.details)
    assert {f["severity"] for f in refused.value.findings} == {"error"}
    [process] = parser.parse([VALIDATE / "lanes.bpmn"])  # two lane warnings
    assert process.process_id == "v_lanes"


def test_paths_that_do_not_exist_or_hold_nothing_are_refused(tmp_path):
    with pytest.raises(InvalidProcess, match="no such file or folder"):
        parser.lint([tmp_path / "missing.bpmn"])
    with pytest.raises(InvalidProcess, match="no .bpmn or .dmn files"):
        parser.lint([tmp_path])


# -- the bundled library ----------------------------------------------------------------------------------------

def test_the_bundled_library_validates_without_errors(demo_pmo):
    findings = demo_pmo.validate([PMO_BPMN])
    assert [f for f in findings if f["severity"] == "error"] == []
    [approver] = [f for f in findings if f["element_id"] == "lane_approver"]
    assert (Path(approver["file"]).name, approver["severity"]) == ("project_initiation.bpmn", "warning")
    assert approver["hint"] == "set lane_roles or lane_owners in task data"


def test_validate_takes_the_roles_from_the_database_when_there_is_one(make_pmo, tmp_path):
    committee = tmp_path / "committee.bpmn"  # a PMO role, but nobody in the test organisation holds it
    committee.write_text((VALIDATE / "lanes.bpmn").read_text().replace("Quality Directr", "Steering Committee"))
    app = make_pmo("alice", libraries=[PMO])

    def lanes() -> list[str]:
        return sorted(f["element_id"] for f in app.validate([committee]) if "names no role" in f["message"])

    assert lanes() == ["lane_approver"]  # no database yet: the roles of the library's organisation
    app.init(TEST_ORG)
    assert lanes() == ["lane_approver", "lane_qd"]


# -- the command ------------------------------------------------------------------------------------------------

def test_validate_prints_every_finding_and_exits_1_on_errors():
    result = cli("validate", VALIDATE / "timers.bpmn", VALIDATE / "lanes.bpmn")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 7 and all(FINDING.match(line) for line in lines), lines
    assert [FINDING.match(line)["severity"] for line in lines].count("warning") == 2
    assert result.stderr == "error: 5 problem(s) found and 2 warning(s)\n"
    assert "(hint: did you mean 'Quality Director'? Otherwise set lane_roles" in result.stdout


def test_validate_with_only_warnings_exits_0():
    result = cli("validate", VALIDATE / "lanes.bpmn")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "ok: no errors, 2 warning(s)"
    assert cli("validate", MODEL).stdout == "ok: no errors\n"


def test_validate_json_is_a_list_of_finding_objects():
    result = cli("validate", "--json", VALIDATE / "no_handler.bpmn", VALIDATE / "gateway.bpmn")
    assert result.exit_code == 1 and result.stderr.startswith("error: 1 problem(s) found")
    findings = json.loads(result.stdout)
    assert all(set(f) == FINDING_KEYS for f in findings)
    assert [(Path(f["file"]).name, f["line"], f["column"], f["severity"], f["element_id"]) for f in findings] == [
        ("gateway.bpmn", 5, 5, "warning", "size_gw"), ("no_handler.bpmn", 7, 9, "error", "call_echo")]
    assert json.loads(cli("validate", "--json", VALIDATE / "collect.dmn").stdout) == []


# -- anything a modeler (or a disk) can produce -----------------------------------------------------------------

def _mutations(source: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Well-formed files with elements removed, moved, retagged, re-id'd, with odd text and references."""
    out = []
    for _ in range(count):
        root = etree.fromstring(source)
        elements = list(root.iter(etree.Element))
        for _ in range(rng.randrange(1, 6)):
            el = rng.choice(elements)
            op = rng.randrange(6)
            if op == 0 and el.getparent() is not None:
                el.getparent().remove(el)
            elif op == 1 and el.attrib:
                del el.attrib[rng.choice(sorted(el.attrib))]
            elif op == 2:
                el.set("id", rng.choice(["Start", "End", "", "two words", "dup", "1"]))
            elif op == 3:
                el.text = rng.choice(["", "x = = 1", "PT1H", "${a}", "(" * 300, '"P1X"', "import os", "é"])
            elif op == 4:
                namespace = rng.choice([parser.BPMN_NS, parser.SPIFF_NS, "urn:odd", "http://camunda.org/schema/1.0/bpmn"])
                name = rng.choice(["task", "process", "startEvent", "lane", "script", "timeDuration", "sequenceFlow",
                                   "weird", "decisionTable", "definitions"])
                el.tag = f"{{{namespace}}}{name}"
            else:
                el.set(rng.choice(["sourceRef", "targetRef", "default", "attachedToRef", "calledElement",
                                   "isExecutable"]), rng.choice(["nope", "", "Start", "true", "gw_intake_decision"]))
        out.append(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return out


def _chain(length: int) -> bytes:
    nodes = ['<bpmn:startEvent id="s"/>'] + [f'<bpmn:task id="t{i}"/>' for i in range(length)]
    nodes.append('<bpmn:endEvent id="e"/>')
    ids = ["s"] + [f"t{i}" for i in range(length)] + ["e"]
    flows = [f'<bpmn:sequenceFlow id="f{i}" sourceRef="{a}" targetRef="{b}"/>' for i, (a, b) in
             enumerate(zip(ids, ids[1:], strict=False))]
    return (f'<bpmn:definitions xmlns:bpmn="{parser.BPMN_NS}" id="d" targetNamespace="x"><bpmn:process id="chain" '
            f'isExecutable="true">{"".join(nodes)}{"".join(flows)}</bpmn:process></bpmn:definitions>').encode()


def odd_files() -> dict[str, bytes]:
    source = INITIATION.read_bytes()
    rng = random.Random(20240601)
    files = {
        "empty": b"",
        "whitespace": b"  \n\n ",
        "binary": bytes(rng.randrange(256) for _ in range(4096)),
        "nul": b"\x00" * 100,
        "utf16": source.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
        "deep": b"<a>" * 5000 + b"</a>" * 5000,
        "deep_bpmn": source.replace(b"</bpmn:process>", b"<bpmn:subProcess id='x'>" * 120
                                    + b"</bpmn:subProcess>" * 120 + b"</bpmn:process>"),
        "odd_namespace": source.replace(parser.BPMN_NS.encode(), b"urn:not-bpmn"),
        "default_namespace": source.replace(b"bpmn:", b"").replace(b"xmlns:bpmn=", b"xmlns="),
        "dmn_inside": (PMO_BPMN / "charter_approval.dmn").read_bytes(),
        "html": b"<!DOCTYPE html><html><body><p>Hello</body></html>",
        "entities": b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
        "long_chain": _chain(600),
        "nested_parens": source.replace(b'pmName = ""', b"pmName = " + b"(" * 5000 + b"1" + b")" * 5000),
        "no_process": f'<bpmn:definitions xmlns:bpmn="{parser.BPMN_NS}" id="d" targetNamespace="x"/>'.encode(),
    }
    for i in range(12):
        files[f"truncated_{i}"] = source[:rng.randrange(1, len(source))]
    for i in range(12):
        garbled = bytearray(source)
        for _ in range(rng.randrange(1, 12)):
            garbled[rng.randrange(len(garbled))] = rng.randrange(256)
        files[f"garbled_{i}"] = bytes(garbled)
    for i, mutated in enumerate(_mutations(source, rng, 40)):
        files[f"mutated_{i}"] = mutated
    return files


ODD = odd_files()


@pytest.mark.parametrize("name", sorted(ODD))
def test_any_file_gives_findings_not_a_traceback(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "process.bpmn").write_bytes(ODD[name])
    shutil.copy(PMO_BPMN / "charter_approval.dmn", folder)
    findings = parser.lint([folder], handlers=set(all_handlers()), form_dirs=[PMO_FORMS])
    assert all(isinstance(f, Finding) and f.line >= 1 and f.column >= 1 for f in findings)
    assert not [f for f in findings if "could not finish checking" in f.message], findings
    if not name.startswith("mutated_"):  # a mutation can leave a valid file; every other variant is broken
        assert [f for f in findings if f.severity in ("error", "warning")], name


@pytest.mark.parametrize("name", ["empty", "binary", "truncated_0", "garbled_0", "deep", "long_chain",
                                  "odd_namespace", "utf16", "mutated_0"])
def test_the_command_exits_1_without_a_traceback_on_broken_files(tmp_path, name):
    file = tmp_path / "process.bpmn"
    file.write_bytes(ODD[name])
    for args in (["validate", file], ["validate", "--json", file], ["deploy", file]):
        result = cli(*args)
        assert result.exit_code in (0, 1), result.output
        assert "Traceback" not in result.output and "unexpected failure" not in result.output, result.output
        assert isinstance(result.exception, SystemExit | None)
    if name not in ("mutated_0",):
        assert cli("validate", file).exit_code == 1


# -- SpiffWorkflow modeler process-model folders ----------------------------------------------------------------

def test_a_process_model_folder_validates_as_its_primary_process():
    assert lint(MODEL) == []
    [process] = parser.parse([MODEL], handlers=HANDLERS)
    assert (process.process_id, process.name) == (MODEL_PROCESS, "Leave request")  # display_name, trimmed
    assert process.start_form == "request-schema.json"
    assert sorted(process.sources) == ["forms/approve-schema.json", "forms/request-schema.json",
                                       "forms/request-uischema.json", "leave-approver.dmn", "leave-request.bpmn",
                                       "process_model.json"]


def test_a_process_model_folder_deploys_starts_and_runs(make_pmo, tmp_path):
    admin = make_pmo("alice")
    admin.init(TEST_ORG)
    [deployed] = admin.deploy([MODEL])
    assert (deployed["process_id"], deployed["name"], deployed["version"], deployed["created"]) == (
        MODEL_PROCESS, "Leave request", 1, True)
    assert admin.deploy([MODEL / "process_model.json"])[0]["created"] is False  # the file names the folder too
    started = admin.start(MODEL_PROCESS, {"start_date": "2024-02-27", "end_date": "2024-03-01",
                                          "reason": "Family Visit!"})
    [task] = [t for t in admin.tasks() if t["instance_id"] == started["instance_id"]]
    assert task["bpmn_id"] == "Activity_approve"
    admin.complete(task["id"], {"approved": True})
    shown = admin.show(started["instance_id"])
    assert shown["status"] == "completed"
    data = shown["data"]
    assert {k: data[k] for k in ("days", "month", "leap_year", "slug", "allowance", "approver_role", "return_on",
                                 "lucky", "stamped")} == {
        "days": 4, "month": "February", "leap_year": True, "slug": "family-visit", "allowance": "6.0",
        "approver_role": "Project Manager", "return_on": "2024-03-02", "lucky": True, "stamped": True}
    assert json.loads(data["summary"]) == {"days": 4, "month": "February"}
    assert re.fullmatch(r"[0-9a-f-]{36}", data["request_id"])

    changed = tmp_path / "leave-request"  # only the decision table changes: that is a new version
    shutil.copytree(MODEL, changed)
    dmn = changed / "leave-approver.dmn"
    dmn.write_text(dmn.read_text().replace("&gt; 10", "&gt; 5"))
    assert admin.deploy([changed])[0]["version"] == 2


def test_a_process_model_folder_runs_its_scenario_files():
    results = scenario.run_tests([MODEL])
    assert [(r.case, r.passed) for r in results] == [("granted", True), ("refused", True)], results
    result = cli("test", MODEL)
    assert result.exit_code == 0 and "2 passed, 0 failed" in result.stdout, result.output


# -- the script helpers of the modeler's engine -----------------------------------------------------------------

def test_scripts_find_the_modeler_engines_helpers():
    context: dict = {}
    SandboxEnvironment().execute(
        "a = json.loads(json.dumps({'k': [1, 2]}))\n"
        "b = re.findall(r'\\d+', 'a1b22', re.IGNORECASE)\n"
        "c = str(decimal.Decimal('2.675').quantize(decimal.Decimal('0.01'), rounding=decimal.ROUND_HALF_UP))\n"
        "d = str(uuid.UUID(str(uuid.uuid4()))).count('-')\n"
        "e = calendar.monthrange(2023, 2)[1], calendar.day_name[0], calendar.isleap(2024)\n"
        "f = random.randint(3, 3) + len(random.sample([1, 2, 3], 2))\n"
        "g = time.strftime('%Y', time.gmtime(0))\n"
        "h = (datetime(2024, 1, 31) + timedelta(days=1)).date() == date(2024, 2, 1)\n"
        "i = Decimal('1.5') * 2\n"
        "j = sorted(map(abs, [-2, 1])), max([1, 5]), sum([1, 2]), any([0, 1]), list(zip([1], [2]))\n",
        context)
    # tuples come back as lists, as a save and load of task data would make them
    assert context == {"a": {"k": [1, 2]}, "b": ["1", "22"], "c": "2.68", "d": 4, "e": [28, "Monday", True],
                       "f": 5, "g": "1970", "h": True, "i": Decimal("3.0"), "j": [[1, 2], 5, 3, True, [[1, 2]]]}


@pytest.mark.parametrize("reach", ["uuid.os", "random._os", "json.decoder", "re.sre_compile", "re._compiler",
                                   "calendar.sys", "decimal.sys", "uuid.uuid4.__globals__",
                                   "random.random.__self__", "json.dumps.__module__", "json._asdict()",
                                   "uuid.UUID.__init__"])
def test_the_helpers_lead_nowhere_outside_the_sandbox(reach):
    context: dict = {}
    try:
        SandboxEnvironment().execute(f"x = {reach}", context)
    except (SyntaxError, AttributeError, NameError):
        return  # refused before or while running
    assert context["x"] is None, f"{reach} gave {context['x']!r}"


def test_one_script_cannot_change_the_helpers_the_next_one_gets():
    environment = SandboxEnvironment()
    for attempt in ("json.dumps = None", "setattr(json, 'dumps', None)", "del json.dumps", "re.IGNORECASE = 0"):
        with pytest.raises((AttributeError, TypeError)):
            environment.execute(attempt, {})
    context: dict = {}
    SandboxEnvironment().execute("x = json.dumps([1])", context)
    assert context == {"x": "[1]"}


def test_the_helper_names_are_reserved_in_task_data():
    assert {"time", "json", "decimal", "re", "uuid", "calendar", "random", "datetime", "timedelta"} <= SCRIPT_HELPERS
