"""Drawing a BPMN diagram (its BPMNDI layout) as a self-contained SVG, optionally marked with an instance's state.

One renderer serves two readers: designers (`pmoflow diagram`) get the plain drawing; auditors (instance
reports) get the same drawing with the path taken, the open tasks and the elements in error coloured in.
The SVG has no external fonts, CSS or scripts: every colour is a presentation attribute. Each drawn BPMN
element is a ``<g data-bpmn-id="..." class="<kinds> <states>">`` holding its shape, markers, label and a
``<title>`` (the hover text), so tests and stylesheets can find it.

    svg = render_svg(Path("bpmn/project_initiation.bpmn").read_bytes(), "project_initiation",
                     completed=["start_request"], taken_flows=["flow_start_prepare"], current=["prepare_request"])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.svg import (
    EVENT_GLYPHS,
    PAPER,
    STATE_COLOURS,
    STATE_EXTRA_WIDTH,
    SVG,
    TASK_GLYPHS,
    Box,
    Canvas,
    Paint,
    add,
    bottom_markers,
    event_glyph,
    fmt,
    num,
    paint,
    points,
    polygon,
    text_width,
    wrap,
)

__all__ = ["render_svg"]

MODEL = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"

FONT = "Arial, Helvetica, sans-serif"
POOL_BAND, LANE_BAND = "#eef1f5", "#f7f8fa"  # the name bands of pools and lanes
MUTED = "#5f6b7a"
MARGIN = 24
TASK_FONT, LABEL_FONT, LANE_FONT, TITLE_FONT = 12.0, 11.0, 12.0, 18.0
BAND_WIDTH = 30.0  # the left band of a pool or lane, where its name is written vertically
LEGEND = (("completed", "Completed"), ("taken", "Path taken"), ("current", "Current (open)"), ("error", "Error"))


ACTIVITIES = {"task", "userTask", "serviceTask", "scriptTask", "businessRuleTask", "sendTask", "receiveTask",
              "manualTask", "callActivity", "subProcess", "transaction", "adHocSubProcess"}
SUB_PROCESSES = {"subProcess", "transaction", "adHocSubProcess"}
EVENTS = {"startEvent", "endEvent", "boundaryEvent", "intermediateCatchEvent", "intermediateThrowEvent"}
THROWING = {"endEvent", "intermediateThrowEvent"}
EVENT_CLASSES = {"intermediateCatchEvent": "intermediate-event", "intermediateThrowEvent": "intermediate-event"}
EDGES = {"sequenceFlow", "messageFlow", "association", "dataInputAssociation", "dataOutputAssociation"}
DEFAULT_SIZES = {"event": (36.0, 36.0), "gateway": (50.0, 50.0), "activity": (100.0, 80.0),
                 "dataObjectReference": (36.0, 50.0), "dataStoreReference": (50.0, 50.0)}


@dataclass
class Shape:
    """A BPMNShape joined to the model element it draws."""

    id: str
    kind: str  # local name of the model element: userTask, lane, participant, ...
    element: etree._Element
    di: etree._Element
    box: Box
    label: Box | None


@dataclass
class Edge:
    """A BPMNEdge joined to the model element it draws."""

    id: str
    kind: str
    element: etree._Element
    points: list[tuple[float, float]]
    label: Box | None





def _bounds(parent: etree._Element | None) -> Box | None:
    """The dc:Bounds directly under `parent`, or None when absent."""
    if parent is None:
        return None
    bounds = parent.find(f"{{{DC}}}Bounds")
    if bounds is None:
        return None
    return Box(num(bounds.get("x")), num(bounds.get("y")), num(bounds.get("width")), num(bounds.get("height")))


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


# ------------------------------------------------------------------------------------------------- model


class DiagramError(InvalidInput, ValueError):
    """Why a BPMN file cannot be drawn: a plain error for the user (`pmoflow diagram`), and a ValueError for
    callers that draw what they can and say why not (the audit report)."""


def _parse(bpmn_xml: str | bytes) -> etree._Element:
    """Parse BPMN text safely: no entity expansion, no DTD loading, no network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    if isinstance(bpmn_xml, str):
        # lxml refuses text that still carries an encoding declaration: the text is already decoded
        bpmn_xml = re.sub(r"^\s*<\?xml[^>]*\?>", "", bpmn_xml, count=1)
    try:
        return etree.fromstring(bpmn_xml, parser)
    except etree.XMLSyntaxError as exc:
        raise DiagramError(f"the BPMN file is not well-formed XML: {exc}") from None


def _no_diagram(what: str) -> DiagramError:
    return DiagramError(f"{what} has no diagram (BPMNDI) to draw: open it in a BPMN modeler (bpmn.io, Camunda Modeler "
                      "or the SpiffWorkflow modeler) and save it to add one")


def _select_plane(root: etree._Element, index: dict[str, etree._Element], process_id: str | None) -> etree._Element:
    """The BPMNPlane drawing `process_id` (directly or through its pool's collaboration); the first by default."""
    planes = [plane for plane in root.iter(f"{{{BPMNDI}}}BPMNPlane") if len(plane)]
    if not planes:
        raise _no_diagram("this BPMN file" if process_id is None else f"process {process_id!r}")
    if process_id is None:
        return planes[0]
    process = index.get(process_id)
    if process is None:
        raise DiagramError(f"there is no process {process_id!r} in this BPMN file")
    wanted = {process_id}
    for participant in root.iter(f"{{{MODEL}}}participant"):
        if participant.get("processRef") == process_id:
            wanted.add(participant.get("id", ""))
            wanted.add(participant.getparent().get("id", ""))
    for plane in planes:
        if plane.get("bpmnElement") in wanted:
            return plane
    children = {child.get("id") for child in process if child.get("id")} | wanted
    for plane in planes:
        if any(shape.get("bpmnElement") in children for shape in plane):
            return plane
    raise _no_diagram(f"process {process_id!r}")


def _size(kind: str, box: Box) -> Box | None:
    """Bounds with a usable size: zero-size shapes get the kind's default size, or are skipped."""
    if box.w > 0 and box.h > 0:
        return box
    family = "event" if kind in EVENTS else "gateway" if kind.endswith("Gateway") else \
        "activity" if kind in ACTIVITIES else kind
    if family not in DEFAULT_SIZES:
        return None
    w, h = DEFAULT_SIZES[family]
    return Box(box.x, box.y, w, h)


def _label_box(di: etree._Element) -> Box | None:
    label = _bounds(di.find(f"{{{BPMNDI}}}BPMNLabel"))
    return label if label is not None and label.w > 0 and label.h > 0 else None


def _collect(plane: etree._Element, index: dict[str, etree._Element]) -> tuple[list[Shape], list[Edge]]:
    """The plane's shapes and edges whose model element exists; each element once, missing DI skipped."""
    shapes: list[Shape] = []
    edges: list[Edge] = []
    seen: set[str] = set()
    for di in plane:
        element_id = di.get("bpmnElement")
        element = index.get(element_id or "")
        if element is None or element_id in seen:
            continue
        kind = _local(element)
        if _local(di) == "BPMNShape":
            box = _bounds(di)
            box = _size(kind, box) if box is not None else None
            if box is not None:
                seen.add(element_id)
                shapes.append(Shape(element_id, kind, element, di, box, _label_box(di)))
        elif _local(di) == "BPMNEdge":
            points = [(num(p.get("x")), num(p.get("y"))) for p in di.iter(f"{{{DI}}}waypoint")]
            if len(points) >= 2:
                seen.add(element_id)
                edges.append(Edge(element_id, kind, element, points, _label_box(di)))
    return shapes, edges


def _definitions(event: etree._Element, index: dict[str, etree._Element]) -> list[str]:
    """The event definitions of an event, as short names: timer, message, error, signal, ..."""
    names = []
    for child in event:
        if not isinstance(child.tag, str):
            continue
        local = _local(child)
        if local == "eventDefinitionRef" and child.text and child.text.strip() in index:
            local = _local(index[child.text.strip()])
        if local.endswith("EventDefinition"):
            names.append(local[: -len("EventDefinition")])
    return names


def _name(element: etree._Element) -> str:
    return (element.get("name") or "").strip()


def _child(element: etree._Element, local: str) -> etree._Element | None:
    return element.find(f"{{{MODEL}}}{local}")


# ---------------------------------------------------------------------------------------------- renderer


class Renderer:
    """Draws one plane: pools and lanes first, then nodes, boundary events, flows and groups on top."""

    def __init__(self, index: dict[str, etree._Element], plane: etree._Element, states: dict[str, set[str]]) -> None:
        self.index = index
        self.plane = plane
        self.states = states
        self.canvas = Canvas()
        self.shapes, self.edges = _collect(plane, self.index)
        if not self.shapes and not self.edges:
            raise DiagramError(f"the diagram plane {plane.get('id')!r} draws no element of this BPMN file")
        self.drawn = {shape.id for shape in self.shapes}
        self.defaults = {el.get("default") for el in self.index.values() if el.get("default")}

    # -- scaffolding

    def states_of(self, element_id: str) -> list[str]:
        return [state for state, ids in self.states.items() if element_id in ids]

    def group(self, element_id: str, classes: list[str], title: str) -> tuple[etree._Element, list[str]]:
        """The <g> of one BPMN element, with its kind and state classes and its hover title."""
        states = self.states_of(element_id)
        names = classes + states
        g = add(self.canvas.layer, "g", data_bpmn_id=element_id, class_=" ".join(dict.fromkeys(names)))
        add(g, "title", title or element_id)
        return g, states

    def render(self, title: str | None) -> str:
        for shape in sorted(self.shapes, key=self.layer_of):
            self.draw_shape(shape)
        for edge in self.edges:
            self.draw_edge(edge)
        for shape in self.shapes:
            if shape.kind == "group":
                self.draw_group_artifact(shape)
        self.draw_header(title)
        self.fit_view(title)
        return self.canvas.serialise()

    def layer_of(self, shape: Shape) -> tuple[int, float]:
        if shape.kind == "participant":
            return 0, 0.0
        if shape.kind == "lane":
            return 1, 0.0
        if self.expanded(shape):
            return 2, -shape.box.w * shape.box.h  # outer containers first
        return (4, 0.0) if shape.kind == "boundaryEvent" else (3, 0.0)

    def expanded(self, shape: Shape) -> bool:
        if shape.kind not in SUB_PROCESSES:
            return False
        flag = shape.di.get("isExpanded")
        if flag is not None:
            return flag == "true"
        return any(child.get("id") in self.drawn for child in shape.element)

    # -- shapes

    def draw_shape(self, shape: Shape) -> None:
        kind = shape.kind
        if kind == "participant":
            self.draw_pool(shape)
        elif kind == "lane":
            self.draw_lane(shape)
        elif kind in ACTIVITIES:
            self.draw_activity(shape)
        elif kind in EVENTS:
            self.draw_event(shape)
        elif kind.endswith("Gateway"):
            self.draw_gateway(shape)
        elif kind in ("dataObjectReference", "dataObject", "dataInput", "dataOutput"):
            self.draw_data_object(shape)
        elif kind == "dataStoreReference":
            self.draw_data_store(shape)
        elif kind == "textAnnotation":
            self.draw_annotation(shape)
        elif kind != "group":  # groups are drawn last, over everything
            self.draw_generic(shape)
        self.canvas.cover_box(shape.box)

    def draw_pool(self, shape: Shape) -> None:
        box, name = shape.box, _name(shape.element)
        g, states = self.group(shape.id, ["pool"], name)
        p = paint(states, 1.5)
        add(g, "rect", x=box.x, y=box.y, width=box.w, height=box.h, fill=p.fill, stroke=p.stroke,
            stroke_width=p.width)
        if not shape.element.get("processRef"):  # a black-box pool: its name in the middle
            self.canvas.text_block(g, wrap(name, box.w - 20, LANE_FONT), box.cx, box.cy, LANE_FONT, weight="bold")
            return
        self.name_band(g, shape, name, p, POOL_BAND, bold=True)

    def draw_lane(self, shape: Shape) -> None:
        name = _name(shape.element)
        g, states = self.group(shape.id, ["lane"], name)
        p = paint(states, 1.0, fill="none")
        box = shape.box
        add(g, "rect", x=box.x, y=box.y, width=box.w, height=box.h, fill=p.fill, stroke=p.stroke,
            stroke_width=p.width)
        self.name_band(g, shape, name, p, LANE_BAND, bold=False)

    def name_band(self, g: etree._Element, shape: Shape, name: str, p: Paint, fill: str, *, bold: bool) -> None:
        """The band at the left (or top, for vertical pools and lanes) where the name is written."""
        box = shape.box
        weight = "bold" if bold else None
        if shape.di.get("isHorizontal") == "false":
            band = Box(box.x, box.y, box.w, min(BAND_WIDTH, box.h))
            add(g, "rect", x=band.x, y=band.y, width=band.w, height=band.h, fill=fill, stroke=p.stroke,
                stroke_width=p.width)
            self.canvas.text_block(g, wrap(name, band.w - 10, LANE_FONT, 1), band.cx, band.cy, LANE_FONT,
                                   weight=weight)
            return
        band = Box(box.x, box.y, min(BAND_WIDTH, box.w), box.h)
        add(g, "rect", x=band.x, y=band.y, width=band.w, height=band.h, fill=fill, stroke=p.stroke,
            stroke_width=p.width)
        lines = wrap(name, max(box.h - 12, 20), LANE_FONT, 2)
        self.canvas.text_block(g, lines, band.cx, band.cy, LANE_FONT, weight=weight,
                               transform=f"rotate(-90 {fmt(band.cx)} {fmt(band.cy)})")

    def activity_classes(self, shape: Shape) -> list[str]:
        kind, element = shape.kind, shape.element
        classes = ["activity"]
        if kind == "task" or kind.endswith("Task"):
            classes.append("task")
        classes.append(_kebab(kind))
        if kind in SUB_PROCESSES:
            classes.append("sub-process")
            classes.append("expanded" if self.expanded(shape) else "collapsed")
            if element.get("triggeredByEvent") == "true":
                classes.append("event-sub-process")
        return classes

    def draw_activity(self, shape: Shape) -> None:
        """A rounded rectangle with the type marker at the top left and loop/[+] markers at the bottom."""
        kind, element, box = shape.kind, shape.element, shape.box
        name = _name(element)
        g, states = self.group(shape.id, self.activity_classes(shape), name)
        expanded = self.expanded(shape)
        width = 4.0 if kind == "callActivity" else 2.0
        p = paint(states, width, fill="none" if expanded else PAPER)
        dashed = "6 3" if element.get("triggeredByEvent") == "true" else None
        add(g, "rect", x=box.x, y=box.y, width=box.w, height=box.h, rx=10, ry=10, fill=p.fill, stroke=p.stroke,
            stroke_width=p.width, stroke_dasharray=dashed)
        if kind == "transaction" and box.w > 8 and box.h > 8:
            add(g, "rect", x=box.x + 3, y=box.y + 3, width=box.w - 6, height=box.h - 6, rx=8, ry=8, fill="none",
                stroke=p.stroke, stroke_width=1.2)
        if kind in TASK_GLYPHS:
            TASK_GLYPHS[kind](g, box.x + 5, box.y + 4, p.stroke)
        bottom = self.bottom_marker_names(shape, expanded)
        bottom_markers(g, box, bottom, p.stroke)
        if expanded:
            self.canvas.text(g, wrap(name, box.w - 20, TASK_FONT, 2), box.x + 10, box.y + 18, TASK_FONT,
                             anchor="start", weight="bold")
            return
        top = box.y + (20 if kind in TASK_GLYPHS else 4)
        low = box.bottom - (18 if bottom else 4)
        max_lines = max(int((low - top) // (TASK_FONT * 1.2)), 1)
        lines = wrap(name, box.w - 10, TASK_FONT, max_lines)
        # centred in the box like a modeler does, unless that would run into the type or loop markers
        reserve = max(top - box.y, box.bottom - low)
        centre = box.cy if len(lines) * TASK_FONT * 1.2 <= box.h - 2 * reserve else (top + low) / 2
        self.canvas.text_block(g, lines, box.cx, centre, TASK_FONT)

    def bottom_marker_names(self, shape: Shape, expanded: bool) -> list[str]:
        names = []
        element = shape.element
        if not expanded and (shape.kind in SUB_PROCESSES or shape.kind == "callActivity"):
            names.append("collapsed")
        if _child(element, "standardLoopCharacteristics") is not None:
            names.append("loop")
        multi = _child(element, "multiInstanceLoopCharacteristics")
        if multi is not None:
            names.append("sequential" if multi.get("isSequential") == "true" else "parallel")
        if shape.kind == "adHocSubProcess":
            names.append("ad-hoc")
        if element.get("isForCompensation") == "true":
            names.append("compensation")
        return names

    def draw_event(self, shape: Shape) -> None:
        """A circle: thin for start, thick for end, double for intermediate and boundary events."""
        kind, element, box = shape.kind, shape.element, shape.box
        definitions = _definitions(element, self.index)
        classes = ["event", EVENT_CLASSES.get(kind, _kebab(kind))]
        if kind in EVENT_CLASSES:
            classes.append(_kebab(kind))
        classes += [f"{definition.lower()}-event" for definition in definitions]
        interrupting = element.get("cancelActivity", "true") != "false" and element.get("isInterrupting",
                                                                                         "true") != "false"
        if not interrupting:
            classes.append("non-interrupting")
        name = _name(element)
        g, states = self.group(shape.id, classes, name)
        p = paint(states, 4.0 if kind == "endEvent" else 1.5)
        cx, cy, r = box.cx, box.cy, min(box.w, box.h) / 2
        dashed = None if interrupting else "5 3"
        add(g, "circle", cx=cx, cy=cy, r=r, fill=p.fill, stroke=p.stroke, stroke_width=p.width,
            stroke_dasharray=dashed)
        if kind not in ("startEvent", "endEvent") and r > 4:
            add(g, "circle", cx=cx, cy=cy, r=r - 3, fill="none", stroke=p.stroke, stroke_width=1.2,
                stroke_dasharray=dashed)
        glyph = "multiple" if len(definitions) > 1 else definitions[0] if definitions else None
        if glyph:
            event_glyph(g, glyph, cx, cy, r, p.stroke, kind in THROWING)
        self.external_label(g, shape, name)

    def draw_gateway(self, shape: Shape) -> None:
        """A diamond with X (exclusive), + (parallel), O (inclusive), * (complex) or the event-based marker."""
        kind, element, box = shape.kind, shape.element, shape.box
        name = _name(element)
        g, states = self.group(shape.id, ["gateway", _kebab(kind)], name)
        p = paint(states, 2.0)
        add(g, "polygon", points=points([(box.cx, box.y), (box.right, box.cy), (box.cx, box.bottom),
                                          (box.x, box.cy)]), fill=p.fill, stroke=p.stroke, stroke_width=p.width,
            stroke_linejoin="round")
        self.gateway_marker(g, shape, p.stroke)
        self.external_label(g, shape, name)

    def gateway_marker(self, g: etree._Element, shape: Shape, colour: str) -> None:
        kind, box = shape.kind, shape.box
        cx, cy, s = box.cx, box.cy, min(box.w, box.h)
        cross = [(cx - s * 0.17, cy - s * 0.17, cx + s * 0.17, cy + s * 0.17),
                 (cx - s * 0.17, cy + s * 0.17, cx + s * 0.17, cy - s * 0.17)]
        plus = [(cx, cy - s * 0.24, cx, cy + s * 0.24), (cx - s * 0.24, cy, cx + s * 0.24, cy)]
        lines: list[tuple[float, float, float, float]] = []
        if kind == "exclusiveGateway" and shape.di.get("isMarkerVisible") != "false":
            lines = cross
        elif kind == "parallelGateway":
            lines = plus
        elif kind == "complexGateway":
            lines = cross + plus
        elif kind == "inclusiveGateway":
            add(g, "circle", cx=cx, cy=cy, r=s * 0.22, fill="none", stroke=colour, stroke_width=2.5)
        elif kind == "eventBasedGateway":
            self.event_based_marker(g, shape, colour)
        for x1, y1, x2, y2 in lines:
            add(g, "line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=colour, stroke_width=max(s * 0.08, 2),
                stroke_linecap="round")

    def event_based_marker(self, g: etree._Element, shape: Shape, colour: str) -> None:
        box, element = shape.box, shape.element
        cx, cy, s = box.cx, box.cy, min(box.w, box.h)
        add(g, "circle", cx=cx, cy=cy, r=s * 0.27, fill="none", stroke=colour, stroke_width=1.2)
        if element.get("instantiate") != "true":
            add(g, "circle", cx=cx, cy=cy, r=s * 0.22, fill="none", stroke=colour, stroke_width=1.2)
        if element.get("eventGatewayType") == "Parallel":
            d = s * 0.13
            add(g, "path", d=f"M{fmt(cx)},{fmt(cy - d)} v{fmt(2 * d)} M{fmt(cx - d)},{fmt(cy)} h{fmt(2 * d)}",
                stroke=colour, stroke_width=2)
        else:
            add(g, "polygon", points=polygon(cx, cy, s * 0.25, EVENT_GLYPHS["multiple"]), fill="none",
                stroke=colour, stroke_width=1.3)

    def external_label(self, g: etree._Element, shape: Shape, name: str) -> None:
        """The name of an event, gateway or data element: in its BPMNLabel bounds, else centred under the shape."""
        if not name:
            return
        if shape.label is not None:
            label = shape.label
            lines = wrap(name, max(label.w, 90), LABEL_FONT)
            self.canvas.text(g, lines, label.cx, label.y + LABEL_FONT, LABEL_FONT, halo=True)
            return
        lines = wrap(name, max(shape.box.w * 2.5, 90), LABEL_FONT)
        self.canvas.text(g, lines, shape.box.cx, shape.box.bottom + 4 + LABEL_FONT, LABEL_FONT, halo=True)

    def draw_data_object(self, shape: Shape) -> None:
        box, element = shape.box, shape.element
        name = _name(element)
        state = _child(element, "dataState")
        if state is not None and state.get("name"):
            name = f"{name} [{state.get('name')}]".strip()
        g, states = self.group(shape.id, ["data", "data-object"], name)
        p = paint(states, 1.5)
        fold = min(box.w, box.h) * 0.3
        add(g, "path", d=f"M{fmt(box.x)},{fmt(box.y)} h{fmt(box.w - fold)} l{fmt(fold)},{fmt(fold)} "
                         f"v{fmt(box.h - fold)} h{fmt(-box.w)} z m{fmt(box.w - fold)},0 v{fmt(fold)} h{fmt(fold)}",
            fill=p.fill, stroke=p.stroke, stroke_width=p.width, stroke_linejoin="round")
        self.external_label(g, shape, name)

    def draw_data_store(self, shape: Shape) -> None:
        box = shape.box
        name = _name(shape.element)
        g, states = self.group(shape.id, ["data", "data-store"], name)
        p = paint(states, 1.5)
        ry = min(box.h * 0.12, 8)
        add(g, "path", d=f"M{fmt(box.x)},{fmt(box.y + ry)} a{fmt(box.w / 2)},{fmt(ry)} 0 0 1 {fmt(box.w)},0 "
                         f"v{fmt(box.h - 2 * ry)} a{fmt(box.w / 2)},{fmt(ry)} 0 0 1 {fmt(-box.w)},0 z",
            fill=p.fill, stroke=p.stroke, stroke_width=p.width)
        for offset in (0, ry * 0.8):
            add(g, "path", d=f"M{fmt(box.x)},{fmt(box.y + ry + offset)} a{fmt(box.w / 2)},{fmt(ry)} 0 0 0 "
                             f"{fmt(box.w)},0", fill="none", stroke=p.stroke, stroke_width=1.2)
        self.external_label(g, shape, name)

    def draw_annotation(self, shape: Shape) -> None:
        box = shape.box
        text_el = _child(shape.element, "text")
        text = (text_el.text or "").strip() if text_el is not None else ""
        g, states = self.group(shape.id, ["artifact", "text-annotation"], text)
        p = paint(states, 1.5, fill="none")
        add(g, "path", d=f"M{fmt(box.x + 10)},{fmt(box.y)} h-10 v{fmt(box.h)} h10", fill="none", stroke=p.stroke,
            stroke_width=p.width)
        lines = wrap(text, max(box.w - 10, 40), LABEL_FONT, max(int(box.h // (LABEL_FONT * 1.2)), 1))
        self.canvas.text(g, lines, box.x + 5, box.y + LABEL_FONT + 3, LABEL_FONT, anchor="start")

    def draw_group_artifact(self, shape: Shape) -> None:
        box = shape.box
        value = self.index.get(shape.element.get("categoryValueRef") or "")
        name = (value.get("value") or "").strip() if value is not None else ""
        g, states = self.group(shape.id, ["artifact", "group"], name)
        p = paint(states, 1.5, fill="none")
        add(g, "rect", x=box.x, y=box.y, width=box.w, height=box.h, rx=10, ry=10, fill="none", stroke=p.stroke,
            stroke_width=p.width, stroke_dasharray="8 4 2 4")
        label = shape.label
        if label is not None:
            self.canvas.text(g, wrap(name, max(label.w, 90), LABEL_FONT), label.cx, label.y + LABEL_FONT, LABEL_FONT,
                             halo=True)
        else:
            self.canvas.text(g, wrap(name, box.w - 10, LABEL_FONT), box.cx, box.y + LABEL_FONT + 4, LABEL_FONT,
                             halo=True)
        self.canvas.cover_box(box)

    def draw_generic(self, shape: Shape) -> None:
        """Anything else with a shape (an unknown extension element): a plain rectangle with its name."""
        box = shape.box
        name = _name(shape.element)
        g, states = self.group(shape.id, [_kebab(shape.kind)], name)
        p = paint(states, 1.5)
        add(g, "rect", x=box.x, y=box.y, width=box.w, height=box.h, fill=p.fill, stroke=p.stroke,
            stroke_width=p.width)
        self.canvas.text_block(g, wrap(name, max(box.w - 10, 40), TASK_FONT), box.cx, box.cy, TASK_FONT)

    # -- edges

    def edge_classes(self, edge: Edge) -> list[str]:
        kind, element = edge.kind, edge.element
        if kind == "sequenceFlow":
            classes = ["flow", "sequence-flow"]
            if edge.id in self.defaults:
                classes.append("default-flow")
            if _child(element, "conditionExpression") is not None:
                classes.append("conditional-flow")
            return classes
        if kind == "messageFlow":
            return ["flow", "message-flow"]
        if kind in ("dataInputAssociation", "dataOutputAssociation"):
            return ["association", "data-association", _kebab(kind)]
        return [_kebab(kind)] if kind != "association" else ["association"]

    def edge_title(self, edge: Edge) -> str:
        title = _name(edge.element)
        condition = _child(edge.element, "conditionExpression")
        if condition is not None and (condition.text or "").strip():
            title = f"{title}\n{condition.text.strip()}".strip()
        return title

    def draw_edge(self, edge: Edge) -> None:
        """A polyline through the waypoints, with the arrowheads and marks of its kind, and its label."""
        kind, element = edge.kind, edge.element
        if kind not in EDGES and not kind.endswith("Flow"):
            return
        g, states = self.group(edge.id, self.edge_classes(edge), self.edge_title(edge))
        p = paint(states, 1.5 if kind == "sequenceFlow" else 1.3, fill="none")
        attrs: dict[str, object] = {"fill": "none", "stroke": p.stroke, "stroke_width": p.width,
                                    "stroke_linejoin": "round"}
        if kind == "sequenceFlow":
            attrs["marker_end"] = self.canvas.marker("arrow", p.stroke)
            source = self.index.get(element.get("sourceRef") or "")
            if _child(element, "conditionExpression") is not None and source is not None \
                    and not _local(source).endswith("Gateway"):
                attrs["marker_start"] = self.canvas.marker("diamond", p.stroke)
        elif kind == "messageFlow":
            attrs.update(stroke_dasharray="8 5", marker_start=self.canvas.marker("circle", p.stroke),
                         marker_end=self.canvas.marker("open-arrow", p.stroke))
        else:
            attrs["stroke_dasharray"] = "2 4"
            attrs["stroke_linecap"] = "round"
            if kind != "association" or element.get("associationDirection") in ("One", "Both"):
                attrs["marker_end"] = self.canvas.marker("line-arrow", p.stroke)
        add(g, "polyline", None, points=points(edge.points), **attrs)
        if edge.id in self.defaults and kind == "sequenceFlow":
            self.default_slash(g, edge.points, p.stroke)
        for x, y in edge.points:
            self.canvas.cover(x, y, x, y)
        self.edge_label(g, edge)

    def default_slash(self, g: etree._Element, points: list[tuple[float, float]], colour: str) -> None:
        """The slash across the start of a default flow."""
        (x0, y0), (x1, y1) = points[0], points[1]
        length = math.hypot(x1 - x0, y1 - y0)
        if length == 0:
            return
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        along = min(12.0, length / 2)
        px, py = x0 + ux * along, y0 + uy * along
        dx, dy = (-uy + ux * 0.6) * 6, (ux + uy * 0.6) * 6
        add(g, "line", x1=px - dx, y1=py - dy, x2=px + dx, y2=py + dy, stroke=colour, stroke_width=1.8)

    def edge_label(self, g: etree._Element, edge: Edge) -> None:
        """The flow's name (a condition label): in its BPMNLabel bounds, else beside the middle of the line."""
        name = _name(edge.element)
        if not name:
            return
        lines = wrap(name, max(edge.label.w, 90) if edge.label else 120, LABEL_FONT)
        if edge.label is not None:
            self.canvas.text(g, lines, edge.label.cx, edge.label.y + LABEL_FONT, LABEL_FONT, halo=True)
            return
        x, y = _midpoint(edge.points)
        self.canvas.text(g, lines, x + 5, y - 6, LABEL_FONT, anchor="start", halo=True)

    # -- header and view box

    def draw_header(self, title: str | None) -> None:
        """The title and, when any state is given, the legend, above the diagram."""
        extent = self.canvas.extent or [0.0, 0.0, 0.0, 0.0]
        show_legend = any(self.states.values())
        if not title and not show_legend:
            return
        header = add(self.canvas.root, "g", class_="header")
        x, y = extent[0], extent[1] - 20
        if title:
            self.canvas.text(header, [title], x, y - (22 if show_legend else 0), TITLE_FONT, anchor="start",
                             weight="bold")
        if show_legend:
            self.draw_legend(header, x, y)

    def draw_legend(self, parent: etree._Element, x: float, baseline: float) -> None:
        legend = add(parent, "g", class_="legend")
        add(legend, "title", "Legend")
        self.canvas.text(legend, ["Legend:"], x, baseline, LABEL_FONT, anchor="start", colour=MUTED)
        x += 52
        for state, text in LEGEND:
            stroke, tint = STATE_COLOURS[state]
            item = add(legend, "g", class_=f"legend-item legend-{state}")
            if state == "taken":
                add(item, "line", x1=x, y1=baseline - 4, x2=x + 26, y2=baseline - 4, stroke=stroke,
                    stroke_width=1.5 + STATE_EXTRA_WIDTH[state], marker_end=self.canvas.marker("arrow", stroke))
            else:
                add(item, "rect", x=x, y=baseline - 12, width=28, height=16, rx=4, ry=4, fill=tint, stroke=stroke,
                    stroke_width=2 + STATE_EXTRA_WIDTH[state])
            self.canvas.text(item, [text], x + 36, baseline, LABEL_FONT, anchor="start")
            x += 36 + text_width(text, LABEL_FONT) + 22

    def fit_view(self, title: str | None) -> None:
        extent = self.canvas.extent or [0.0, 0.0, 100.0, 100.0]
        x0, y0 = extent[0] - MARGIN, extent[1] - MARGIN
        width, height = extent[2] - extent[0] + 2 * MARGIN, extent[3] - extent[1] + 2 * MARGIN
        root = self.canvas.root
        root.set("viewBox", f"{fmt(x0)} {fmt(y0)} {fmt(width)} {fmt(height)}")
        root.set("width", fmt(width))
        root.set("height", fmt(height))
        root.set("font-family", FONT)
        root.set("role", "img")
        diagram_name = title or self.plane_name()
        root.insert(0, etree.Element(f"{{{SVG}}}title"))
        root[0].text = diagram_name
        add(root, "rect", x=x0, y=y0, width=width, height=height, fill=PAPER, class_="background")
        root.insert(1, root[-1])  # the white background goes under everything

    def plane_name(self) -> str:
        element = self.index.get(self.plane.get("bpmnElement") or "")
        if element is None:
            return "BPMN diagram"
        name = _name(element)
        if not name and _local(element) == "collaboration":
            names = [_name(p) for p in element.iter(f"{{{MODEL}}}participant") if _name(p)]
            name = ", ".join(names)
        return name or element.get("id", "BPMN diagram")


def _midpoint(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The point halfway along a polyline."""
    lengths = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:], strict=False)]
    remaining = sum(lengths) / 2
    for (a, b), length in zip(zip(points, points[1:], strict=False), lengths, strict=True):
        if length and remaining <= length:
            t = remaining / length
            return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        remaining -= length
    return points[0]


def _ids(values: Iterable[str] | str) -> set[str]:
    """A set of ids; a lone string counts as one id, not as its characters."""
    return {values} if isinstance(values, str) else {str(value) for value in values}


def render_svg(bpmn_xml: str | bytes, process_id: str | None = None, *, completed: Iterable[str] = (),
               taken_flows: Iterable[str] = (), current: Iterable[str] = (), errored: Iterable[str] = (),
               title: str | None = None) -> str:
    """Draw the diagram of `process_id` (default: the file's first diagram) as a self-contained SVG string.

    The ids mark an instance's state: `completed` elements and `taken_flows` (sequence flow ids) in green,
    `current` (open) tasks in blue, `errored` elements in red; a legend is added when any is given. Ids that
    are not drawn are ignored. Raises DiagramError (an InvalidInput and a ValueError) when the XML is not
    well-formed, the process is unknown, or there is no diagram (BPMNDI) to draw.
    """
    root = _parse(bpmn_xml)
    states = {"error": _ids(errored), "current": _ids(current), "completed": _ids(completed),
              "taken": _ids(taken_flows)}
    index = {el.get("id"): el for el in root.iter(f"{{{MODEL}}}*") if el.get("id")}
    plane = _select_plane(root, index, process_id)
    return Renderer(index, plane, states).render(title)
