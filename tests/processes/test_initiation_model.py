"""Scenario tests of the project initiation model (bpmn/project_initiation.bpmn + charter_approval.dmn).

They drive the model with bare SpiffWorkflow 3.2, not with the pmoflow engine: a small harness parses the
files with the XSD validator, gives scripts only the globals the engine gives them (``process_initiator``,
``datetime``, ``date``, ``timedelta`` and a short list of builtins), dispatches service tasks to
``workflows.HANDLERS``, validates every submitted form against its JSON Schema, fires timers by moving
their stored due time into the past, and round-trips the workflow through the JSON serializer after every
step (as the engine does when it saves an instance).
"""

from __future__ import annotations

import builtins
import copy
import inspect
import json
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from lxml import etree
from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from scenario_helpers import gateways_on_loops
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from pmoflow.engine.handlers import collect

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import workflows  # noqa: E402  (the repository root is not installed as pmoflow.workflows here)
from workflows import deprecated, notifications  # noqa: E402
from workflows import initiation as handlers  # noqa: E402

BPMN_FILE = ROOT / "bpmn" / "project_initiation.bpmn"
DMN_FILE = ROOT / "bpmn" / "charter_approval.dmn"
FORMS = ROOT / "forms"
PROCESS_ID = "project_initiation"
STARTER = "sam.sponsor"

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
    "di": "http://www.omg.org/spec/DD/20100524/DI",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
    "dmn": "https://www.omg.org/spec/DMN/20191111/MODEL/",
}
ROLES = {
    "Project Director",
    "Assistant Project Director",
    "Senior Project Manager",
    "Project Manager",
    "Quality Director",
    "SQA",
    "Configuration Manager",
    "Configuration Engineer",
    "SEPG",
    "Internal Auditor",
    "Measurement Analyst",
    "Knowledge Manager",
    "Training Coordinator",
    "Tool Developer",
    "Sponsor",
    "Auditee",
    "Steering Committee",
}
OUTCOME_ENDS = {
    "end_authorised": "Authorised",
    "end_authorised_with_conditions": "Authorised-with-conditions",
    "end_rejected_at_intake": "Rejected",
    "end_rejected_by_approver": "Rejected",
    "end_withdrawn": "Withdrawn",
}

# ---------------------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------------------

SCRIPT_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "len",
        "min",
        "max",
        "sum",
        "sorted",
        "any",
        "all",
        "str",
        "int",
        "float",
        "round",
        "list",
        "dict",
        "set",
        "range",
        "enumerate",
        "zip",
        "abs",
        "bool",
    )
}


def process_initiator() -> str:
    return STARTER


class EngineLikeEnvironment(TaskDataEnvironment):
    """SpiffWorkflow's environment restricted to what the pmoflow engine gives scripts.

    Like the engine, a script runs on a deep copy of the task data and its resulting namespace replaces
    the data, so nested values are never shared with earlier tasks and ``del`` removes a key.
    """

    def __init__(self) -> None:
        super().__init__(
            {
                "process_initiator": process_initiator,
                "datetime": datetime,
                "date": date,
                "timedelta": timedelta,
                "__builtins__": SCRIPT_BUILTINS,
            }
        )

    def execute(self, script, context, external_context=None):
        scratch = copy.deepcopy(context)
        super().execute(script, scratch, external_context)
        context.clear()
        context.update(scratch)
        return True


class HarnessScriptEngine(PythonScriptEngine):
    """Dispatches service tasks to ``workflows.HANDLERS`` and records every call."""

    def __init__(self) -> None:
        super().__init__(environment=EngineLikeEnvironment())
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call_service(self, task, operation_name=None, operation_params=None, **kwargs):
        handler = workflows.HANDLERS.get(operation_name)
        if handler is None:
            raise WorkflowTaskException(f"no handler for {operation_name}", task=task)
        params = {name: param["value"] for name, param in (operation_params or {}).items()}
        try:
            result = handler(**copy.deepcopy(params))
        except Exception as exc:
            raise WorkflowTaskException(f"{operation_name} failed: {exc}", task=task, exception=exc) from exc
        self.calls.append((operation_name, params))
        return json.dumps(result)


def parse_model() -> tuple[Any, dict]:
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_file(str(BPMN_FILE))
    parser.add_dmn_file(str(DMN_FILE))
    return parser.get_spec(PROCESS_ID), parser.get_subprocess_specs(PROCESS_ID)


SPEC, SUBPROCESS_SPECS = parse_model()
SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


def load_form(filename: str) -> dict:
    return json.loads((FORMS / filename).read_text(encoding="utf-8"))


def form_errors(filename: str, data: dict) -> list[str]:
    schema = load_form(filename)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(data)
    )


def form_of(task_spec) -> str | None:
    return (getattr(task_spec, "extensions", None) or {}).get("properties", {}).get("formJsonSchemaFilename")


class Instance:
    """One running instance of the process, driven like a user of the engine would drive it."""

    def __init__(self, request: dict) -> None:
        start_form = form_of(SPEC.task_specs["start_request"])
        assert start_form == "project-request.schema.json"
        assert form_errors(start_form, request) == []
        self.engine = HarnessScriptEngine()
        self.wf = BpmnWorkflow(SPEC, SUBPROCESS_SPECS, script_engine=self.engine)
        self.wf.get_next_task(state=TaskState.READY).set_data(**copy.deepcopy(request))
        self.steps()

    # -- engine loop ----------------------------------------------------------------------------------------
    def steps(self) -> None:
        self.wf.refresh_timers()
        self.wf.do_engine_steps()
        self.roundtrip()

    def roundtrip(self) -> None:
        """Save and reload the instance, as the engine does after every command."""
        state = SERIALIZER.serialize_json(self.wf)
        self.wf = SERIALIZER.deserialize_json(state)
        self.wf.script_engine = self.engine

    # -- queries --------------------------------------------------------------------------------------------
    def ready(self) -> list[str]:
        return sorted(t.task_spec.bpmn_id for t in self.wf.get_tasks(state=TaskState.READY, manual=True))

    def task(self, bpmn_id: str):
        tasks = [
            t for t in self.wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == bpmn_id
        ]
        assert len(tasks) == 1, f"{bpmn_id} is not ready; ready: {self.ready()}"
        return tasks[0]

    def waiting_timer(self, bpmn_id: str):
        tasks = [t for t in self.wf.get_tasks(state=TaskState.WAITING) if t.task_spec.bpmn_id == bpmn_id]
        assert len(tasks) == 1, f"timer {bpmn_id} is not waiting"
        return tasks[0]

    def completed(self, bpmn_id: str) -> list:
        return [t for t in self.wf.get_tasks(state=TaskState.COMPLETED) if t.task_spec.bpmn_id == bpmn_id]

    def services(self) -> list[str]:
        return [name for name, _ in self.engine.calls]

    @property
    def data(self) -> dict:
        return self.wf.data

    # -- actions --------------------------------------------------------------------------------------------
    def complete(self, bpmn_id: str, form: dict, lane: str | None = None) -> dict:
        """Submit a human task's form; returns the task's data as it was when the task became ready."""
        task = self.task(bpmn_id)
        if lane is not None:
            assert task.task_spec.lane == lane
        filename = form_of(task.task_spec)
        assert filename, f"{bpmn_id} has no form"
        assert form_errors(filename, form) == [], form_errors(filename, form)
        before = copy.deepcopy(task.data)
        task.set_data(**copy.deepcopy(form))
        task.run()
        self.steps()
        return before

    def fire_timer(self, bpmn_id: str, expected: timedelta) -> None:
        """Move a waiting timer's due time into the past, then let the engine run."""
        timer = self.waiting_timer(bpmn_id)
        due = datetime.fromisoformat(timer.internal_data["event_value"])
        assert abs(due - datetime.now(UTC) - expected) < timedelta(minutes=5)
        timer.internal_data["event_value"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        self.steps()

    def end_events(self) -> list[str]:
        return sorted(
            t.task_spec.bpmn_id
            for t in self.wf.get_tasks(state=TaskState.COMPLETED)
            if t.task_spec.bpmn_id and t.task_spec.bpmn_id.startswith("end_")
        )

    def assert_outcome(self, outcome: str, end: str) -> None:
        assert self.wf.is_completed(), f"still running; ready: {self.ready()}"
        assert self.data["outcome"] == outcome
        assert end in self.end_events()
        assert OUTCOME_ENDS[end] == outcome
        assert [e for e in self.end_events() if e in OUTCOME_ENDS] == [end]


# ---------------------------------------------------------------------------------------------------------
# Form data used by the scenarios
# ---------------------------------------------------------------------------------------------------------


def request(budget: float = 500_000, risks=((2, 3),), contract: str = "internal", **extra) -> dict:
    data = {
        "title": "Customer portal replacement",
        "businessNeed": "The customer portal runs on an unsupported platform; outages cost us renewals and "
        "support calls. Customers need self-service for invoices and tickets.",
        "objectives": [
            {"objective": "Replace the portal", "successCriterion": "Old portal switched off by Q4"},
            {"objective": "Cut support calls", "successCriterion": "-30% tickets within 6 months"},
        ],
        "scopeIn": "Portal, single sign-on, invoice and ticket self-service",
        "scopeOut": "Mobile app",
        "estBudget": budget,
        "budgetSource": "Capital budget",
        "targetStart": "2027-01-04",
        "targetEnd": "2027-12-17",
        "milestones": [
            {"name": "Design approved", "date": "2027-03-01"},
            {"name": "Go-live", "date": "2027-11-15"},
        ],
        "risks": [{"desc": f"risk {i}", "probability": p, "impact": i_} for i, (p, i_) in enumerate(risks)],
        "stakeholders": [
            {"name": "sam.sponsor", "role": "Sponsor", "influence": "H"},
            {"name": "lee.ops", "role": "Operations lead", "influence": "M"},
        ],
        "contractType": contract,
        "strategicObjective": "Improve customer experience",
    }
    if budget >= 1_000_000:
        data["businessCase"] = "https://docs.example.org/bc/customer-portal"
    data.update(extra)
    return data


def intake(decision: str = "Accept", comment: str | None = None, project_type: str = "Software development"):
    form = {
        "hasMeasurableObjectives": True,
        "hasClearScope": True,
        "hasRealisticSchedule": True,
        "hasBudgetJustification": True,
        "hasRiskAssessment": True,
        "hasStakeholders": decision == "Accept",
        "projectType": project_type,
        "lifecycle": "Hybrid",
        "intakeDecision": decision,
    }
    if comment is not None:
        form["intakeComment"] = comment
    return form


def charter(pm_name: str | None = "pat.pm", **extra) -> dict:
    form = {
        "purpose": "Replace the unsupported customer portal and move customers to self-service.",
        "objectives": [
            {"objective": "Replace the portal", "successCriterion": "Old portal off by 2027-12-01"}
        ],
        "highLevelRequirements": ["Single sign-on with the corporate IdP", "WCAG 2.1 AA"],
        "deliverables": ["New portal in production", "Migrated customer accounts"],
        "overallRisk": "Med",
        "milestones": [
            {"name": "Design approved", "date": "2027-03-01"},
            {"name": "Go-live", "date": "2027-11-15"},
        ],
        "preApprovedBudget": 120_000,
        "stakeholders": [
            {"name": "sam.sponsor", "role": "Sponsor", "influence": "H"},
            {"name": "lee.ops", "role": "Operations lead", "influence": "M"},
            {"name": "kim.dev", "role": "Lead developer", "influence": "M"},
        ],
        "exitCriteria": "Portal accepted by operations; old portal decommissioned.",
        "pmAuthority": "Moderate",
        "sponsor": "Sam Sponsor",
    }
    if pm_name is not None:
        form["pmName"] = pm_name
    form.update(extra)
    return form


def approval(decision: str = "Approve", signer: str = "Dana Director", **extra) -> dict:
    form = {"approvalDecision": decision, "signature": signer}
    form.update(extra)
    return form


CM_OK = {"cmPlanConfirmed": True, "repositoryUrl": "https://git.example.org/pmo/customer-portal"}


def to_approval(run: Instance, pm_name: str | None = "pat.pm", sqa: str = "quinn.sqa", cm_last: bool = False):
    """From a ready intake review to the first approval: accept, draft, assign SQA, confirm CM."""
    run.complete("intake_review", intake(), lane="Senior Project Manager")
    run.complete("draft_charter", charter(pm_name), lane="Project Manager")
    if pm_name is None:
        run.complete("assign_pm", {"pmName": "pat.pm"}, lane="Senior Project Manager")
    if not cm_last:
        run.complete("confirm_cm_plan", CM_OK, lane="Configuration Manager")
    run.complete("assign_sqa", {"sqaUser": sqa}, lane="Quality Director")
    if cm_last:
        run.complete("confirm_cm_plan", CM_OK, lane="Configuration Manager")
    assert run.ready() == ["approve_charter"]


# ---------------------------------------------------------------------------------------------------------
# The model's files
# ---------------------------------------------------------------------------------------------------------

BPMN_DOC = etree.parse(str(BPMN_FILE))


def xp(expr: str, node=BPMN_DOC):
    return node.xpath(expr, namespaces=NS)


def process_elements():
    return [el for el in xp("//bpmn:process/*") if el.get("id")]


def test_model_parses_with_the_xsd_and_has_no_reserved_ids():
    assert SPEC.name == PROCESS_ID
    assert SUBPROCESS_SPECS == {}
    process = xp("//bpmn:process")[0]
    assert process.get("isExecutable") == "true" and process.get("name") == "Project initiation"
    ids = [
        el.get("id")
        for el in BPMN_DOC.iter()  # spiffworkflow:parameter ids are names, not XML ids
        if el.get("id") and etree.QName(el).namespace != NS["spiffworkflow"]
    ]
    assert len(ids) == len(set(ids))
    assert not {"Start", "End"} & set(ids)
    # every BPMN element reached the spec (an id like "Start" would have silently emptied it)
    flow_nodes = {
        el.get("id")
        for el in process_elements()
        if etree.QName(el).localname not in ("sequenceFlow", "laneSet", "documentation")
    }
    assert flow_nodes <= set(SPEC.task_specs)


def test_lanes_are_roles_or_the_approver_lane():
    lanes = {lane.get("name") for lane in xp("//bpmn:lane")}
    assert lanes == {
        "Sponsor",
        "Senior Project Manager",
        "Project Manager",
        "Quality Director",
        "Configuration Manager",
        "Approver",
    }
    assert lanes - {"Approver"} <= ROLES
    in_lanes = {ref.text for ref in xp("//bpmn:lane/bpmn:flowNodeRef")}
    nodes = {
        el.get("id")
        for el in process_elements()
        if etree.QName(el).localname not in ("sequenceFlow", "laneSet")
    }
    assert in_lanes == nodes


def test_human_tasks_have_names_documentation_and_existing_forms():
    humans = xp("//bpmn:userTask") + xp("//bpmn:startEvent")
    assert len(humans) == 9
    for el in humans:
        assert el.get("name"), el.get("id")
        assert xp("./bpmn:documentation/text()", el), el.get("id")
        props = {p.get("name"): p.get("value") for p in xp(".//spiffworkflow:property", el)}
        form = props["formJsonSchemaFilename"]
        assert (FORMS / form).is_file(), form
    approve = xp("//bpmn:userTask[@id='approve_charter']")[0]
    props = {p.get("name"): p.get("value") for p in xp(".//spiffworkflow:property", approve)}
    assert props["sodDifferentFrom"] == "starter"


MODEL_FORMS = sorted(
    {FORMS / p.get("value") for p in xp("//spiffworkflow:property[@name='formJsonSchemaFilename']")}
)


def test_the_model_uses_seven_forms():
    assert [p.name for p in MODEL_FORMS] == [
        "charter-approval.schema.json",
        "cm-plan-confirmation.schema.json",
        "intake-review.schema.json",
        "pm-assignment.schema.json",
        "project-charter.schema.json",
        "project-request.schema.json",
        "sqa-assignment.schema.json",
    ]


@pytest.mark.parametrize("path", MODEL_FORMS, ids=lambda p: p.name)
def test_forms_are_valid_draft_2020_12_with_titles_and_descriptions(path):
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "additionalProperties" not in schema

    def walk(props: dict, where: str) -> None:
        for name, prop in props.items():
            assert prop.get("title") and prop.get("description"), f"{where}{name}"
            assert name != "typename"
            items = prop.get("items", {})
            if "properties" in items:
                walk(items["properties"], f"{where}{name}[].")

    walk(schema["properties"], "")


def test_form_field_names_do_not_shadow_script_globals():
    reserved = {"process_initiator", "datetime", "date", "timedelta", "Decimal", "typename"}
    for path in MODEL_FORMS:
        assert not reserved & set(json.loads(path.read_text())["properties"]), path.name


def test_exclusive_gateways_have_defaults_and_python_conditions():
    for gw in xp("//bpmn:exclusiveGateway"):
        outgoing = xp(f"//bpmn:sequenceFlow[@sourceRef='{gw.get('id')}']")
        if len(outgoing) < 2:
            continue
        assert gw.get("default") in {f.get("id") for f in outgoing}, gw.get("id")
        for f in outgoing:
            if f.get("id") != gw.get("default"):
                compile(xp("./bpmn:conditionExpression/text()", f)[0], f.get("id"), "eval")


def test_no_loop_passes_through_a_parallel_gateway():
    """SpiffWorkflow 3.2 fires a parallel join early when a loop brings a token back to it (the cancelled
    join task of the previous round counts as an arrived branch), so no cycle may contain one."""
    assert gateways_on_loops(xp("//bpmn:sequenceFlow"), xp("//bpmn:boundaryEvent"), xp("//bpmn:parallelGateway")) == []


def test_timers_are_quoted_iso_durations():
    timers = {el.getparent().getparent().get("id"): el.text for el in xp("//bpmn:timeDuration")}
    assert timers == {
        "tmr_revision_timeout": '"P10D"',
        "tmr_approval_escalation": '"P10D"',
        "tmr_approval_reminder": '"P5D"',
    }
    cancel = {el.get("id"): el.get("cancelActivity") for el in xp("//bpmn:boundaryEvent")}
    assert cancel == {
        "tmr_revision_timeout": "true",
        "tmr_approval_escalation": "true",
        "tmr_approval_reminder": "false",
    }


def test_service_operators_match_handler_signatures():
    operators = xp("//spiffworkflow:serviceTaskOperator")
    old_ids = set(collect(deprecated))  # kept for versions deployed by earlier releases, not for new BPMN
    initiation_handlers = {name for name in workflows.HANDLERS if name.startswith("initiation.")} - old_ids
    assert {op.get("id") for op in operators} == initiation_handlers | {"notifications.notify"}
    for op in operators:
        handler = workflows.HANDLERS[op.get("id")]
        signature = inspect.signature(handler)
        params = {p.get("id") for p in xp(".//spiffworkflow:parameter", op)}
        required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
        assert required <= params <= set(signature.parameters), op.get("id")
        assert op.get("resultVariable")


def python_snippets() -> list[tuple[str, str, str]]:
    """(where, source, mode) for every piece of Python in the BPMN and DMN files."""
    out = []
    for el in xp("//bpmn:script"):
        out.append((el.getparent().get("id"), el.text, "exec"))
    for el in xp("//spiffworkflow:preScript | //spiffworkflow:postScript"):
        out.append((el.getparent().getparent().get("id"), el.text, "exec"))
    for el in xp("//bpmn:conditionExpression | //bpmn:timeDuration"):
        out.append((el.getparent().get("id") or el.getparent().getparent().get("id"), el.text, "eval"))
    for el in xp("//spiffworkflow:parameter"):
        out.append((el.get("id"), el.get("value"), "eval"))
    dmn = etree.parse(str(DMN_FILE))
    for el in dmn.xpath("//dmn:inputExpression/dmn:text | //dmn:outputEntry/dmn:text", namespaces=NS):
        out.append((el.getparent().get("id"), el.text, "eval"))
    for el in dmn.xpath("//dmn:inputEntry/dmn:text", namespaces=NS):
        if el.text:
            src = el.text.replace("?", "dmninputexpr") if "?" in el.text else None
            if src is None:
                src = f"dmninputexpr {el.text}" if el.text[0] in "<>=!" else el.text
            out.append((el.getparent().get("id"), src, "eval"))
    return out


@pytest.mark.parametrize(
    "where,source,mode",
    python_snippets(),
    ids=lambda v: v if isinstance(v, str) and " " not in v and len(v) < 60 else "",
)
def test_python_in_the_model_passes_the_restricted_python_sandbox(where, source, mode):
    compiler = compile_restricted_exec if mode == "exec" else compile_restricted_eval
    result = compiler(source)
    assert result.errors == (), f"{where}: {result.errors}"
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r'"[^"]*"', "", source)))
    assert not {n for n in names if n.startswith("_")}, where
    assert "typename" not in names


def test_diagram_covers_every_element_with_sensible_geometry():
    shapes = {}
    for sh in xp("//bpmndi:BPMNShape"):
        b = xp("./dc:Bounds", sh)[0]
        shapes[sh.get("bpmnElement")] = tuple(float(b.get(k)) for k in ("x", "y", "width", "height"))
    edges = {
        ed.get("bpmnElement"): [(float(w.get("x")), float(w.get("y"))) for w in xp("./di:waypoint", ed)]
        for ed in xp("//bpmndi:BPMNEdge")
    }
    plane = xp("//bpmndi:BPMNPlane")[0]
    assert plane.get("bpmnElement") == xp("//bpmn:collaboration")[0].get("id")
    participant = xp("//bpmn:participant")[0]
    assert participant.get("processRef") == PROCESS_ID and participant.get("id") in shapes
    lanes = {lane.get("id"): lane for lane in xp("//bpmn:lane")}
    assert set(lanes) <= set(shapes)
    nodes = [el for el in process_elements() if etree.QName(el).localname not in ("sequenceFlow", "laneSet")]
    assert {el.get("id") for el in nodes} <= set(shapes)
    flows = xp("//bpmn:sequenceFlow")
    assert {f.get("id") for f in flows} == set(edges)
    assert all(len(points) >= 2 for points in edges.values())

    def inside(inner, outer, tolerance=0.0):
        x, y, w, h = inner
        ox, oy, ow, oh = outer
        return (
            ox - tolerance <= x
            and oy - tolerance <= y
            and x + w <= ox + ow + tolerance
            and y + h <= oy + oh + tolerance
        )

    pool = shapes[participant.get("id")]
    boundary = {el.get("id"): el.get("attachedToRef") for el in xp("//bpmn:boundaryEvent")}
    for lane_id, lane in lanes.items():
        assert inside(shapes[lane_id], pool)
        for ref in xp("./bpmn:flowNodeRef/text()", lane):
            assert inside(shapes[ref], shapes[lane_id]), ref
    solid = [(i, shapes[i]) for i in (el.get("id") for el in nodes) if i not in boundary]
    for n, (a, (ax, ay, aw, ah)) in enumerate(solid):
        for b, (bx, by, bw, bh) in solid[n + 1 :]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, f"{a} overlaps {b}"
    for event, host in boundary.items():  # a boundary event sits on its host's border
        ex, ey, ew, eh = shapes[event]
        hx, hy, hw, hh = shapes[host]
        assert hx <= ex + ew / 2 <= hx + hw and abs(ey + eh / 2 - (hy + hh)) < 1
    for f in flows:  # edges start and end on their shapes' borders
        first, last = edges[f.get("id")][0], edges[f.get("id")][-1]
        for (px, py), ref in ((first, f.get("sourceRef")), (last, f.get("targetRef"))):
            x, y, w, h = shapes[ref]
            assert x - 1 <= px <= x + w + 1 and y - 1 <= py <= y + h + 1, (f.get("id"), ref)
        points = edges[f.get("id")]
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(points, points[1:], strict=False)), f.get(
            "id"
        )


# ---------------------------------------------------------------------------------------------------------
# Forms
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename,data,error",
    [
        ("project-request.schema.json", request(budget=1_500_000, businessCase=None), "businessCase"),
        ("project-request.schema.json", request(title="Tiny"), "title"),
        ("project-request.schema.json", request(businessNeed="Too short"), "businessNeed"),
        ("project-request.schema.json", request(targetEnd="31/12/2027"), "targetEnd"),
        ("project-request.schema.json", request(estBudget=0), "estBudget"),
        ("project-request.schema.json", request(risks=((6, 1),)), "risks/0/probability"),
        ("project-request.schema.json", request(objectives=[{"objective": "x"}]), "successCriterion"),
        ("project-request.schema.json", request(contractType="cost-plus"), "contractType"),
        ("intake-review.schema.json", intake("Return"), "intakeComment"),
        ("intake-review.schema.json", intake("Reject", comment="  "), "intakeComment"),
        ("charter-approval.schema.json", approval("Approve-with-conditions"), "conditions"),
        ("charter-approval.schema.json", approval("Approve-with-conditions", conditions=[]), "conditions"),
        ("charter-approval.schema.json", approval("Return"), "rationale"),
        ("charter-approval.schema.json", approval("Reject", rationale=""), "rationale"),
        ("charter-approval.schema.json", {"approvalDecision": "Approve"}, "signature"),
        (
            "charter-approval.schema.json",
            approval("Approve-with-conditions", conditions=[{"text": "t", "owner": "o", "due": "soon"}]),
            "due",
        ),
        ("cm-plan-confirmation.schema.json", {"cmPlanConfirmed": True}, "repositoryUrl"),
        ("cm-plan-confirmation.schema.json", {"cmPlanConfirmed": False}, "cmNotes"),
        ("sqa-assignment.schema.json", {"sqaUser": " "}, "sqaUser"),
        ("project-charter.schema.json", charter(pmAuthority="Total"), "pmAuthority"),
    ],
)
def test_forms_refuse_invalid_input(filename, data, error):
    data = {k: v for k, v in data.items() if v is not None}
    errors = form_errors(filename, data)
    assert errors and any(error in e for e in errors), errors


def test_forms_accept_the_optional_cases():
    assert (
        form_errors("project-request.schema.json", request(budget=999_999.99, risks=(), milestones=[])) == []
    )
    assert form_errors("intake-review.schema.json", intake("Accept")) == []
    assert form_errors("project-charter.schema.json", charter(None)) == []
    assert form_errors("project-charter.schema.json", charter("")) == []
    assert (
        form_errors("cm-plan-confirmation.schema.json", {"cmPlanConfirmed": False, "cmNotes": "No plan"})
        == []
    )


# ---------------------------------------------------------------------------------------------------------
# DMN CharterApproval, row by row
# ---------------------------------------------------------------------------------------------------------


def decide(est_budget, risk_level, contract_type):
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_dmn_file(str(DMN_FILE))
    engine = parser.get_engine("CharterApproval", None)
    task = SimpleNamespace(
        data={"estBudget": est_budget, "riskLevel": risk_level, "contractType": contract_type},
        workflow=SimpleNamespace(script_engine=HarnessScriptEngine()),
    )
    rules = engine.decide(task)
    return rules[0].id, engine.result(task)


PD_STEERING = ["Project Director", "Steering Committee"]
ROW_OUTPUTS = {
    "Rule_budget_5M": (PD_STEERING, True, "Full", "Senior Project Manager"),
    "Rule_high_risk": (PD_STEERING, True, "Full", "Senior Project Manager"),
    "Rule_1M_fixed_price": (["Project Director"], False, "Standard", "Senior Project Manager"),
    "Rule_1M_low_med": (["Project Director"], False, "Standard", "Project Manager"),
    "Rule_200k_low_med": (["Assistant Project Director"], False, "Standard", "Project Manager"),
    "Rule_small_internal": (["Senior Project Manager"], False, "Lite", "Project Manager"),
    "Rule_default": (["Assistant Project Director"], False, "Standard", "Project Manager"),
}


@pytest.mark.parametrize(
    "budget,risk,contract,row",
    [
        (5_000_000, "Low", "internal", "Rule_budget_5M"),
        (12_000_000, "Med", "T&M", "Rule_budget_5M"),
        (50_000, "High", "internal", "Rule_high_risk"),
        (4_999_999, "High", "fixed-price", "Rule_high_risk"),
        (1_000_000, "Low", "fixed-price", "Rule_1M_fixed_price"),
        (4_999_999, "Med", "fixed-price", "Rule_1M_fixed_price"),
        (1_000_000, "Med", "internal", "Rule_1M_low_med"),
        (3_000_000, "Low", "T&M", "Rule_1M_low_med"),
        (200_000, "Low", "internal", "Rule_200k_low_med"),
        (999_999, "Med", "fixed-price", "Rule_200k_low_med"),
        (199_999, "Low", "internal", "Rule_small_internal"),
        (1, "Low", "internal", "Rule_small_internal"),
        (199_999, "Med", "internal", "Rule_default"),
        (150_000, "Low", "fixed-price", "Rule_default"),
        (150_000, "Low", "T&M", "Rule_default"),
    ],
)
def test_charter_approval_rows(budget, risk, contract, row):
    fired, result = decide(budget, risk, contract)
    assert fired == row
    approvers, sequential, profile, grade = ROW_OUTPUTS[row]
    assert result == {
        "approver_roles": approvers,
        "sequential": sequential,
        "gateProfile": profile,
        "pmGrade": grade,
    }
    assert sequential == (len(approvers) > 1)


def test_every_charter_approval_row_is_reachable_and_the_last_is_a_catch_all():
    dmn = etree.parse(str(DMN_FILE))
    table = dmn.xpath("//dmn:decisionTable", namespaces=NS)[0]
    assert table.get("hitPolicy") == "FIRST"
    rows = [r.get("id") for r in table.xpath("./dmn:rule", namespaces=NS)]
    assert rows == list(ROW_OUTPUTS)
    last = table.xpath("./dmn:rule[last()]/dmn:inputEntry/dmn:text", namespaces=NS)
    assert all(not (t.text or "").strip() for t in last)


def test_a_comma_list_input_entry_never_matches_in_spiffworkflow():
    """Why the DMN writes ``? in ("Low", "Med")``: SpiffWorkflow compares ``riskLevel == ("Low", "Med")``."""
    from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine

    task = SimpleNamespace(
        data={"riskLevel": "Low"}, workflow=SimpleNamespace(script_engine=HarnessScriptEngine())
    )
    engine = DMNEngine(None)
    assert engine.evaluate("riskLevel", '"Low", "Med"', task) is False
    assert engine.evaluate("riskLevel", '? in ("Low", "Med")', task) is True


# ---------------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------------


def test_authorised_by_a_single_approver():
    run = Instance(request(budget=500_000, risks=((2, 3), (3, 2))))
    assert run.ready() == ["intake_review"]
    review = run.task("intake_review").data
    assert review["lane_owners"] == {"Sponsor": [STARTER]} and review["requester"] == STARTER
    assert re.fullmatch(r"REQ-\d{8}-[0-9A-F]{6}", review["requestId"])
    assert (review["riskScore"], review["riskLevel"], review["durationMonths"]) == (6, "Low", 11.4)
    assert review["requestWarnings"] == []

    run.complete("intake_review", intake(), lane="Senior Project Manager")
    draft = run.task("draft_charter").data
    assert 0 < len(draft["lessons"]) <= 5
    assert draft["lessons"][0]["projectType"] == "Software development"
    assert (draft["approver_roles"], draft["gateProfile"], draft["pmGrade"]) == (
        ["Assistant Project Director"],
        "Standard",
        "Project Manager",
    )

    run.complete("draft_charter", charter("pat.pm"))
    assert run.ready() == ["assign_sqa", "confirm_cm_plan"]  # the PM is named: no PM assignment
    run.complete("assign_sqa", {"sqaUser": "quinn.sqa"})
    run.complete("confirm_cm_plan", CM_OK)
    before = run.complete("approve_charter", approval(signer="Avery Assistant"), lane="Approver")
    assert before["lane_roles"] == {"Approver": ["Assistant Project Director"]}
    assert before["approver_role"] == "Assistant Project Director"

    run.assert_outcome("Authorised", "end_authorised")
    data = run.data
    assert re.fullmatch(r"PRJ-\d{4}-[0-9A-F]{6}", data["projectId"])
    assert data["project"]["charterBaseline"] == "v1.0" and data["project"]["gatesPlanned"] == 3
    assert data["project"]["conditions"] == [] and data["approvalConditions"] == []
    assert [a["decision"] for a in data["approvals"]] == ["Approve"]
    assert (data["pmName"], data["sqaUser"], data["repositoryUrl"]) == (
        "pat.pm",
        "quinn.sqa",
        CM_OK["repositoryUrl"],
    )
    assert data["escalations"] == 0 and data["charterReturns"] == 0 and data["intakeRound"] == 1
    assert run.services() == [
        "initiation.register_request",
        "initiation.search_lessons",
        "initiation.create_project",
        "notifications.notify",
    ]
    notice = data["authorisationNotice"]
    assert notice["task"] == "create_project" and data["projectId"] in notice["subject"]
    assert {"sam.sponsor", "pat.pm", "quinn.sqa", "lee.ops", "kim.dev"} <= set(notice["recipientsUsers"])


def test_intake_return_then_revision_then_accept():
    run = Instance(request(risks=((2, 3),), milestones=[{"name": "Kick-off", "date": "2026-12-01"}]))
    assert run.task("intake_review").data["requestWarnings"] == [
        "Milestone 'Kick-off' (2026-12-01) is outside the target dates."
    ]
    run.complete("intake_review", intake("Return", comment="Fix the milestone; add the security risk."))
    assert run.ready() == ["revise_request"]
    revise = run.task("revise_request")
    assert revise.task_spec.lane == "Sponsor"
    assert revise.data["lane_owners"] == {"Sponsor": [STARTER]}
    assert form_of(revise.task_spec) == "project-request.schema.json"
    assert revise.data["intakeComment"].startswith("Fix the milestone")

    revised = request(risks=((2, 3), (3, 4)), milestones=[{"name": "Kick-off", "date": "2027-01-11"}])
    run.complete("revise_request", revised, lane="Sponsor")
    review = run.task("intake_review").data
    assert (review["intakeRound"], review["riskScore"], review["riskLevel"]) == (2, 12, "Med")
    assert review["requestWarnings"] == []
    request_id = review["requestId"]

    to_approval(run)
    run.complete("approve_charter", approval())
    run.assert_outcome("Authorised", "end_authorised")
    assert run.data["requestId"] == request_id
    assert run.services().count("initiation.register_request") == 1


def test_intake_reject():
    run = Instance(request())
    run.complete("intake_review", intake("Reject", comment="Duplicates the CRM programme."))
    run.assert_outcome("Rejected", "end_rejected_at_intake")
    assert run.data["outcomeReason"] == "Rejected at intake review: Duplicates the CRM programme."
    assert run.services() == ["initiation.register_request"]


def test_revision_not_done_in_10_days_withdraws_the_request():
    run = Instance(request())
    run.complete("intake_review", intake("Return", comment="Please add a business case."))
    revise_id = run.task("revise_request").id
    run.fire_timer("tmr_revision_timeout", timedelta(days=10))
    run.assert_outcome("Withdrawn", "end_withdrawn")
    assert run.wf.get_task_from_id(revise_id).state == TaskState.CANCELLED
    assert run.ready() == []


def test_sequential_approval_by_project_director_then_steering_committee():
    run = Instance(request(budget=6_000_000))
    to_approval(run)
    first = run.task("approve_charter").data
    assert first["approvalQueue"] == PD_STEERING and first["sequential"] is True
    assert first["lane_roles"] == {"Approver": ["Project Director"]}
    run.complete("approve_charter", approval("Approve", signer="Dana Director"))

    second = run.task("approve_charter").data
    assert second["lane_roles"] == {"Approver": ["Steering Committee"]}
    # the second approver's form starts empty, not with the first approver's answers
    assert (second["approvalDecision"], second["signature"], second["conditions"]) == ("", "", [])
    conditions = [
        {"text": "Security review before design approval", "owner": "lee.ops", "due": "2027-02-15"},
        {"text": "Monthly cost report to the committee", "owner": "pat.pm", "due": "2099-01-01"},
    ]
    run.complete(
        "approve_charter", approval("Approve-with-conditions", signer="Chair Steering", conditions=conditions)
    )

    run.assert_outcome("Authorised-with-conditions", "end_authorised_with_conditions")
    data = run.data
    assert [(a["role"], a["decision"]) for a in data["approvals"]] == [
        ("Project Director", "Approve"),
        ("Steering Committee", "Approve-with-conditions"),
    ]
    assert data["approvalConditions"] == conditions
    tracked = data["project"]["conditions"]
    assert [(c["text"], c["due"], c["trackedTo"]) for c in tracked] == [
        (c["text"], c["due"], "Gate 1") for c in conditions
    ]
    assert tracked[1]["dueAfterGate1"] is True
    assert data["project"]["gatesPlanned"] == 5


@pytest.mark.parametrize("cm_last", [False, True], ids=["cm-first", "cm-last"])
def test_no_pm_named_spm_assigns_one_and_the_sqa_check_sees_them(cm_last):
    run = Instance(request())
    run.complete("intake_review", intake())
    run.complete("draft_charter", charter(pm_name=None))
    assert run.ready() == ["assign_pm", "confirm_cm_plan"]
    assign = run.task("assign_pm")
    assert assign.task_spec.lane == "Senior Project Manager"
    assert "Staffing" in assign.task_spec.documentation
    if not cm_last:
        run.complete("confirm_cm_plan", CM_OK)
    run.complete("assign_pm", {"pmName": "pat.pm"})
    run.complete("assign_sqa", {"sqaUser": "Pat.PM "})
    assert "the project manager" in run.task("assign_sqa").data["sqaValidationError"]
    run.complete("assign_sqa", {"sqaUser": "quinn.sqa"})
    if cm_last:
        run.complete("confirm_cm_plan", CM_OK)
    run.complete("approve_charter", approval())
    run.assert_outcome("Authorised", "end_authorised")
    # the assigned PM survives the parallel join whichever branch finishes last
    assert run.data["pmName"] == "pat.pm" and run.data["sqaUser"] == "quinn.sqa"


def test_sqa_on_the_team_is_refused_until_an_independent_one_is_assigned():
    run = Instance(request())
    run.complete("intake_review", intake())
    run.complete("draft_charter", charter("pat.pm"))
    run.complete("confirm_cm_plan", {"cmPlanConfirmed": False, "cmNotes": "Standard plan to be tailored"})
    for user, reason in [
        ("kim.dev", "a stakeholder (Lead developer)"),
        ("sam.sponsor", "the requester"),
        ("pat.pm", "the project manager"),
    ]:
        run.complete("assign_sqa", {"sqaUser": user}, lane="Quality Director")
        assert run.ready() == ["assign_sqa"]
        error = run.task("assign_sqa").data["sqaValidationError"]
        assert error.startswith(f"{user} cannot be the SQA") and reason in error
    run.complete("assign_sqa", {"sqaUser": "quinn.sqa"})
    assert run.task("approve_charter").data["sqaValidationError"] == ""
    run.complete("approve_charter", approval())
    run.assert_outcome("Authorised", "end_authorised")
    assert (run.data["cmPlanConfirmed"], run.data["cmNotes"]) == (False, "Standard plan to be tailored")
    assert run.data["repositoryUrl"] == ""


def test_approver_returns_the_charter_for_rework():
    run = Instance(request(budget=6_000_000))
    to_approval(run, pm_name=None, sqa="quinn.sqa")  # the SPM assigned pat.pm
    run.complete("approve_charter", approval("Approve"))
    run.complete(
        "approve_charter",
        approval("Return", signer="Chair Steering", rationale="Deliverables are too vague."),
    )
    assert run.ready() == ["revise_charter"]
    revise = run.task("revise_charter")
    assert revise.task_spec.lane == "Project Manager"
    assert form_of(revise.task_spec) == "project-charter.schema.json"
    assert revise.data["lane_owners"] == {"Sponsor": [STARTER], "Project Manager": ["pat.pm"]}
    assert revise.data["charterReturns"] == 1
    assert revise.data["approvals"][-1]["rationale"] == "Deliverables are too vague."
    assert revise.data["deliverables"] == charter()["deliverables"]  # the form starts from the last draft

    # the preparation does not run again, so the revised charter must agree with the team in place
    run.complete("revise_charter", charter(""))
    assert run.ready() == ["revise_charter"]
    assert run.task("revise_charter").data["charterError"] == (
        "Name the project manager (pmName): pat.pm was named before."
    )
    team = charter()["stakeholders"] + [{"name": "quinn.sqa", "role": "Tester", "influence": "L"}]
    run.complete("revise_charter", charter("pat.pm", stakeholders=team))
    assert run.task("revise_charter").data["charterError"].startswith("quinn.sqa is the project's SQA")

    run.complete("revise_charter", charter("robin.pm", deliverables=["Portal", "Migration report"]))
    assert run.ready() == ["approve_charter"]  # straight back to the approvers, first one first
    again = run.task("approve_charter").data
    assert again["approvals"] == [] and again["lane_roles"] == {"Approver": ["Project Director"]}
    assert again["charterError"] == ""
    run.complete("approve_charter", approval())
    run.complete("approve_charter", approval(signer="Chair Steering"))
    run.assert_outcome("Authorised", "end_authorised")
    data = run.data
    assert (data["pmName"], data["sqaUser"], data["charterReturns"]) == ("robin.pm", "quinn.sqa", 1)
    assert len(data["approvals"]) == 2 and data["deliverables"] == ["Portal", "Migration report"]
    assert [
        len(run.completed(t)) for t in ("draft_charter", "assign_pm", "assign_sqa", "confirm_cm_plan")
    ] == [1, 1, 1, 1]


@pytest.mark.parametrize("budget", [500_000, 6_000_000], ids=["single", "first-of-two"])
def test_approver_rejects(budget):
    run = Instance(request(budget=budget))
    to_approval(run)
    run.complete("approve_charter", approval("Reject", rationale="Not aligned with this year's strategy."))
    run.assert_outcome("Rejected", "end_rejected_by_approver")
    assert run.data["outcomeReason"].endswith(": Not aligned with this year's strategy.")
    assert len(run.data["approvals"]) == 1  # a rejection stops the sequence
    assert "initiation.create_project" not in run.services()


def test_reminder_after_5_days_keeps_the_approval_open():
    run = Instance(request())
    to_approval(run)
    approve_id = run.task("approve_charter").id
    run.fire_timer("tmr_approval_reminder", timedelta(days=5))
    assert run.ready() == ["approve_charter"] and run.task("approve_charter").id == approve_id
    reminder = run.completed("send_reminder")[0].data["approvalReminder"]
    assert reminder["recipientsRole"] == ["Assistant Project Director"]
    assert (
        reminder["task"] == "approve_charter"
        and run.task("approve_charter").data["requestId"] in reminder["subject"]
    )
    assert run.completed("end_reminder_sent")
    run.waiting_timer("tmr_approval_escalation")  # the escalation timer still runs
    run.complete("approve_charter", approval())
    run.assert_outcome("Authorised", "end_authorised")


def test_escalation_after_10_days_climbs_the_ladder_and_returns_to_the_approval():
    run = Instance(request(budget=150_000, risks=((1, 2),)))  # small, low risk, internal: SPM approves
    to_approval(run)
    assert run.task("approve_charter").data["lane_roles"] == {"Approver": ["Senior Project Manager"]}
    for level, expected in enumerate(
        ["Assistant Project Director", "Project Director", "Steering Committee", "Steering Committee"],
        start=1,
    ):
        run.fire_timer("tmr_approval_escalation", timedelta(days=10))
        task = run.task("approve_charter")
        assert task.data["lane_roles"] == {"Approver": [expected]}
        assert task.data["escalations"] == level
    assert task.data["lastEscalation"] == {
        "approvalStep": 1,
        "from": ["Steering Committee"],
        "to": ["Steering Committee"],
    }
    run.complete("approve_charter", approval(signer="Chair Steering"))
    run.assert_outcome("Authorised", "end_authorised")
    assert run.data["approvals"][0]["role"] == "Steering Committee"
    assert run.data["approver_roles"] == ["Senior Project Manager"]  # the DMN decision stays on record


def test_escalation_in_a_sequence_keeps_given_approvals_and_merges_duplicates():
    run = Instance(request(budget=6_000_000))
    to_approval(run)
    run.fire_timer("tmr_approval_escalation", timedelta(days=10))  # PD silent: PD, Steering -> Steering
    task = run.task("approve_charter")
    assert task.data["approvalQueue"] == ["Steering Committee"]
    assert task.data["lastEscalation"]["from"] == PD_STEERING
    run.complete("approve_charter", approval(signer="Chair Steering"))
    run.assert_outcome("Authorised", "end_authorised")

    run = Instance(request(budget=6_000_000))
    to_approval(run)
    run.complete("approve_charter", approval())  # PD approves
    run.fire_timer("tmr_approval_escalation", timedelta(days=10))  # Steering silent: stays Steering
    task = run.task("approve_charter")
    assert task.data["approvalQueue"] == PD_STEERING and task.data["approverIndex"] == 1
    assert [a["role"] for a in task.data["approvals"]] == ["Project Director"]
    run.complete("approve_charter", approval(signer="Chair Steering"))
    run.assert_outcome("Authorised", "end_authorised")


# ---------------------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------------------


def test_register_request_ids_are_readable_and_unique():
    first = handlers.register_request("Customer portal", "2027-01-31")
    second = handlers.register_request("Customer portal", "2027-01-31")
    assert first["requestId"].startswith("REQ-20270131-") and first["requestId"] != second["requestId"]
    with pytest.raises(ValueError):
        handlers.register_request("  ", None)


def test_search_lessons_ranks_type_and_keywords():
    lessons = handlers.search_lessons(
        "Infrastructure", "Move the data centre; order hardware from the vendor"
    )
    assert len(lessons) == 5
    assert [lesson["id"] for lesson in lessons[:2]] == ["LL-2020-002", "LL-2020-009"]
    assert lessons == sorted(lessons, key=lambda lesson: -lesson["score"])
    assert handlers.search_lessons("Research", ["fixed-price", "contract"])[0]["id"] == "LL-2024-002"
    assert all(lesson["score"] > 0 for lesson in handlers.search_lessons("Unknown type", "zzz qqq")) is True
    entries = json.loads(handlers.LESSONS_FILE.read_text(encoding="utf-8"))
    assert len(entries) >= 12
    assert {"id", "projectType", "title", "tags", "recommendation"} <= set(entries[0])


def test_create_project_and_notify_return_json_records():
    project = handlers.create_project(
        "REQ-1",
        "Portal",
        "Lite",
        [{"text": "t", "owner": "o", "due": "2027-01-05"}],
        authorised_on="2027-01-01",
    )
    assert (project["kickoffDue"], project["gate1Due"], project["gatesPlanned"]) == (
        "2027-01-15",
        "2027-03-01",
        1,
    )
    assert project["conditions"][0]["due"] == "2027-01-05" and not project["conditions"][0]["dueAfterGate1"]
    with pytest.raises(ValueError):
        handlers.create_project("REQ-1", "Portal", "Huge", [])
    note = notifications.notify("Hello", users=["a", " a ", ""], roles=["SQA"], task="approve_charter")
    assert note["recipientsRole"] == ["SQA"] and note["recipientsUsers"] == ["a"]
    for value in (project, note, handlers.search_lessons("Research", "funding")):
        assert json.loads(json.dumps(value)) == value
