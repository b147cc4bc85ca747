"""The files a designer hands in (BPMN, DMN, forms, process-model folders) as read, the findings about them, and
where in a file an element sits (line and column), for the parser and the lint."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from pmoflow.engine.errors import InvalidProcess

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
RESERVED_IDS = {"Start", "End"}
MODEL_FILE = "process_model.json"  # the SpiffWorkflow modeler's process-model description
KINDS = {".bpmn": "bpmn", ".bpmn20.xml": "bpmn", ".dmn": "dmn"}  # what a file holds, by the end of its name

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


class Report:
    """Findings collected so far, without duplicates."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self._seen: set[tuple] = set()

    def add(self, file: Path | str, line: Any, column: Any, severity: str, element_id: str | None, message: str,
            hint: str | None = None) -> None:
        finding = Finding(str(file), positive(line), positive(column), severity, element_id or None, message,
                          hint)
        key = (finding.file, finding.line, finding.column, finding.severity, finding.element_id, finding.message)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(finding)

    def at(self, src: Source, el, severity: str, message: str, hint: str | None = None,
           element_id: str | None = None, position: tuple[int, int] | None = None) -> None:
        """A finding at an element's start tag, naming the nearest element of the file's own namespace with an
        id (the task that holds an extension, the flow that holds a condition)."""
        line, column = position or element_position(src, el)
        self.add(src.path, line, column, severity, element_id or owner_id(src, el), message, hint)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


def positive(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return number if number > 0 else 1


# -- files ------------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Source:
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
class Model:
    """A SpiffWorkflow modeler process-model folder, as its process_model.json describes it."""

    folder: Path
    file: Path
    text: str = ""
    display_name: str | None = None
    primary_process_id: str | None = None
    primary_file_name: str | None = None


@dataclass
class Unit:
    """Files parsed together: the loose files named on the command line, or one process-model folder."""

    files: list[Path] = field(default_factory=list)
    model: Model | None = None
    sources: list[Source] = field(default_factory=list)


def collect(paths: Sequence[str | Path]) -> list[Unit]:
    """Group the named files and folders into units; raise only for paths that do not exist or hold nothing."""
    loose = Unit()
    units: list[Unit] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidProcess(f"{path}: no such file or folder")
        if path.is_file() and path.name == MODEL_FILE:
            path = path.parent
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if kind_of(f) and not f.is_dir())
            if (path / MODEL_FILE).is_file():
                units.append(Unit(files=files, model=Model(folder=path, file=path / MODEL_FILE)))
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


def collect_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """BPMN and DMN files named directly or found (not recursively) in named folders."""
    files = [f for unit in collect(paths) for f in unit.files]
    return [f for f in files if kind_of(f) == "bpmn"], [f for f in files if kind_of(f) == "dmn"]


def read_text(path: Path) -> tuple[bytes, str | None]:
    """The bytes and the text (newlines normalised as Path.read_text does), or None when not UTF-8."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, None
    return data, text.replace("\r\n", "\n").replace("\r", "\n")


def load(path: Path, report: Report) -> Source:
    src = Source(path=path, kind=kind_of(path) or "bpmn")
    try:
        data, src.text = read_text(path)
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

def element_position(src: Source, el) -> tuple[int, int]:
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


def text_start(src: Source, el) -> tuple[int, int]:
    """Where an element's text begins: just after the '>' that ends its start tag (and a CDATA opener)."""
    line, column = element_position(src, el)
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


def owner_id(src: Source, el) -> str | None:
    """The id of the nearest element, from `el` up, in the file's own namespace (BPMN or DMN)."""
    own = src.own_namespace
    node = el
    while node is not None:
        if isinstance(node.tag, str) and node.get("id") and etree.QName(node).namespace == own:
            return node.get("id")
        node = node.getparent()
    return None


def local_name(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def bpmn_elements(root, *names: str) -> list:
    return list(root.iter(*[f"{{{BPMN_NS}}}{name}" for name in names]))


def json_position(text: str, path: Iterable[Any]) -> tuple[int, int]:
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


def find_form(name: str, bpmn_file: Path, form_dirs: list[Path]) -> Path | None:
    """Where a form named by a BPMN file is: beside it, in a forms/ folder beside its folder, or in `form_dirs`."""
    for folder in [bpmn_file.parent, bpmn_file.parent.parent / "forms", *form_dirs]:
        if (folder / name).is_file():
            return folder / name
    return None
