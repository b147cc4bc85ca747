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

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

from pmoflow.engine.lint import (
    BPMN_CHECKS,
    DMN_CHECKS,
    FORM_PROPERTIES,
    LintContext,
    check_root_and_schema,
    read_model,
    run_checks,
)
from pmoflow.engine.model_files import (
    BPMN_NS,
    MODEL_FILE,
    NS,
    SPIFF_NS,
    Finding,
    InvalidFiles,
    Report,
    Source,
    Unit,
    bpmn_elements,
    collect,
    find_form,
    json_position,
    kind_of,
    load,
    read_text,
    refuse_errors,
)

__all__ = ["BPMN_NS", "NS", "SPIFF_NS", "Finding", "InvalidFiles", "ParsedProcess", "check", "kind_of", "lint", "parse",
           "refuse_errors"]

# -- SpiffWorkflow's own parse ----------------------------------------------------------------------------------

def _spiff_parse(unit: Unit, report: Report) -> SpiffBpmnParser | None:
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


def _spec(parser: SpiffBpmnParser, process_id: str, unit: Unit, report: Report):
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


def _spiff_error(exc: Exception, unit: Unit, default: Source | None, report: Report) -> None:
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


def check(paths: Sequence[str | Path], handlers: set[str] | None = None, roles: Iterable[str] | None = None,
          form_dirs: list[Path] | None = None) -> tuple[list[ParsedProcess], list[Finding]]:
    """Every finding for the files, and the executable processes when there is no error.

    `handlers`: the registered service operators (None: not checked); `roles`: the organisation's roles for the
    lane check (None: lanes are not checked against roles); `form_dirs`: where forms are looked for after the BPMN's own
    folder and a forms/ folder beside it. Raises InvalidProcess only for paths that do not exist or hold no
    BPMN or DMN file."""
    units = collect(paths)
    report = Report()
    ctx = LintContext(report, set(handlers) if handlers is not None else None,
                   set(roles) if roles is not None else None, list(form_dirs or []))
    for unit in units:
        if unit.model is not None:
            read_model(unit.model, report)
            if not any(kind_of(f) == "bpmn" for f in unit.files):
                report.add(unit.model.file, 1, 1, "error", None, "the process model folder holds no .bpmn file")
        for path in unit.files:
            src = load(path, report)
            unit.sources.append(src)
            if src.doc is None:
                continue
            try:
                src.sound = check_root_and_schema(ctx, src)
            except Exception as exc:  # lxml on a truly odd tree: report, and keep SpiffWorkflow away from it
                report.add(path, 1, 1, "error", None, f"the file could not be checked against its schema "
                           f"({type(exc).__name__}: {exc})")
            if src.kind == "bpmn" and etree.QName(src.root).namespace == BPMN_NS:
                run_checks(ctx, src, BPMN_CHECKS)
            elif src.kind == "dmn":
                run_checks(ctx, src, DMN_CHECKS)
    processes: list[ParsedProcess] = []
    for unit in units:
        processes.extend(_unit_processes(unit, ctx))
    findings = sorted(report.findings, key=lambda f: (f.file, f.line, f.column))
    return ([] if report.has_errors else processes), findings


def _unit_processes(unit: Unit, ctx: LintContext) -> list[ParsedProcess]:
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
        if not bpmn_elements(src.root, "process"):
            report.at(src, src.root, "warning", "the file defines no process: nothing in it is deployed")
    model = unit.model
    if model is not None and model.primary_process_id:
        if parser.get_process_parser(model.primary_process_id) is None:
            defined = sorted(parser.process_parsers)
            report.add(model.file, *json_position(model.text, ["primary_process_id"]), "error", None,
                       f"primary_process_id '{model.primary_process_id}' is not a process of the folder's BPMN "
                       f"files (they define: {', '.join(defined) or 'none'})")
            return []
        wanted = [model.primary_process_id]
    else:
        wanted = executable
        processes = [process for src in sound_bpmn for process in bpmn_elements(src.root, "process")]
        if not executable and processes:
            report.at(next(s for s in sound_bpmn if bpmn_elements(s.root, "process")), processes[0], "warning",
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


def _parsed(process_id: str, spec: BpmnProcessSpec, subprocess_specs: dict, unit: Unit,
            form_dirs: list[Path]) -> ParsedProcess:
    by_name = {str(src.path): src for src in unit.sources}
    process_files = [by_name[f] for f in dict.fromkeys([spec.file] + [s.file for s in subprocess_specs.values()
                                                                      if s is not None]) if f in by_name]
    sources: dict[str, str] = {}
    for src in sorted(process_files, key=lambda s: str(s.path)):
        sources[src.path.name] = _stored(src.text)
        for name in _form_names(src.doc):
            form = find_form(name, src.path, form_dirs)
            sources[f"forms/{name}"] = _stored(read_text(form)[1] if form is not None else None)
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


# -- the entry points -------------------------------------------------------------------------------------------

def lint(paths: Sequence[str | Path], handlers: set[str] | None = None, roles: Iterable[str] | None = None,
         form_dirs: list[Path] | None = None) -> list[Finding]:
    """Every finding for the files, errors and warnings, in file and line order. Never raises for what a file
    contains; raises InvalidProcess only for a path that does not exist or holds no BPMN or DMN file."""
    return check(paths, handlers=handlers, roles=roles, form_dirs=form_dirs)[1]


def parse(paths: Sequence[str | Path], handlers: set[str] | None = None, form_dirs: list[Path] | None = None,
          roles: Iterable[str] | None = None) -> list[ParsedProcess]:
    """Parse and check every file; return the executable processes (for a process-model folder, its primary
    process), or raise InvalidFiles listing every error."""
    processes, findings = check(paths, handlers=handlers, roles=roles, form_dirs=form_dirs)
    refuse_errors(findings)
    return processes
