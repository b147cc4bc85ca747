"""Reading BPMN and DMN files into SpiffWorkflow specs, with every problem as `file:line: element-id: message`.

SpiffWorkflow checks the XSD only when given a validator, stops at the first XSD error, gives no line for
semantic errors and does not look at scripts, conditions or timers at all; this module closes those gaps so
a designer learns about a broken file at deploy time, not when an instance reaches the broken element.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from pmoflow.engine.errors import InvalidProcess
from pmoflow.engine.scripting import compile_script

NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "spiffworkflow": "http://spiffworkflow.org/bpmn/schema/1.0/core",
}
RESERVED_IDS = {"Start", "End"}
_DMN_VALIDATORS: dict[str, etree.XMLSchema] = {}
UNQUOTED_TIMER = re.compile(r"^\s*(R\d*/)?P[0-9TWYMDHS.]+\s*$|^\s*\d{4}-\d\d-\d\dT")
FORM_PROPERTIES = ("formJsonSchemaFilename", "formUiSchemaFilename")


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


class Findings(list):
    """Errors found so far, each formatted `file:line: element-id: message`."""

    def add(self, file: Path | str, line: int | str | None, element_id: str | None, message: str) -> None:
        self.append(f"{file}:{line or 0}: {element_id or '-'}: {message}")


def collect_files(paths: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """BPMN and DMN files named directly or found (not recursively) in named folders."""
    bpmn, dmn = [], []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidProcess(f"{path}: no such file or folder")
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in files:
            if file.suffix == ".bpmn":
                bpmn.append(file)
            elif file.suffix == ".dmn":
                dmn.append(file)
            elif not path.is_dir():
                raise InvalidProcess(f"{file}: not a .bpmn or .dmn file")
    if not bpmn and not dmn:
        raise InvalidProcess(f"no .bpmn or .dmn files in {', '.join(map(str, paths))}")
    return bpmn, dmn


def _xml(file: Path, findings: Findings) -> etree._ElementTree | None:
    try:
        return etree.parse(str(file))
    except (etree.XMLSyntaxError, OSError) as exc:
        line = getattr(exc, "lineno", None) or (exc.position[0] if hasattr(exc, "position") else 0)
        findings.add(file, line, None, f"not well-formed XML: {exc}")
        return None


def _schema_for(file: Path, doc: etree._ElementTree) -> tuple[etree.XMLSchema | None, str]:
    if file.suffix == ".bpmn":
        VALIDATOR.preprocess(doc)
        return VALIDATOR.validator, "BPMN"
    xsd = DMN_SCHEMAS.get(etree.QName(doc.getroot()).namespace)
    if xsd is None:
        return None, "DMN"
    if xsd not in _DMN_VALIDATORS:
        _DMN_VALIDATORS[xsd] = BpmnValidator(xsd).validator
    return _DMN_VALIDATORS[xsd], "DMN"


def _xsd_errors(file: Path, doc: etree._ElementTree, findings: Findings) -> None:
    """Every schema error, not only the last one SpiffWorkflow's validator reports."""
    schema, kind = _schema_for(file, doc)
    if schema is None:
        findings.add(file, doc.getroot().sourceline, None, f"not a {kind} file this engine knows (namespace "
                                                           f"{etree.QName(doc.getroot()).namespace})")
    elif not schema.validate(doc):
        for error in schema.error_log:
            findings.add(file, error.line, None, f"{kind} schema: {error.message}")


def _line_of(doc: etree._ElementTree, element_id: str) -> int | None:
    found = doc.getroot().xpath("//*[@id=$id]", id=element_id)
    return found[0].sourceline if found else None


def _check_expressions(file: Path, doc: etree._ElementTree, findings: Findings) -> None:
    """Compile what SpiffWorkflow leaves unchecked until run time: scripts, conditions, timers."""
    root = doc.getroot()
    for el in root.xpath("//*[@id]"):
        if el.get("id") in RESERVED_IDS:
            findings.add(file, el.sourceline, el.get("id"),
                         "the ids 'Start' and 'End' are reserved by SpiffWorkflow (the process would parse "
                         "into an empty one); rename the element")
    checks = [
        ("//bpmn:scriptTask/bpmn:script", "exec", "script"),
        ("//spiffworkflow:preScript", "exec", "pre-script"),
        ("//spiffworkflow:postScript", "exec", "post-script"),
        ("//bpmn:conditionExpression", "eval", "condition"),
    ]
    for xpath, mode, what in checks:
        for el in root.xpath(xpath, namespaces=NS):
            _compile(file, el, el.text or "", mode, what, findings)
    for tag in ("timeDuration", "timeDate", "timeCycle"):
        for el in root.xpath(f"//bpmn:{tag}", namespaces=NS):
            text = (el.text or "").strip()
            if UNQUOTED_TIMER.match(text):
                _finding(file, el, findings, f"timer value {text} is not quoted: SpiffWorkflow evaluates timers "
                                             f"as Python expressions, write \"{text}\"")
            else:
                _compile(file, el, text, "eval", "timer expression", findings)


def _finding(file: Path, el, findings: Findings, message: str) -> None:
    """Report at the element's line, naming the nearest BPMN element (not an extension) that has an id."""
    owner = el
    while owner is not None and (owner.get("id") is None or etree.QName(owner).namespace != NS["bpmn"]):
        owner = owner.getparent()
    findings.add(file, el.sourceline, owner.get("id") if owner is not None else None, message)


def _compile(file: Path, el, text: str, mode: str, what: str, findings: Findings) -> None:
    if not text.strip():
        return
    try:
        compile_script(text, mode)
    except SyntaxError as exc:
        _finding(file, el, findings, f"{what}: {exc.msg}")


def _form_properties(doc: etree._ElementTree) -> list:
    return [prop for prop in doc.getroot().xpath("//spiffworkflow:property", namespaces=NS)
            if prop.get("name") in FORM_PROPERTIES and prop.get("value")]


def _form_names(doc: etree._ElementTree) -> list[str]:
    return [prop.get("value") for prop in _form_properties(doc)]


def _start_form(doc: etree._ElementTree, process_id: str) -> str | None:
    xpath = ("//bpmn:process[@id=$pid]/bpmn:startEvent//spiffworkflow:property"
             "[@name='formJsonSchemaFilename']/@value")
    found = doc.getroot().xpath(xpath, namespaces=NS, pid=process_id)
    return found[0] if found else None


def _find_form(name: str, bpmn_file: Path, form_dirs: list[Path]) -> Path | None:
    for folder in [bpmn_file.parent, bpmn_file.parent.parent / "forms", *form_dirs]:
        if (folder / name).is_file():
            return folder / name
    return None


def _operators(doc: etree._ElementTree) -> list[tuple[object, str]]:
    return [(el, el.get("id")) for el in doc.getroot().xpath("//spiffworkflow:serviceTaskOperator", namespaces=NS)]


def parse(paths: list[str | Path], handlers: set[str] | None = None,
          form_dirs: list[Path] | None = None) -> list[ParsedProcess]:
    """Parse and check every file; return the executable processes, or raise InvalidProcess with all errors."""
    bpmn_files, dmn_files = collect_files(paths)
    findings = Findings()
    docs = {}
    for file in bpmn_files + dmn_files:
        doc = _xml(file, findings)
        if doc is None:
            continue
        _xsd_errors(file, doc, findings)
        docs[file] = doc
        if file.suffix == ".bpmn":
            _check_expressions(file, doc, findings)
            for el, operator in _operators(doc):
                if handlers is not None and operator not in handlers:
                    _finding(file, el, findings, f"no handler is registered for service operator '{operator}'")
            for prop in _form_properties(doc):
                if _find_form(prop.get("value"), file, form_dirs or []) is None:
                    _finding(file, prop, findings, f"form file '{prop.get('value')}' not found next to the BPMN "
                                                   "or in a forms/ folder beside it")
    if findings:
        raise InvalidProcess(f"{len(findings)} problem(s) found", list(findings))
    parser = SpiffBpmnParser(validator=VALIDATOR)
    try:
        for file, doc in docs.items():
            if file.suffix == ".dmn":
                parser.add_dmn_xml(doc.getroot(), str(file))
            else:
                parser.add_bpmn_xml(doc, str(file))
        processes = [_parsed(parser, pid, docs, form_dirs or []) for pid in parser.get_process_ids()]
    except ValidationException as exc:
        file = Path(exc.file_name) if exc.file_name else None
        line = exc.line_number or (_line_of(docs[file], exc.id) if file in docs and exc.id else None)
        findings.add(file or "-", line, exc.id, str(exc).splitlines()[0])
    except (SpiffWorkflowException, RecursionError) as exc:
        findings.add("-", None, None, f"SpiffWorkflow could not parse the process: {exc}")
    if findings:
        raise InvalidProcess(f"{len(findings)} problem(s) found", list(findings))
    return processes


def _parsed(parser: SpiffBpmnParser, process_id: str, docs: dict, form_dirs: list[Path]) -> ParsedProcess:
    spec = parser.get_spec(process_id)
    subprocess_specs = parser.get_subprocess_specs(process_id)
    process_files = {Path(spec.file)} | {Path(s.file) for s in subprocess_specs.values() if s is not None}
    sources = {}
    for file in sorted(process_files):
        sources[file.name] = file.read_text()
        for name in _form_names(docs[file]):
            sources[f"forms/{name}"] = _find_form(name, file, form_dirs).read_text()
    for file in sorted(f for f in docs if f.suffix == ".dmn"):
        if _decision_used(file, docs[file], process_files, docs):
            sources[file.name] = file.read_text()
    root_file = Path(spec.file)
    return ParsedProcess(process_id=process_id, name=spec.description or process_id, spec=spec,
                         subprocess_specs=subprocess_specs, sources=sources,
                         start_form=_start_form(docs[root_file], process_id))


def _decision_used(dmn_file: Path, dmn_doc, process_files: set[Path], docs: dict) -> bool:
    decisions = set(dmn_doc.getroot().xpath("//*[local-name()='decision']/@id"))
    for file in process_files:
        called = docs[file].getroot().xpath("//@spiffworkflow:calledDecisionId", namespaces=NS)
        if decisions & set(called):
            return True
    return False
