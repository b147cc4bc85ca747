"""Reading and checking BPMN and DMN files: every problem a designer can fix, located and explained.

A finding reads ``file:line:column: error|warning: element-id: message`` (with a hint where one helps), so an
editor can jump to it. :func:`lint` collects them and never raises for what a file contains: any file a modeler
can produce, however broken, gives findings, not a traceback. :func:`parse` runs the same checks and returns the
executable processes, or raises :class:`InvalidFiles` listing the errors (warnings never block a deploy).

SpiffWorkflow checks the XSD only when given a validator, stops at the first XSD error, gives no line for
semantic errors and does not look at scripts, conditions, timers, forms, lanes or handlers at all; this module
closes those gaps so a designer learns about a broken file when validating it, not when an instance reaches the
broken element.

A folder holding the SpiffWorkflow modeler's (spiff-arena's) ``process_model.json`` is one process model: its
BPMN, DMN and form files lie side by side; its ``primary_process_id`` is the process deployed, under its
``display_name``.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from pmoflow.engine import forms, model_code
from pmoflow.engine.errors import InvalidProcess
from pmoflow.engine.limits import column_length
from pmoflow.engine.models import HumanTask, MessageWait, ProcessSchedule, TaskCandidate
from pmoflow.engine.scripting import compile_script, timer_too_far

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
RESERVED_IDS = {"Start", "End"}
MODEL_FILE = "process_model.json"  # the SpiffWorkflow modeler's process-model description
KINDS = {".bpmn": "bpmn", ".bpmn20.xml": "bpmn", ".dmn": "dmn"}  # what a file holds, by the end of its name
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


# -- findings ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One problem, located in a file. `severity` is 'error' (blocks a deploy) or 'warning'."""

    file: str
    line: int
    column: int
    severity: str
    element_id: str | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.element_id or '-'}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class InvalidFiles(InvalidProcess):
    """The files have errors: `details` lists them as text, `findings` every finding (warnings too) as dicts."""

    def __init__(self, message: str, details: list[str], findings: list[dict[str, Any]]) -> None:
        super().__init__(message, details)
        self.findings = findings


def refuse_errors(findings: Iterable[Finding]) -> None:
    """Raise InvalidFiles when any finding is an error."""
    findings = list(findings)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise InvalidFiles(f"{len(errors)} problem(s) found", [str(f) for f in errors],
                           [f.as_dict() for f in findings])


class _Report:
    """Findings collected so far, without duplicates."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self._seen: set[tuple] = set()

    def add(self, file: Path | str, line: Any, column: Any, severity: str, element_id: str | None, message: str,
            hint: str | None = None) -> None:
        finding = Finding(str(file), _positive(line), _positive(column), severity, element_id or None, message,
                          hint)
        key = (finding.file, finding.line, finding.column, finding.severity, finding.element_id, finding.message)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(finding)

    def at(self, src: _Source, el, severity: str, message: str, hint: str | None = None,
           element_id: str | None = None, position: tuple[int, int] | None = None) -> None:
        """A finding at an element's start tag, naming the nearest element of the file's own namespace with an
        id (the task that holds an extension, the flow that holds a condition)."""
        line, column = position or _position(src, el)
        self.add(src.path, line, column, severity, element_id or _owner_id(src, el), message, hint)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


def _positive(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return number if number > 0 else 1


# -- files ------------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Source:
    """One BPMN or DMN file as read: its text and, when it is well-formed XML, its tree."""

    path: Path
    kind: str  # "bpmn" | "dmn"
    text: str | None = None  # None when the file is not UTF-8
    lines: list[str] = field(default_factory=list)
    doc: etree._ElementTree | None = None
    sound: bool = False  # well-formed, the right root, valid against its XSD: safe to hand to SpiffWorkflow
    _by_line: dict[int, list] | None = None

    @property
    def root(self):
        return self.doc.getroot() if self.doc is not None else None

    @property
    def own_namespace(self) -> str | None:
        return BPMN_NS if self.kind == "bpmn" else (etree.QName(self.root).namespace if self.doc is not None else None)

    def elements_at(self, line: int) -> list:
        if self._by_line is None:
            self._by_line = defaultdict(list)
            for el in self.root.iter(etree.Element):
                self._by_line[el.sourceline or 0].append(el)
        return self._by_line.get(line, [])


@dataclass
class _Model:
    """A SpiffWorkflow modeler process-model folder, as its process_model.json describes it."""

    folder: Path
    file: Path
    text: str = ""
    display_name: str | None = None
    primary_process_id: str | None = None
    primary_file_name: str | None = None


@dataclass
class _Unit:
    """Files parsed together: the loose files named on the command line, or one process-model folder."""

    files: list[Path] = field(default_factory=list)
    model: _Model | None = None
    sources: list[_Source] = field(default_factory=list)


def _collect(paths: list[str | Path]) -> list[_Unit]:
    """Group the named files and folders into units; raise only for paths that do not exist or hold nothing."""
    loose = _Unit()
    units: list[_Unit] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidProcess(f"{path}: no such file or folder")
        if path.is_file() and path.name == MODEL_FILE:
            path = path.parent
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if kind_of(f) and not f.is_dir())
            if (path / MODEL_FILE).is_file():
                units.append(_Unit(files=files, model=_Model(folder=path, file=path / MODEL_FILE)))
            else:
                loose.files.extend(files)
        elif kind_of(path):
            loose.files.append(path)
        else:
            raise InvalidProcess(f"{path}: not a .bpmn, .bpmn20.xml or .dmn file")
    if loose.files:
        units.insert(0, loose)
    if not any(unit.files or unit.model for unit in units):
        raise InvalidProcess(f"no .bpmn or .dmn files in {', '.join(map(str, paths))}")
    for unit in units:  # a file named twice (or named and in a named folder) is read once
        unique: dict[Path, Path] = {}
        for file in unit.files:
            unique.setdefault(file.resolve(), file)
        unit.files = list(unique.values())
    return units


def kind_of(path: Path) -> str | None:
    """'bpmn' for a .bpmn or .bpmn20.xml file (as Camunda and other modelers save BPMN 2.0), 'dmn' for .dmn."""
    return next((kind for end, kind in KINDS.items() if path.name.lower().endswith(end)), None)


def collect_files(paths: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """BPMN and DMN files named directly or found (not recursively) in named folders."""
    files = [f for unit in _collect(paths) for f in unit.files]
    return [f for f in files if kind_of(f) == "bpmn"], [f for f in files if kind_of(f) == "dmn"]


def _read_text(path: Path) -> tuple[bytes, str | None]:
    """The bytes and the text (newlines normalised as Path.read_text does), or None when not UTF-8."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, None
    return data, text.replace("\r\n", "\n").replace("\r", "\n")


def _load(path: Path, report: _Report) -> _Source:
    src = _Source(path=path, kind=kind_of(path) or "bpmn")
    try:
        data, src.text = _read_text(path)
    except OSError as exc:
        report.add(path, 1, 1, "error", None, f"cannot read the file: {exc.strerror or exc}")
        return src
    src.lines = (src.text if src.text is not None else data.decode("utf-8", "replace")).split("\n")
    parser = etree.XMLParser(no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser, base_url=str(path))
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position and exc.position[0] else (exc.lineno, exc.offset)
        message = re.sub(r", line \d+, column \d+$", "", exc.msg or "unreadable")
        hint = ("the file is empty, or not an XML file" if "Document is empty" in message
                else "XML nested deeper than 256 levels is refused" if "Excessive depth" in message else None)
        report.add(path, line, column, "error", None, f"not well-formed XML: {message}", hint)
        return src
    except (ValueError, etree.LxmlError) as exc:
        report.add(path, 1, 1, "error", None, f"not well-formed XML: {exc}")
        return src
    if root is None:
        report.add(path, 1, 1, "error", None, "not well-formed XML: no root element")
        return src
    src.doc = root.getroottree()
    if src.text is None:  # well-formed in another encoding: the stored copy must be UTF-8
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = len(data[data.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
            report.add(path, line, column, "error", None, "the file is not UTF-8 text", "save it as UTF-8")
    return src


# -- positions --------------------------------------------------------------------------------------------------

def _position(src: _Source, el) -> tuple[int, int]:
    """The line and column of an element's start tag: lxml gives the line where the start tag ends and no
    column, so look for the tag in the source (best effort; column 1 when not found)."""
    line = el.sourceline if isinstance(el.sourceline, int) and el.sourceline > 0 else 1
    if not isinstance(el.tag, str):
        return line, 1
    qname = etree.QName(el)
    token = f"<{el.prefix}:{qname.localname}" if el.prefix else f"<{qname.localname}"
    pattern = re.compile(re.escape(token) + r"(?=[\s/>]|$)")
    element_id = el.get("id")
    for number in range(min(line, len(src.lines)), max(line - 50, 0), -1):
        text = src.lines[number - 1]
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        for match in matches:
            end = text.find(">", match.start())
            tag_text = text[match.start():end if end >= 0 else len(text)]
            if element_id and re.search(rf"\bid=([\"']){re.escape(element_id)}\1", tag_text):
                return number, match.start() + 1
        return number, matches[0].start() + 1
    return line, 1


def _text_start(src: _Source, el) -> tuple[int, int]:
    """Where an element's text begins: just after the '>' that ends its start tag (and a CDATA opener)."""
    line, column = _position(src, el)
    quote = None
    for number in range(line, min(line + 50, len(src.lines)) + 1):
        text = src.lines[number - 1]
        for i in range(column - 1 if number == line else 0, len(text)):
            char = text[i]
            if quote:
                quote = None if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == ">":
                return number, i + 2 + (9 if text.startswith("<![CDATA[", i + 1) else 0)
    return el.sourceline or 1, 1


def _owner_id(src: _Source, el) -> str | None:
    """The id of the nearest element, from `el` up, in the file's own namespace (BPMN or DMN)."""
    own = src.own_namespace
    node = el
    while node is not None:
        if isinstance(node.tag, str) and node.get("id") and etree.QName(node).namespace == own:
            return node.get("id")
        node = node.getparent()
    return None


def _local(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _bpmn(root, *names: str) -> list:
    return list(root.iter(*[f"{{{BPMN_NS}}}{name}" for name in names]))


def _json_position(text: str, path: Iterable[Any]) -> tuple[int, int]:
    """Best-effort line and column of a key path in JSON text: each key searched after the previous one."""
    offset = 0
    for key in path:
        if isinstance(key, int):
            continue
        found = text.find(json.dumps(str(key)), offset)
        if found < 0:
            break
        offset = found
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


# -- checks of one file -----------------------------------------------------------------------------------------

@dataclass
class _Context:
    report: _Report
    handlers: set[str] | None
    roles: set[str] | None
    form_dirs: list[Path]
    forms_checked: dict[Path, bool] = field(default_factory=dict)


def _check_root_and_schema(ctx: _Context, src: _Source) -> bool:
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
        line, column = _position(src, el) if el is not None else (error.line, 1)
        if error.column and error.column > 0:
            line, column = error.line, error.column
        ctx.report.add(src.path, line, column, "error", _owner_id(src, el) if el is not None else None,
                       f"{kind} schema: {error.message}")
    if len(errors) > MAX_XSD_FINDINGS:
        ctx.report.add(src.path, errors[MAX_XSD_FINDINGS].line, 1, "error", None,
                       f"{kind} schema: {len(errors) - MAX_XSD_FINDINGS} more schema errors not listed")
    return False


def _drop_stray_flows(ctx: _Context, src: _Source) -> None:
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


def _element_for(src: _Source, line: int, message: str):
    """The element an XSD error is about: the one on its line whose tag the message names."""
    candidates = src.elements_at(line)
    named = re.match(r"Element '([^']+)'", message or "")
    if named:
        tag = named.group(1)
        for el in candidates:
            if el.tag == tag or (not tag.startswith("{") and _local(el) == tag.split(":")[-1]):
                return el
    return candidates[0] if candidates else None


def _check_reserved_ids(ctx: _Context, src: _Source) -> None:
    for el in src.root.iter(etree.Element):
        if el.get("id") in RESERVED_IDS and etree.QName(el).namespace == BPMN_NS:
            ctx.report.at(src, el, "error", "the ids 'Start' and 'End' are reserved by SpiffWorkflow (the process "
                          "would parse into an empty one that fails only when run); rename the element",
                          f"for example '{el.get('id').lower()}_{_local(el)}'", element_id=el.get("id"))


EXPRESSIONS = [  # (element, mode, what)
    (f"{{{BPMN_NS}}}conditionExpression", "eval", "condition"),
    (f"{{{BPMN_NS}}}condition", "eval", "condition"),
    (f"{{{BPMN_NS}}}loopCardinality", "eval", "loop cardinality"),
    (f"{{{BPMN_NS}}}completionCondition", "eval", "completion condition"),
    (f"{{{BPMN_NS}}}loopCondition", "eval", "loop condition"),
    (f"{{{SPIFF_NS}}}preScript", "exec", "pre-script"),
    (f"{{{SPIFF_NS}}}postScript", "exec", "post-script"),
]


def _check_expressions(ctx: _Context, src: _Source) -> None:
    """Compile what SpiffWorkflow leaves unchecked until run time: scripts, conditions, parameters."""
    root = src.root
    for task in _bpmn(root, "scriptTask"):
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
            _compile(ctx, src, param, value, "eval", f"service parameter '{param.get('id')}'", _position(src, param))


def _compile_text(ctx: _Context, src: _Source, el, mode: str, what: str, script_format: str = "") -> bool:
    text = el.text or ""
    if not text.strip():
        return True
    return _compile(ctx, src, el, text, mode, what, _text_start(src, el), script_format)


def _compile(ctx: _Context, src: _Source, el, text: str, mode: str, what: str, start: tuple[int, int],
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


def _check_timers(ctx: _Context, src: _Source) -> None:
    """Timer values are Python expressions giving ISO 8601 text: an unquoted PT1H (as Camunda Modeler writes it)
    fails only when the timer starts, and so does a quoted value that is not ISO 8601."""
    for el in _bpmn(src.root, "timeDuration", "timeDate", "timeCycle"):
        kind = _local(el)
        text = (el.text or "").strip()
        example = TIMER_EXAMPLES[kind]
        if not text:
            ctx.report.at(src, el, "error", "the timer has no value", f"write a quoted ISO 8601 value like {example}")
        elif UNQUOTED_TIMER.match(text):
            ctx.report.at(src, el, "error", f"timer value {text} is not quoted: SpiffWorkflow evaluates timers as "
                          f"Python expressions, write \"{text}\"",
                          "Camunda Modeler writes timer values bare; pmoflow needs them quoted",
                          position=_text_start(src, el))
        elif _compile_text(ctx, src, el, "eval", "timer expression"):
            problem = _timer_problem(kind, text)
            if problem:
                ctx.report.at(src, el, "error", f"timer value {text} {problem}",
                              f"write a quoted ISO 8601 value like {example}", position=_text_start(src, el))


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


def _check_operators(ctx: _Context, src: _Source) -> None:
    if ctx.handlers is None:
        return
    for el in src.root.iter(f"{{{SPIFF_NS}}}serviceTaskOperator"):
        operator = el.get("id")
        if operator and operator not in ctx.handlers:
            close = difflib.get_close_matches(operator, sorted(ctx.handlers), n=1)
            hint = (f"did you mean '{close[0]}'?" if close
                    else "register a handler under this name in the process library (@handler, see engine/handlers.py)")
            ctx.report.at(src, el, "error", f"no handler is registered for service operator '{operator}'", hint)


def _check_forms(ctx: _Context, src: _Source) -> None:
    for prop in src.root.iter(f"{{{SPIFF_NS}}}property"):
        name = prop.get("name")
        value = (prop.get("value") or "").strip()
        if name not in FORM_PROPERTIES or not value:
            continue
        if Path(value).name != value or value in (".", ".."):
            ctx.report.at(src, prop, "error", f"form file '{value}' must be a file name, not a path",
                          "put the form next to the BPMN file or in a forms/ folder beside it")
            continue
        found = _find_form(value, src.path, ctx.form_dirs)
        if found is None:
            ctx.report.at(src, prop, "error", f"form file '{value}' not found next to the BPMN or in a forms/ "
                          "folder beside it")
        elif found.resolve() not in ctx.forms_checked:
            ctx.forms_checked[found.resolve()] = True
            _check_form_file(ctx, found, name == "formJsonSchemaFilename", _owner_id(src, prop), src.path)


def _check_form_file(ctx: _Context, path: Path, is_schema: bool, user: str | None, bpmn: Path) -> None:
    """A form must be JSON (a JSON Schema, draft 2020-12; a UI schema is a JSON object)."""
    used = f"used by {user or 'a task'} in {bpmn.name}"
    try:
        _, text = _read_text(path)
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
        line, column = _json_position(text, key_path)
        ctx.report.add(path, line, column, "error", user, message, used)


def _check_lanes(ctx: _Context, src: _Source) -> None:
    """A lane's name is the role whose members do its tasks."""
    for lane in _bpmn(src.root, "lane"):
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


def _check_gateways(ctx: _Context, src: _Source) -> None:
    for container in _bpmn(src.root, *FLOW_CONTAINERS, "adHocSubProcess"):
        outgoing = _outgoing(container)
        for gateway in container.findall(f"{{{BPMN_NS}}}exclusiveGateway"):
            if len(outgoing.get(gateway.get("id"), [])) > 1 and not gateway.get("default"):
                ctx.report.at(src, gateway, "warning", "the exclusive gateway has no default flow: when no "
                              "condition is true the instance stops in error",
                              "mark one outgoing flow as the default flow (its condition is then not needed)")


def _check_reachable(ctx: _Context, src: _Source) -> None:
    """Every flow node must be reachable from a start event (or be a boundary event of a reachable activity,
    an event subprocess, a compensation handler or a link target)."""
    unreachable: set[str] = set()
    for container in _bpmn(src.root, *FLOW_CONTAINERS):
        if container.get("id") in unreachable:
            continue
        nodes = {child.get("id"): child for child in container
                 if isinstance(child.tag, str) and etree.QName(child).namespace == BPMN_NS
                 and _local(child) in FLOW_NODES and child.get("id")}
        starts = [i for i, n in nodes.items() if _local(n) == "startEvent"]
        if not starts:
            continue  # SpiffWorkflow reports a process without a start event
        edges: dict[str, list[str]] = defaultdict(list)
        for source, flows in _outgoing(container).items():
            edges[source].extend(flow.get("targetRef") for flow in flows)
        links: dict[str, list[str]] = defaultdict(list)
        for node_id, node in nodes.items():
            if _local(node) == "boundaryEvent":
                edges[node.get("attachedToRef")].append(node_id)
            for link in node.findall(f"{{{BPMN_NS}}}linkEventDefinition"):
                if _local(node) == "intermediateCatchEvent":
                    links[link.get("name")].append(node_id)
        for node_id, node in nodes.items():
            for link in node.findall(f"{{{BPMN_NS}}}linkEventDefinition"):
                if _local(node) == "intermediateThrowEvent":
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


def _check_foreign_extensions(ctx: _Context, src: _Source) -> None:
    """Camunda (and Zeebe, Activiti, Flowable) extensions are ignored here: say so, and what to use instead."""
    for el in src.root.iter(etree.Element):
        namespace = etree.QName(el).namespace
        if namespace in FOREIGN_NAMESPACES:
            parent = el.getparent()
            if parent is None or etree.QName(parent).namespace not in FOREIGN_NAMESPACES:
                _foreign(ctx, src, el, FOREIGN_NAMESPACES[namespace], _local(el), "element")
        for attribute in el.attrib:
            attribute_ns = etree.QName(attribute).namespace
            if attribute_ns in FOREIGN_NAMESPACES:
                _foreign(ctx, src, el, FOREIGN_NAMESPACES[attribute_ns], etree.QName(attribute).localname,
                         "attribute")


def _foreign(ctx: _Context, src: _Source, el, prefix: str, name: str, what: str) -> None:
    if name in HARMLESS_FOREIGN:
        return
    advice = FOREIGN_ADVICE.get(name)
    hint = advice if advice is None or advice.startswith("no equivalent") else f"use {advice}"
    ctx.report.at(src, el, "warning", f"the {prefix}:{name} {what} is ignored: it belongs to another engine", hint)


# Ids, names, lanes (roles), messages, forms and timer start expressions are stored in String(n) columns:
# PostgreSQL refuses longer ones at deploy or when the task becomes ready, SQLite takes them. Both refuse here.
LENGTHS = {"id": column_length(HumanTask.bpmn_id), "name": column_length(HumanTask.name),
           "lane": column_length(TaskCandidate.name), "message": column_length(MessageWait.message_name),
           "form": column_length(HumanTask.form), "timer": column_length(ProcessSchedule.expression)}


def _check_lengths(ctx: _Context, src: _Source) -> None:
    def refuse(el, what: str, value: str, limit: int) -> None:
        ctx.report.at(src, el, "error", f"the {what} is {len(value)} characters long; pmoflow stores at most {limit}",
                      "shorten it")

    for el in src.root.iter(etree.Element):
        local, namespace = _local(el), etree.QName(el).namespace
        if namespace == BPMN_NS:
            name_limit = {"lane": LENGTHS["lane"], "message": LENGTHS["message"]}.get(local, LENGTHS["name"])
            for attr, what, limit in (("id", "id", LENGTHS["id"]), ("name", f"{local} name", name_limit)):
                if len(el.get(attr) or "") > limit:
                    refuse(el, what, el.get(attr), limit)
            if local == "timerEventDefinition" and _local(el.getparent()) == "startEvent":
                for value in (child.text or "" for child in el):
                    if len(value.strip()) > LENGTHS["timer"]:
                        refuse(el, "timer start expression", value.strip(), LENGTHS["timer"])
        elif namespace == SPIFF_NS and local == "property" and el.get("name", "").startswith("form") \
                and len(el.get("value") or "") > LENGTHS["form"]:
            refuse(el, "form file name", el.get("value"), LENGTHS["form"])


BPMN_CHECKS: tuple[Callable[[_Context, _Source], None], ...] = (
    _check_reserved_ids, _check_expressions, _check_timers, _check_operators, _check_forms, _check_lanes,
    _check_gateways, _check_reachable, _check_foreign_extensions, _check_lengths,
)


def _check_dmn_defaults(ctx: _Context, src: _Source) -> None:
    """SpiffWorkflow sets nothing when no rule matches, so a later step fails obscurely: ask for a default row."""
    for table in src.root.iter(etree.Element):
        if _local(table) != "decisionTable" or (table.get("hitPolicy") or "UNIQUE").upper() == "COLLECT":
            continue
        rules = [child for child in table if _local(child) == "rule"]
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
    entries = [child for child in rule if _local(child) == "inputEntry"]
    texts = ["".join(child.itertext()).strip() for child in entries]
    return all(text in ("", "-") for text in texts)


def _check_dmn_expressions(ctx: _Context, src: _Source) -> None:
    """Input expressions and output entries are Python expressions too (input entries are unary tests)."""
    for el in src.root.iter(etree.Element):
        what = {"inputExpression": "decision input", "outputEntry": "decision output"}.get(_local(el))
        if what is None:
            continue
        for text in (child for child in el if _local(child) == "text"):
            _compile_text(ctx, src, text, "eval", what)


DMN_CHECKS: tuple[Callable[[_Context, _Source], None], ...] = (_check_dmn_defaults, _check_dmn_expressions)


def _run_checks(ctx: _Context, src: _Source, checks: Iterable[Callable[[_Context, _Source], None]]) -> None:
    for check in checks:
        try:
            check(ctx, src)
        except Exception as exc:  # a gap in a check must not hide the file's other findings
            ctx.report.add(src.path, 1, 1, "error", None, f"pmoflow could not finish checking this file "
                           f"({check.__name__.strip('_')}: {type(exc).__name__}: {exc})",
                           "please report this, with the file")


# -- process models ---------------------------------------------------------------------------------------------

def _read_model(model: _Model, report: _Report) -> None:
    try:
        _, text = _read_text(model.file)
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
            report.add(model.file, *_json_position(text, [key]), "error", None, f"{key} must be text")
        elif isinstance(value, str) and value.strip():
            setattr(model, key, value.strip())
    if model.primary_file_name and not (model.folder / model.primary_file_name).is_file():
        report.add(model.file, *_json_position(text, ["primary_file_name"]), "error", None,
                   f"primary_file_name '{model.primary_file_name}' is not in {model.folder}")
    if not model.primary_process_id:
        report.add(model.file, 1, 1, "warning", None, "no primary_process_id: every executable process of the "
                   "folder is deployed", "open the model in the SpiffWorkflow modeler and save its primary file")


# -- SpiffWorkflow's own parse ----------------------------------------------------------------------------------

def _spiff_parse(unit: _Unit, report: _Report) -> SpiffBpmnParser | None:
    """Hand the sound files of a unit to SpiffWorkflow and map each of its errors back to a file and line."""
    sound = [src for src in unit.sources if src.sound]
    if not sound:
        return None
    parser = SpiffBpmnParser()
    for src in sound:
        try:
            if src.kind == "dmn":
                parser.add_dmn_xml(src.root, str(src.path))
            else:
                parser.add_bpmn_xml(src.doc, str(src.path))
        except Exception as exc:  # SpiffWorkflow's errors, and whatever an odd file makes it raise
            _spiff_error(exc, unit, src, report)
    return parser


def _spec(parser: SpiffBpmnParser, process_id: str, unit: _Unit, report: _Report):
    """The process's spec and subprocess specs, or None after reporting why SpiffWorkflow refused them."""
    try:
        return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)
    except Exception as exc:  # SpiffWorkflow's errors, and whatever an odd file makes it raise
        process_parser = parser.get_process_parser(process_id)
        default = next((s for s in unit.sources if process_parser is not None
                        and str(s.path) == getattr(process_parser, "filename", None)), None)
        _spiff_error(exc, unit, default, report)
        return None


SPIFF_HINTS = {  # SpiffWorkflow's messages, and what to do about them
    "is not executable": "set isExecutable=\"true\" on the process",
    "must have an operator": "add <spiffworkflow:serviceTaskOperator id=\"name\">, naming a handler registered in "
                             "workflows/",
    "without condition": "give the flow a condition, or make it the gateway's default flow",
    "No start event found": "add a start event",
    "No DMN Diagram available": "pass the .dmn file that defines the decision along with the BPMN",
    "was not found": "pass the BPMN file that defines the called process along with this one",
}


def _spiff_error(exc: Exception, unit: _Unit, default: _Source | None, report: _Report) -> None:
    message = (str(exc).splitlines() or [type(exc).__name__])[0].strip().rstrip(".").strip() or type(exc).__name__
    hint = None
    if isinstance(exc, RecursionError) or isinstance(exc.__context__, RecursionError) or "recursion" in message:
        message = "SpiffWorkflow's parser ran out of recursion depth: the process is too long in one chain"
        hint = "split a long chain of elements (about 490 or more) with a subprocess or call activity"
    elif not isinstance(exc, ValidationException):
        message = f"SpiffWorkflow could not parse the file: {type(exc).__name__}: {message}"
    else:
        hint = next((h for fragment, h in SPIFF_HINTS.items() if fragment in message), None)
    element_id = getattr(exc, "id", None) or None
    file_name = getattr(exc, "file_name", None)
    candidates = [s for s in unit.sources if str(s.path) == file_name] or ([default] if default else [])
    candidates += [s for s in unit.sources if s.doc is not None and s not in candidates]
    for src in candidates:
        if element_id and src.doc is not None:
            found = src.root.xpath("//*[@id=$id]", id=element_id)
            if found:
                report.at(src, found[0], "error", message, hint, element_id=element_id)
                return
    where = str(candidates[0].path) if candidates else "-"
    report.add(where, getattr(exc, "line_number", None), 1, "error", element_id, message, hint)


# -- the checks of a set of files -------------------------------------------------------------------------------

@dataclass
class ParsedProcess:
    """One executable process ready to deploy: its specs and every file it depends on."""

    process_id: str
    name: str
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]
    sources: dict[str, str] = field(default_factory=dict)  # relative name -> text (bpmn, dmn, forms)
    start_form: str | None = None

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.sources):
            digest.update(name.encode() + b"\0" + self.sources[name].encode() + b"\0")
        return digest.hexdigest()


def check(paths: list[str | Path], handlers: set[str] | None = None, roles: Iterable[str] | None = None,
          form_dirs: list[Path] | None = None) -> tuple[list[ParsedProcess], list[Finding]]:
    """Every finding for the files, and the executable processes when there is no error.

    `handlers`: the registered service operators (None: not checked); `roles`: the organisation's roles for the
    lane check (None: lanes are not checked against roles); `form_dirs`: where forms are looked for after the BPMN's own
    folder and a forms/ folder beside it. Raises InvalidProcess only for paths that do not exist or hold no
    BPMN or DMN file."""
    units = _collect(paths)
    report = _Report()
    ctx = _Context(report, set(handlers) if handlers is not None else None,
                   set(roles) if roles is not None else None, list(form_dirs or []))
    for unit in units:
        if unit.model is not None:
            _read_model(unit.model, report)
            if not any(kind_of(f) == "bpmn" for f in unit.files):
                report.add(unit.model.file, 1, 1, "error", None, "the process model folder holds no .bpmn file")
        for path in unit.files:
            src = _load(path, report)
            unit.sources.append(src)
            if src.doc is None:
                continue
            try:
                src.sound = _check_root_and_schema(ctx, src)
            except Exception as exc:  # lxml on a truly odd tree: report, and keep SpiffWorkflow away from it
                report.add(path, 1, 1, "error", None, f"the file could not be checked against its schema "
                           f"({type(exc).__name__}: {exc})")
            if src.kind == "bpmn" and etree.QName(src.root).namespace == BPMN_NS:
                _run_checks(ctx, src, BPMN_CHECKS)
            elif src.kind == "dmn":
                _run_checks(ctx, src, DMN_CHECKS)
    processes: list[ParsedProcess] = []
    for unit in units:
        processes.extend(_unit_processes(unit, ctx))
    findings = sorted(report.findings, key=lambda f: (f.file, f.line, f.column))
    return ([] if report.has_errors else processes), findings


def _unit_processes(unit: _Unit, ctx: _Context) -> list[ParsedProcess]:
    """SpiffWorkflow's parse of one unit: its errors as findings, and the processes to deploy (a process-model
    folder's primary process, or every executable process of loose files)."""
    report = ctx.report
    try:
        parser = _spiff_parse(unit, report)
        executable = list(parser.get_process_ids()) if parser is not None else []
    except Exception as exc:  # never a traceback for what a file contains
        report.add(unit.files[0] if unit.files else "-", 1, 1, "error", None,
                   f"SpiffWorkflow could not parse the files: {type(exc).__name__}: {exc}")
        return []
    if parser is None:
        return []
    sound_bpmn = [src for src in unit.sources if src.kind == "bpmn" and src.sound]
    for src in sound_bpmn:
        if not _bpmn(src.root, "process"):
            report.at(src, src.root, "warning", "the file defines no process: nothing in it is deployed")
    model = unit.model
    if model is not None and model.primary_process_id:
        if parser.get_process_parser(model.primary_process_id) is None:
            defined = sorted(parser.process_parsers)
            report.add(model.file, *_json_position(model.text, ["primary_process_id"]), "error", None,
                       f"primary_process_id '{model.primary_process_id}' is not a process of the folder's BPMN "
                       f"files (they define: {', '.join(defined) or 'none'})")
            return []
        wanted = [model.primary_process_id]
    else:
        wanted = executable
        processes = [process for src in sound_bpmn for process in _bpmn(src.root, "process")]
        if not executable and processes:
            report.at(next(s for s in sound_bpmn if _bpmn(s.root, "process")), processes[0], "warning",
                      "no executable process: nothing here is deployed", "set isExecutable=\"true\" on the process")
    specs = {}
    for process_id in wanted:
        parsed = _spec(parser, process_id, unit, report)
        if parsed is not None:
            specs[process_id] = parsed
    if report.has_errors:
        return []
    result = []
    for process_id, (spec, subprocess_specs) in specs.items():
        try:
            result.append(_parsed(process_id, spec, subprocess_specs, unit, ctx.form_dirs))
        except Exception as exc:  # e.g. a file that changed while being read
            report.add(spec.file or "-", 1, 1, "error", process_id, f"cannot collect the process's files: "
                       f"{type(exc).__name__}: {exc}")
    return result


def _parsed(process_id: str, spec: BpmnProcessSpec, subprocess_specs: dict, unit: _Unit,
            form_dirs: list[Path]) -> ParsedProcess:
    by_name = {str(src.path): src for src in unit.sources}
    process_files = [by_name[f] for f in dict.fromkeys([spec.file] + [s.file for s in subprocess_specs.values()
                                                                      if s is not None]) if f in by_name]
    sources: dict[str, str] = {}
    for src in sorted(process_files, key=lambda s: str(s.path)):
        sources[src.path.name] = _stored(src.text)
        for name in _form_names(src.doc):
            form = _find_form(name, src.path, form_dirs)
            sources[f"forms/{name}"] = _stored(_read_text(form)[1] if form is not None else None)
    called = {name for src in process_files for name in _called_decisions(src.doc)}
    for src in sorted((s for s in unit.sources if s.kind == "dmn"), key=lambda s: str(s.path)):
        if called & set(src.root.xpath("//*[local-name()='decision']/@id")):
            sources[src.path.name] = _stored(src.text)
    model = unit.model
    name = spec.description or process_id
    if model is not None:
        sources[MODEL_FILE] = model.text
        name = model.display_name or name
    root_src = by_name[spec.file]
    return ParsedProcess(process_id=process_id, name=name, spec=spec, subprocess_specs=subprocess_specs,
                         sources=sources, start_form=_start_form(root_src.doc, process_id))


def _stored(text: str | None) -> str:
    """A file's text as stored with its version: only files the lint read as UTF-8 and found (no error) get here."""
    assert text is not None, "a file that could not be read reached parsing"
    return text


def _called_decisions(doc: etree._ElementTree) -> set[str]:
    """The decisions business rule tasks call: an element in the modeler's current format, an attribute in
    older files. Their DMN files are part of what is deployed (a changed table is a new version)."""
    root = doc.getroot()
    texts = [el.text for el in root.iter(f"{{{SPIFF_NS}}}calledDecisionId")]
    texts += root.xpath("//@spiffworkflow:calledDecisionId", namespaces=NS)
    return {text.strip() for text in texts if text and text.strip()}


def _form_names(doc: etree._ElementTree) -> list[str]:
    return [prop.get("value").strip() for prop in doc.getroot().iter(f"{{{SPIFF_NS}}}property")
            if prop.get("name") in FORM_PROPERTIES and (prop.get("value") or "").strip()]


def _start_form(doc: etree._ElementTree, process_id: str) -> str | None:
    # the plain start event's form: a message start event's form checks message payloads instead
    xpath = ("//bpmn:process[@id=$pid]/bpmn:startEvent[not(bpmn:messageEventDefinition) and "
             "not(bpmn:timerEventDefinition) and not(bpmn:signalEventDefinition)]//spiffworkflow:property"
             "[@name='formJsonSchemaFilename']/@value")
    found = doc.getroot().xpath(xpath, namespaces=NS, pid=process_id)
    return found[0].strip() if found else None


def _find_form(name: str, bpmn_file: Path, form_dirs: list[Path]) -> Path | None:
    for folder in [bpmn_file.parent, bpmn_file.parent.parent / "forms", *form_dirs]:
        if (folder / name).is_file():
            return folder / name
    return None


# -- the entry points -------------------------------------------------------------------------------------------

def lint(paths: list[str | Path], handlers: set[str] | None = None, roles: Iterable[str] | None = None,
         form_dirs: list[Path] | None = None) -> list[Finding]:
    """Every finding for the files, errors and warnings, in file and line order. Never raises for what a file
    contains; raises InvalidProcess only for a path that does not exist or holds no BPMN or DMN file."""
    return check(paths, handlers=handlers, roles=roles, form_dirs=form_dirs)[1]


def parse(paths: list[str | Path], handlers: set[str] | None = None, form_dirs: list[Path] | None = None,
          roles: Iterable[str] | None = None) -> list[ParsedProcess]:
    """Parse and check every file; return the executable processes (for a process-model folder, its primary
    process), or raise InvalidFiles listing every error."""
    processes, findings = check(paths, handlers=handlers, roles=roles, form_dirs=form_dirs)
    refuse_errors(findings)
    return processes
