"""The checks of one BPMN or DMN file that SpiffWorkflow does not make: schema, reserved ids, scripts and
conditions, timers, operators, forms, lanes, gateways, reachability, foreign extensions, stored lengths and DMN
tables; and the SpiffWorkflow modeler's process-model files. Each check adds findings to a report; none raises."""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.spiff.parser.process import VALIDATOR

from pmoflow.engine import forms, model_code
from pmoflow.engine.limits import string_length
from pmoflow.engine.model_files import (
    BPMN_NS,
    MODEL_FILE,
    RESERVED_IDS,
    SPIFF_NS,
    Model,
    Report,
    Source,
    bpmn_elements,
    element_position,
    find_form,
    json_position,
    local_name,
    owner_id,
    read_text,
    text_start,
)
from pmoflow.engine.models import HumanTask, MessageWait, ProcessSchedule, TaskCandidate
from pmoflow.engine.scripting import compile_script, timer_too_far

FORM_PROPERTIES = ("formJsonSchemaFilename", "formUiSchemaFilename")
UNQUOTED_TIMER = re.compile(r"^\s*(R\d*/)?P[0-9TWYMDHS.,]+\s*$|^\s*\d{4}-\d\d-\d\d(T[0-9:.+\-Z]*)?\s*$")
MAX_XSD_FINDINGS = 50  # per file: a file that is not BPMN at all would otherwise list thousands
PYTHON_FORMATS = {"", "python", "python3", "py", "text/x-python"}
TIMER_EXAMPLES = {"timeDuration": '"P5D" or "PT1H30M"', "timeDate": '"2027-01-31T09:00:00+00:00"',
                  "timeCycle": '"R3/PT1H"'}

FLOW_NODES = {
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask", "businessRuleTask",
    "callActivity", "subProcess", "transaction", "adHocSubProcess", "exclusiveGateway", "parallelGateway",
    "inclusiveGateway", "eventBasedGateway", "complexGateway", "startEvent", "intermediateCatchEvent",
    "intermediateThrowEvent", "endEvent", "boundaryEvent",
}
FLOW_CONTAINERS = ("process", "subProcess", "transaction")

# Extensions of other engines that SpiffWorkflow ignores, and what to use here instead.
FOREIGN_NAMESPACES = {
    "http://camunda.org/schema/1.0/bpmn": "camunda",
    "http://camunda.org/schema/zeebe/1.0": "zeebe",
    "http://activiti.org/bpmn": "activiti",
    "http://flowable.org/bpmn": "flowable",
}
HARMLESS_FOREIGN = {"historyTimeToLive", "versionTag", "isStartableInTasklist", "modelerTemplate",
                    "modelerTemplateVersion", "modelerTemplateIcon", "diagramRelationId"}
_FORM = "a JSON Schema form named by the spiffworkflow:property formJsonSchemaFilename"
_SERVICE = ("a service task with <spiffworkflow:serviceTaskOperator id=\"name\">, the handler registered under "
            "that name in workflows/")
_DATA = "a script task, or a spiffworkflow:preScript / postScript on the task"
_CALLED = ("the callActivity's calledElement attribute: the called process is deployed with its caller, from the "
           "files given together")
_ASYNC = ("no equivalent is needed: each command runs the engine steps in one transaction, and a failed step is "
          "retried with 'pmoflow retry'")
FOREIGN_ADVICE = {
    "formKey": _FORM, "formRef": _FORM, "formData": _FORM, "formField": _FORM, "formDefinition": _FORM,
    "userTaskForm": _FORM,
    "assignee": "lanes named after roles, narrowed with lane_owners in task data",
    "candidateUsers": "lanes named after roles, narrowed with lane_owners in task data",
    "candidateGroups": "a lane named after the role (or lane_roles in task data)",
    "assignmentDefinition": "lanes named after roles, narrowed with lane_owners in task data",
    "candidateStarterGroups": "the start event's lane: starting requires its role",
    "candidateStarterUsers": "the start event's lane: starting requires its role",
    "class": _SERVICE, "delegateExpression": _SERVICE, "expression": _SERVICE, "type": _SERVICE,
    "topic": _SERVICE, "taskDefinition": _SERVICE, "connector": _SERVICE,
    "inputOutput": _DATA, "in": _DATA, "out": _DATA, "ioMapping": _DATA, "input": _DATA, "output": _DATA,
    "executionListener": "a spiffworkflow:preScript or postScript",
    "taskListener": "a spiffworkflow:preScript or postScript",
    "resultVariable": "assigning the variable in the script itself",
    "decisionRef": "spiffworkflow:calledDecisionId", "calledDecision": "spiffworkflow:calledDecisionId",
    "decisionRefBinding": "spiffworkflow:calledDecisionId", "mapDecisionResult": "spiffworkflow:calledDecisionId",
    "asyncBefore": _ASYNC, "asyncAfter": _ASYNC, "async": _ASYNC, "exclusive": _ASYNC, "jobPriority": _ASYNC,
    "failedJobRetryTimeCycle": _ASYNC, "taskPriority": _ASYNC,
    "properties": "spiffworkflow:properties", "property": "spiffworkflow:properties",
    "calledElement": "the callActivity's calledElement attribute",
    "calledElementBinding": _CALLED, "calledElementVersion": _CALLED,
    "variableMappingClass": _DATA, "variableMappingDelegateExpression": _DATA,
    "resource": "the Python script inline in the script task",
    "errorEventDefinition": "an error boundary event on the service task",
}


# -- checks of one file -----------------------------------------------------------------------------------------

@dataclass
class LintContext:
    report: Report
    handlers: set[str] | None
    roles: set[str] | None
    form_dirs: list[Path]
    forms_checked: dict[Path, bool] = field(default_factory=dict)


def check_root_and_schema(ctx: LintContext, src: Source) -> bool:
    """The root element and the XSD (BPMN 2.0 with SpiffWorkflow's extensions, or DMN 1.1-1.3), every error."""
    root = src.root
    qname = etree.QName(root)
    if src.kind == "bpmn":
        if (qname.namespace, qname.localname) != (BPMN_NS, "definitions"):
            ctx.report.at(src, root, "error", f"not a BPMN 2.0 file: the root element is <{qname.localname}> in "
                          f"namespace {qname.namespace or '(none)'}",
                          f"a BPMN 2.0 file starts with <bpmn:definitions xmlns:bpmn=\"{BPMN_NS}\">")
            return False
        _drop_stray_flows(ctx, src)
        VALIDATOR.preprocess(src.doc)
        schema, kind = VALIDATOR.validator, "BPMN"
    else:
        xsd = DMN_SCHEMAS.get(qname.namespace)
        if xsd is None or qname.localname != "definitions":
            ctx.report.at(src, root, "error", f"not a DMN file this engine knows (root <{qname.localname}> in "
                          f"namespace {qname.namespace or '(none)'})",
                          "save it as DMN 1.1, 1.2 or 1.3, as Camunda Modeler and the SpiffWorkflow modeler do")
            return False
        schema, kind = _dmn_schema(xsd), "DMN"
    if schema.validate(src.doc):
        return True
    errors = list(schema.error_log)
    for error in errors[:MAX_XSD_FINDINGS]:
        el = _element_for(src, error.line, error.message)
        line, column = element_position(src, el) if el is not None else (error.line, 1)
        if error.column and error.column > 0:
            line, column = error.line, error.column
        ctx.report.add(src.path, line, column, "error", owner_id(src, el) if el is not None else None,
                       f"{kind} schema: {error.message}")
    if len(errors) > MAX_XSD_FINDINGS:
        ctx.report.add(src.path, errors[MAX_XSD_FINDINGS].line, 1, "error", None,
                       f"{kind} schema: {len(errors) - MAX_XSD_FINDINGS} more schema errors not listed")
    return False


def _drop_stray_flows(ctx: LintContext, src: Source) -> None:
    """A sequence flow without a source or a target (or naming an element that is not there) is what a modeler
    leaves when a connection is dropped half-drawn: nothing can run along it, so it is a warning and is left
    out of what SpiffWorkflow and the schema see (the stored file keeps it)."""
    ids = {el.get("id") for el in src.root.iter(etree.Element) if el.get("id")}
    for flow in list(src.root.iter(f"{{{BPMN_NS}}}sequenceFlow")):
        ends = [flow.get("sourceRef"), flow.get("targetRef")]
        if all(end and end in ids for end in ends):
            continue
        missing = " and ".join(what for what, end in zip(("source", "target"), ends, strict=True)
                               if not end or end not in ids)
        ctx.report.at(src, flow, "warning", f"the sequence flow has no {missing}: it is ignored",
                      "connect it in the modeler, or delete it", element_id=flow.get("id"))
        for ref in src.root.iter(f"{{{BPMN_NS}}}incoming", f"{{{BPMN_NS}}}outgoing"):
            if (ref.text or "").strip() == flow.get("id"):
                ref.getparent().remove(ref)
        flow.getparent().remove(flow)


_DMN_VALIDATORS: dict[str, etree.XMLSchema] = {}


def _dmn_schema(xsd: str) -> etree.XMLSchema:
    if xsd not in _DMN_VALIDATORS:
        try:
            _DMN_VALIDATORS[xsd] = BpmnValidator(xsd).validator
        except etree.XMLSchemaParseError:
            _DMN_VALIDATORS[xsd] = _schema_with_stub_di(xsd)
    return _DMN_VALIDATORS[xsd]


# SpiffWorkflow 3.2 bundles, as DMNDI12.xsd, a copy of the generic DI schema (namespace .../DI/) instead of
# DMN 1.2's diagram interchange (.../DMNDI/), so its DMN 1.2 schema does not compile, though SpiffWorkflow parses
# DMN 1.2 files (the Camunda and SpiffWorkflow modelers' default) without it. Everything but the diagram is
# still checked: the DMNDI import is answered with a stub that takes any diagram content unchecked.
_DMNDI_STUB = """<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified"
  targetNamespace="{namespace}"><xsd:element name="DMNDI"><xsd:complexType><xsd:sequence>
  <xsd:any namespace="##any" processContents="skip" minOccurs="0" maxOccurs="unbounded"/></xsd:sequence>
  <xsd:anyAttribute processContents="skip"/></xsd:complexType></xsd:element></xsd:schema>"""


class _StubDiagramSchema(etree.Resolver):
    def __init__(self, location: str, namespace: str) -> None:
        super().__init__()
        self.location, self.namespace = location, namespace

    def resolve(self, url, pubid, context):
        if url and url.endswith(self.location):
            return self.resolve_string(_DMNDI_STUB.format(namespace=self.namespace), context)
        return None


def _schema_with_stub_di(xsd: str) -> etree.XMLSchema:
    doc = etree.parse(xsd)
    imports = doc.getroot().findall("{http://www.w3.org/2001/XMLSchema}import")
    [di] = [i for i in imports if (i.get("namespace") or "").endswith("/DMNDI/")]
    parser = etree.XMLParser()
    parser.resolvers.add(_StubDiagramSchema(di.get("schemaLocation"), di.get("namespace")))
    return etree.XMLSchema(etree.parse(xsd, parser))


def _element_for(src: Source, line: int, message: str):
    """The element an XSD error is about: the one on its line whose tag the message names."""
    candidates = src.elements_at(line)
    named = re.match(r"Element '([^']+)'", message or "")
    if named:
        tag = named.group(1)
        for el in candidates:
            if el.tag == tag or (not tag.startswith("{") and local_name(el) == tag.split(":")[-1]):
                return el
    return candidates[0] if candidates else None


def _check_reserved_ids(ctx: LintContext, src: Source) -> None:
    for el in src.root.iter(etree.Element):
        if el.get("id") in RESERVED_IDS and etree.QName(el).namespace == BPMN_NS:
            ctx.report.at(src, el, "error", "the ids 'Start' and 'End' are reserved by SpiffWorkflow (the process "
                          "would parse into an empty one that fails only when run); rename the element",
                          f"for example '{el.get('id').lower()}_{local_name(el)}'", element_id=el.get("id"))


EXPRESSIONS = [  # (element, mode, what)
    (f"{{{BPMN_NS}}}conditionExpression", "eval", "condition"),
    (f"{{{BPMN_NS}}}condition", "eval", "condition"),
    (f"{{{BPMN_NS}}}loopCardinality", "eval", "loop cardinality"),
    (f"{{{BPMN_NS}}}completionCondition", "eval", "completion condition"),
    (f"{{{BPMN_NS}}}loopCondition", "eval", "loop condition"),
    (f"{{{SPIFF_NS}}}preScript", "exec", "pre-script"),
    (f"{{{SPIFF_NS}}}postScript", "exec", "post-script"),
]


def _check_expressions(ctx: LintContext, src: Source) -> None:
    """Compile what SpiffWorkflow leaves unchecked until run time: scripts, conditions, parameters."""
    root = src.root
    for task in bpmn_elements(root, "scriptTask"):
        script_format = (task.get("scriptFormat") or "").strip().lower()
        for script in task.findall(f"{{{BPMN_NS}}}script"):
            ok = _compile_text(ctx, src, script, "exec", "script", script_format)
            if ok and script.text and script.text.strip() and script_format not in PYTHON_FORMATS:
                ctx.report.at(src, task, "warning", f"scriptFormat is '{task.get('scriptFormat')}', but scripts "
                              "run as Python", "set scriptFormat=\"python\"", element_id=task.get("id"))
    for tag, mode, what in EXPRESSIONS:
        for el in root.iter(tag):
            _compile_text(ctx, src, el, mode, what)
    for param in root.iter(f"{{{SPIFF_NS}}}parameter"):
        value = param.get("value")
        if value is not None and value.strip():
            _compile(ctx, src, param, value, "eval", f"service parameter '{param.get('id')}'",
                     element_position(src, param))


def _compile_text(ctx: LintContext, src: Source, el, mode: str, what: str, script_format: str = "") -> bool:
    text = el.text or ""
    if not text.strip():
        return True
    return _compile(ctx, src, el, text, mode, what, text_start(src, el), script_format)


def _compile(ctx: LintContext, src: Source, el, text: str, mode: str, what: str, start: tuple[int, int],
             script_format: str = "") -> bool:
    """Compile an expression or script as the sandbox will; report a failure at its line in the file, and every
    call the sandbox would refuse when it runs (model_code)."""
    for refusal in model_code.refusals(text, mode):
        line, column = refusal.line, refusal.column + 1
        ctx.report.at(src, el, "error", f"{what}: {refusal.message}",
                      position=(start[0] + line - 1, start[1] + column - 1 if line == 1 else column))
    try:
        compile_script(text, mode)
        return True
    except SyntaxError as exc:
        line, column = exc.lineno or 1, exc.offset or 1
        numbered = re.search(r"Line (\d+)", exc.msg or "")
        if numbered and line == 1:
            line, column = int(numbered.group(1)), 1
        message = exc.msg or "invalid syntax"
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        line, column, message = 1, 1, f"cannot be compiled: {type(exc).__name__}: {exc}"
    position = (start[0] + line - 1, start[1] + column - 1 if line == 1 else column)
    ctx.report.at(src, el, "error", f"{what}: {message}", _expression_hint(text, script_format),
                  position=position)
    return False


def _expression_hint(text: str, script_format: str = "") -> str | None:
    stripped = text.strip()
    if re.fullmatch(r"[$#]\{.*\}", stripped, re.DOTALL):
        return ("a ${...} expression is Camunda's (JUEL) and is not run here: write the Python expression "
                "itself, e.g. amount > 1000")
    if stripped.startswith("="):
        return "a leading '=' marks a Camunda 8 FEEL expression: write it in Python"
    if script_format and script_format not in PYTHON_FORMATS:
        return f"the script is marked as {script_format}: scripts run as Python"
    return None


def _check_timers(ctx: LintContext, src: Source) -> None:
    """Timer values are Python expressions giving ISO 8601 text: an unquoted PT1H (as Camunda Modeler writes it)
    fails only when the timer starts, and so does a quoted value that is not ISO 8601."""
    for el in bpmn_elements(src.root, "timeDuration", "timeDate", "timeCycle"):
        kind = local_name(el)
        text = (el.text or "").strip()
        example = TIMER_EXAMPLES[kind]
        if not text:
            ctx.report.at(src, el, "error", "the timer has no value", f"write a quoted ISO 8601 value like {example}")
        elif UNQUOTED_TIMER.match(text):
            ctx.report.at(src, el, "error", f"timer value {text} is not quoted: SpiffWorkflow evaluates timers as "
                          f"Python expressions, write \"{text}\"",
                          "Camunda Modeler writes timer values bare; pmoflow needs them quoted",
                          position=text_start(src, el))
        elif _compile_text(ctx, src, el, "eval", "timer expression"):
            problem = _timer_problem(kind, text)
            if problem:
                ctx.report.at(src, el, "error", f"timer value {text} {problem}",
                              f"write a quoted ISO 8601 value like {example}", position=text_start(src, el))


def _timer_problem(kind: str, text: str) -> str | None:
    """Why a constant timer value will not parse as ISO 8601 when the timer starts (None if it will, or if the
    value is computed at run time)."""
    try:
        body = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(body, ast.Constant):
        return None
    if not isinstance(body.value, str):
        return "is not text: a timer needs an ISO 8601 string"
    value = body.value
    far = timer_too_far(value)  # first: SpiffWorkflow's own parse of R/P99999999Y adds its months one by one
    if far:
        return f"{far} (pmoflow's timers reach at most that far ahead; a farther one is almost always a typo)"
    try:
        if kind == "timeDuration":
            TimerEventDefinition.parse_iso_duration(value)
            if not value.upper().startswith("P"):
                raise ValueError
        elif kind == "timeDate":
            if not hasattr(TimerEventDefinition.parse_time_or_duration(value), "tzinfo"):
                raise ValueError
        else:
            TimerEventDefinition.parse_iso_recurring_interval(value)
    except Exception:  # SpiffWorkflow raises bare Exceptions, ValueErrors and AttributeErrors here
        return {"timeDuration": "is not an ISO 8601 duration", "timeDate": "is not an ISO 8601 date and time",
                "timeCycle": "is not an ISO 8601 repeating interval"}[kind]
    return None


def _check_operators(ctx: LintContext, src: Source) -> None:
    if ctx.handlers is None:
        return
    for el in src.root.iter(f"{{{SPIFF_NS}}}serviceTaskOperator"):
        operator = el.get("id")
        if operator and operator not in ctx.handlers:
            close = difflib.get_close_matches(operator, sorted(ctx.handlers), n=1)
            hint = (f"did you mean '{close[0]}'?" if close
                    else "register a handler under this name in the process library (@handler, see engine/handlers.py)")
            ctx.report.at(src, el, "error", f"no handler is registered for service operator '{operator}'", hint)


def _check_forms(ctx: LintContext, src: Source) -> None:
    for prop in src.root.iter(f"{{{SPIFF_NS}}}property"):
        name = prop.get("name")
        value = (prop.get("value") or "").strip()
        if name not in FORM_PROPERTIES or not value:
            continue
        if Path(value).name != value or value in (".", ".."):
            ctx.report.at(src, prop, "error", f"form file '{value}' must be a file name, not a path",
                          "put the form next to the BPMN file or in a forms/ folder beside it")
            continue
        found = find_form(value, src.path, ctx.form_dirs)
        if found is None:
            ctx.report.at(src, prop, "error", f"form file '{value}' not found next to the BPMN or in a forms/ "
                          "folder beside it")
        elif found.resolve() not in ctx.forms_checked:
            ctx.forms_checked[found.resolve()] = True
            _check_form_file(ctx, found, name == "formJsonSchemaFilename", owner_id(src, prop), src.path)


def _check_form_file(ctx: LintContext, path: Path, is_schema: bool, user: str | None, bpmn: Path) -> None:
    """A form must be JSON (a JSON Schema, draft 2020-12; a UI schema is a JSON object)."""
    used = f"used by {user or 'a task'} in {bpmn.name}"
    try:
        _, text = read_text(path)
    except OSError as exc:
        ctx.report.add(path, 1, 1, "error", user, f"cannot read the form: {exc.strerror or exc}", used)
        return
    if text is None:
        ctx.report.add(path, 1, 1, "error", user, "the form is not UTF-8 text", f"save it as UTF-8 ({used})")
        return
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.report.add(path, exc.lineno, exc.colno, "error", user, f"the form is not valid JSON: {exc.msg}", used)
        return
    except RecursionError:
        ctx.report.add(path, 1, 1, "error", user, "the form is not usable JSON: nested too deeply", used)
        return
    if not is_schema:
        if not isinstance(schema, dict):
            ctx.report.add(path, 1, 1, "error", user, "a UI schema must be a JSON object", used)
        return
    if not isinstance(schema, dict | bool):
        ctx.report.add(path, 1, 1, "error", user, "the form is not a JSON Schema: it must be a JSON object", used)
        return
    problem = forms.schema_problem(text)
    if problem is not None:
        key_path, message = problem
        line, column = json_position(text, key_path)
        ctx.report.add(path, line, column, "error", user, message, used)


def _check_lanes(ctx: LintContext, src: Source) -> None:
    """A lane's name is the role whose members do its tasks."""
    for lane in bpmn_elements(src.root, "lane"):
        if not lane.findall(f"{{{BPMN_NS}}}flowNodeRef"):
            continue
        name = (lane.get("name") or "").strip()
        if not name:
            ctx.report.at(src, lane, "warning", "the lane has no name: its tasks go to the person who started "
                          "the instance", "name the lane after a role of the organisation")
        elif ctx.roles is not None and name not in ctx.roles:
            close = difflib.get_close_matches(name, sorted(ctx.roles), n=1, cutoff=0.75)
            hint = (f"did you mean '{close[0]}'? Otherwise set lane_roles or lane_owners in task data" if close
                    else "set lane_roles or lane_owners in task data")
            ctx.report.at(src, lane, "warning", f"lane '{name}' names no role of the organisation: nobody is "
                          "offered its tasks unless task data routes them", hint)


def _outgoing(container) -> dict[str, list]:
    flows: dict[str, list] = defaultdict(list)
    for flow in container.findall(f"{{{BPMN_NS}}}sequenceFlow"):
        flows[flow.get("sourceRef")].append(flow)
    return flows


def _check_gateways(ctx: LintContext, src: Source) -> None:
    for container in bpmn_elements(src.root, *FLOW_CONTAINERS, "adHocSubProcess"):
        outgoing = _outgoing(container)
        for gateway in container.findall(f"{{{BPMN_NS}}}exclusiveGateway"):
            if len(outgoing.get(gateway.get("id"), [])) > 1 and not gateway.get("default"):
                ctx.report.at(src, gateway, "warning", "the exclusive gateway has no default flow: when no "
                              "condition is true the instance stops in error",
                              "mark one outgoing flow as the default flow (its condition is then not needed)")


def _check_reachable(ctx: LintContext, src: Source) -> None:
    """Every flow node must be reachable from a start event (or be a boundary event of a reachable activity,
    an event subprocess, a compensation handler or a link target)."""
    unreachable: set[str] = set()
    for container in bpmn_elements(src.root, *FLOW_CONTAINERS):
        if container.get("id") in unreachable:
            continue
        nodes = {child.get("id"): child for child in container
                 if isinstance(child.tag, str) and etree.QName(child).namespace == BPMN_NS
                 and local_name(child) in FLOW_NODES and child.get("id")}
        starts = [i for i, n in nodes.items() if local_name(n) == "startEvent"]
        if not starts:
            continue  # SpiffWorkflow reports a process without a start event
        edges: dict[str, list[str]] = defaultdict(list)
        for source, flows in _outgoing(container).items():
            edges[source].extend(flow.get("targetRef") for flow in flows)
        links: dict[str, list[str]] = defaultdict(list)
        for node_id, node in nodes.items():
            if local_name(node) == "boundaryEvent":
                edges[node.get("attachedToRef")].append(node_id)
            for link in node.findall(f"{{{BPMN_NS}}}linkEventDefinition"):
                if local_name(node) == "intermediateCatchEvent":
                    links[link.get("name")].append(node_id)
        for node_id, node in nodes.items():
            for link in node.findall(f"{{{BPMN_NS}}}linkEventDefinition"):
                if local_name(node) == "intermediateThrowEvent":
                    edges[node_id].extend(links.get(link.get("name"), []))
        todo = starts + [i for i, n in nodes.items()
                         if n.get("isForCompensation") == "true" or n.get("triggeredByEvent") == "true"]
        seen: set[str] = set()
        while todo:
            node_id = todo.pop()
            if node_id in seen or node_id not in nodes:
                continue
            seen.add(node_id)
            todo.extend(edges.get(node_id, []))
        lost = [node_id for node_id in nodes if node_id not in seen]
        unreachable.update(lost)
        # One warning per unreachable region, at the element where it begins, not one per element in it.
        entered = {target for source in lost for target in edges.get(source, []) if target != source}
        covered: set[str] = set()
        for root in [i for i in lost if i not in entered] + lost:
            if root in covered:
                continue
            region, todo = set(), [root]
            while todo:
                node_id = todo.pop()
                if node_id in region or node_id in covered or node_id not in nodes or node_id in seen:
                    continue
                region.add(node_id)
                todo.extend(edges.get(node_id, []))
            covered |= region
            after = f", nor do the {len(region) - 1} element(s) after it" if len(region) > 1 else ""
            ctx.report.at(src, nodes[root], "warning", f"not reachable from a start event: it never runs{after}",
                          "connect it with a sequence flow, or delete it", element_id=root)


def _check_foreign_extensions(ctx: LintContext, src: Source) -> None:
    """Camunda (and Zeebe, Activiti, Flowable) extensions are ignored here: say so, and what to use instead."""
    for el in src.root.iter(etree.Element):
        namespace = etree.QName(el).namespace
        if namespace in FOREIGN_NAMESPACES:
            parent = el.getparent()
            if parent is None or etree.QName(parent).namespace not in FOREIGN_NAMESPACES:
                _foreign(ctx, src, el, FOREIGN_NAMESPACES[namespace], local_name(el), "element")
        for attribute in el.attrib:
            attribute_ns = etree.QName(attribute).namespace
            if attribute_ns in FOREIGN_NAMESPACES:
                _foreign(ctx, src, el, FOREIGN_NAMESPACES[attribute_ns], etree.QName(attribute).localname,
                         "attribute")


def _foreign(ctx: LintContext, src: Source, el, prefix: str, name: str, what: str) -> None:
    if name in HARMLESS_FOREIGN:
        return
    advice = FOREIGN_ADVICE.get(name)
    hint = advice if advice is None or advice.startswith("no equivalent") else f"use {advice}"
    ctx.report.at(src, el, "warning", f"the {prefix}:{name} {what} is ignored: it belongs to another engine", hint)


# Ids, names, lanes (roles), messages, forms and timer start expressions are stored in String(n) columns:
# PostgreSQL refuses longer ones at deploy or when the task becomes ready, SQLite takes them. Both refuse here.
LENGTHS = {"id": string_length(HumanTask.bpmn_id), "name": string_length(HumanTask.name),
           "lane": string_length(TaskCandidate.name), "message": string_length(MessageWait.message_name),
           "form": string_length(HumanTask.form), "timer": string_length(ProcessSchedule.expression)}


def _check_lengths(ctx: LintContext, src: Source) -> None:
    def refuse(el, what: str, value: str, limit: int) -> None:
        ctx.report.at(src, el, "error", f"the {what} is {len(value)} characters long; pmoflow stores at most {limit}",
                      "shorten it")

    for el in src.root.iter(etree.Element):
        local, namespace = local_name(el), etree.QName(el).namespace
        if namespace == BPMN_NS:
            name_limit = {"lane": LENGTHS["lane"], "message": LENGTHS["message"]}.get(local, LENGTHS["name"])
            for attr, what, limit in (("id", "id", LENGTHS["id"]), ("name", f"{local} name", name_limit)):
                if len(el.get(attr) or "") > limit:
                    refuse(el, what, el.get(attr), limit)
            if local == "timerEventDefinition" and local_name(el.getparent()) == "startEvent":
                for value in (child.text or "" for child in el):
                    if len(value.strip()) > LENGTHS["timer"]:
                        refuse(el, "timer start expression", value.strip(), LENGTHS["timer"])
        elif namespace == SPIFF_NS and local == "property" and el.get("name", "").startswith("form") \
                and len(el.get("value") or "") > LENGTHS["form"]:
            refuse(el, "form file name", el.get("value"), LENGTHS["form"])


BPMN_CHECKS: tuple[Callable[[LintContext, Source], None], ...] = (
    _check_reserved_ids, _check_expressions, _check_timers, _check_operators, _check_forms, _check_lanes,
    _check_gateways, _check_reachable, _check_foreign_extensions, _check_lengths,
)


def _check_dmn_defaults(ctx: LintContext, src: Source) -> None:
    """SpiffWorkflow sets nothing when no rule matches, so a later step fails obscurely: ask for a default row."""
    for table in src.root.iter(etree.Element):
        if local_name(table) != "decisionTable" or (table.get("hitPolicy") or "UNIQUE").upper() == "COLLECT":
            continue
        rules = [child for child in table if local_name(child) == "rule"]
        decision = table.getparent()
        decision_id = decision.get("id") if decision is not None else None
        if not rules:
            ctx.report.at(src, table, "warning", "the decision table has no rules: it never sets anything",
                          element_id=decision_id)
        elif not any(_is_default_rule(rule) for rule in rules):
            ctx.report.at(src, table, "warning", "the decision table has no default row: when no rule matches, "
                          "nothing is set and a later step fails",
                          "add a last rule whose input entries are all '-' (any value)", element_id=decision_id)


def _is_default_rule(rule) -> bool:
    entries = [child for child in rule if local_name(child) == "inputEntry"]
    texts = ["".join(child.itertext()).strip() for child in entries]
    return all(text in ("", "-") for text in texts)


def _check_dmn_expressions(ctx: LintContext, src: Source) -> None:
    """Input expressions and output entries are Python expressions too (input entries are unary tests)."""
    for el in src.root.iter(etree.Element):
        what = {"inputExpression": "decision input", "outputEntry": "decision output"}.get(local_name(el))
        if what is None:
            continue
        for text in (child for child in el if local_name(child) == "text"):
            _compile_text(ctx, src, text, "eval", what)


DMN_CHECKS: tuple[Callable[[LintContext, Source], None], ...] = (_check_dmn_defaults, _check_dmn_expressions)


def run_checks(ctx: LintContext, src: Source, checks: Iterable[Callable[[LintContext, Source], None]]) -> None:
    for check in checks:
        try:
            check(ctx, src)
        except Exception as exc:  # a gap in a check must not hide the file's other findings
            ctx.report.add(src.path, 1, 1, "error", None, f"pmoflow could not finish checking this file "
                           f"({check.__name__.strip('_')}: {type(exc).__name__}: {exc})",
                           "please report this, with the file")


# -- process models ---------------------------------------------------------------------------------------------

def read_model(model: Model, report: Report) -> None:
    try:
        _, text = read_text(model.file)
    except OSError as exc:
        report.add(model.file, 1, 1, "error", None, f"cannot read {MODEL_FILE}: {exc.strerror or exc}")
        return
    if text is None:
        report.add(model.file, 1, 1, "error", None, f"{MODEL_FILE} is not UTF-8 text", "save it as UTF-8")
        return
    model.text = text
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        report.add(model.file, getattr(exc, "lineno", 1), getattr(exc, "colno", 1), "error", None,
                   f"{MODEL_FILE} is not valid JSON: {getattr(exc, 'msg', exc)}")
        return
    if not isinstance(data, dict):
        report.add(model.file, 1, 1, "error", None, f"{MODEL_FILE} must be a JSON object")
        return
    for key in ("display_name", "primary_process_id", "primary_file_name"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            report.add(model.file, *json_position(text, [key]), "error", None, f"{key} must be text")
        elif isinstance(value, str) and value.strip():
            setattr(model, key, value.strip())
    if model.primary_file_name and not (model.folder / model.primary_file_name).is_file():
        report.add(model.file, *json_position(text, ["primary_file_name"]), "error", None,
                   f"primary_file_name '{model.primary_file_name}' is not in {model.folder}")
    if not model.primary_process_id:
        report.add(model.file, 1, 1, "warning", None, "no primary_process_id: every executable process of the "
                   "folder is deployed", "open the model in the SpiffWorkflow modeler and save its primary file")


