"""SVG drawing primitives for BPMN diagrams: text measuring and wrapping, the canvas, arrow markers and the small
glyphs inside tasks and events. No BPMN knowledge beyond what a glyph looks like: engine/diagram.py reads the
BPMNDI layout and draws with these."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lxml import etree

SVG = "http://www.w3.org/2000/svg"

INK = "#22262b"  # strokes and text
PAPER = "#ffffff"

# States (also their class names), most important first: an element both completed and in error is drawn red.
STATE_COLOURS = {  # stroke, fill tint
    "error": ("#c62828", "#fdecea"),
    "current": ("#1565c0", "#e3f0fd"),
    "completed": ("#2e7d32", "#e6f4e7"),
    "taken": ("#2e7d32", "#e6f4e7"),
}
STATE_EXTRA_WIDTH = {"error": 1.5, "current": 2.0, "completed": 1.0, "taken": 1.5}

# ---------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in diagram coordinates."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


@dataclass(frozen=True)
class Paint:
    """How one element is stroked and filled, after its state is applied."""

    stroke: str
    fill: str
    width: float


def num(value: str | None, default: float = 0.0) -> float:
    try:
        number = float(value) if value is not None else default
    except ValueError:
        return default
    return number if math.isfinite(number) else default


def fmt(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return str(value)

# ------------------------------------------------------------------------------------------------- text

# Advance widths (in em) close to DejaVu Sans, the widest common fallback for Arial/Helvetica: wrapping
# for it leaves room to spare with narrower fonts.
_LOWER = dict(zip("abcdefghijklmnopqrstuvwxyz", (0.61, 0.63, 0.55, 0.63, 0.62, 0.35, 0.63, 0.63, 0.28, 0.28, 0.58,
                                                   0.28, 0.97, 0.63, 0.61, 0.63, 0.63, 0.41, 0.52, 0.39, 0.63, 0.59,
                                                   0.82, 0.59, 0.59, 0.53), strict=True))
_SPECIAL = {" ": 0.32, ".": 0.32, ",": 0.32, ":": 0.34, ";": 0.34, "'": 0.28, "!": 0.4, "|": 0.34, "(": 0.39,
            ")": 0.39, "[": 0.39, "]": 0.39, "-": 0.36, "/": 0.34, "?": 0.53, "&": 0.78, "<": 0.84, ">": 0.84,
            "I": 0.3, "J": 0.3, "M": 0.86, "W": 0.99, "m": 0.97, "…": 1.0}


def text_width(text: str, size: float) -> float:
    """An estimate of the width of `text` in a sans-serif font (no font metrics are available)."""
    total = 0.0
    for char in text:
        if char in _SPECIAL:
            total += _SPECIAL[char]
        elif char in _LOWER:
            total += _LOWER[char]
        elif char.isupper() or char.isdigit():
            total += 0.7 if char.isupper() else 0.64
        else:
            total += 0.62
    return total * size


def _fit(word: str, width: float, size: float) -> int:
    """How many leading characters of `word` fit in `width` (at least one)."""
    count = 1
    while count < len(word) and text_width(word[: count + 1], size) <= width:
        count += 1
    return count


def _ellipsize(line: str, width: float, size: float) -> str:
    while line and text_width(line + "…", size) > width:
        line = line[:-1]
    return line.rstrip() + "…"


def wrap(text: str, width: float, size: float, max_lines: int | None = None) -> list[str]:
    """Break `text` into lines no wider than `width`, keeping explicit line breaks and splitting long words."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split():
            if text_width(word, size) > width:
                if line:
                    lines.append(line)
                while text_width(word, size) > width and len(word) > 1:
                    cut = _fit(word, width, size)
                    lines.append(word[:cut])
                    word = word[cut:]
                line = word
                continue
            candidate = f"{line} {word}" if line else word
            if line and text_width(candidate, size) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        if line:
            lines.append(line)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[: max(max_lines, 1)]
        lines[-1] = _ellipsize(lines[-1], width, size)
    return lines


# ----------------------------------------------------------------------------------------------- canvas


def add(parent: etree._Element, tag: str, text: str | None = None, **attrs: object) -> etree._Element:
    """Append an SVG element; `stroke_width=2` becomes stroke-width="2", `class_` becomes class, None is skipped."""
    element = etree.SubElement(parent, f"{{{SVG}}}{tag}")
    for key, value in attrs.items():
        if value is not None:
            element.set(key.rstrip("_").replace("_", "-"), fmt(value))
    if text is not None:
        element.text = text
    return element


class Canvas:
    """The SVG being built: its root, its marker definitions and the extent of everything drawn."""

    def __init__(self) -> None:
        self.root = etree.Element(f"{{{SVG}}}svg", nsmap={None: SVG})
        self.defs = add(self.root, "defs")
        self.layer = add(self.root, "g", class_="diagram")
        self.markers: set[str] = set()
        self.extent: list[float] | None = None  # min x, min y, max x, max y

    def cover(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Grow the drawn extent (used for the viewBox) to include this rectangle."""
        if self.extent is None:
            self.extent = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        else:
            e = self.extent
            self.extent = [min(e[0], x0, x1), min(e[1], y0, y1), max(e[2], x0, x1), max(e[3], y0, y1)]

    def cover_box(self, box: Box) -> None:
        self.cover(box.x, box.y, box.right, box.bottom)

    def marker(self, kind: str, colour: str) -> str:
        """A url() reference to an arrowhead-like marker of this kind and colour, defined on first use."""
        marker_id = f"pmoflow-{kind}-{colour.lstrip('#')}"
        if marker_id not in self.markers:
            self.markers.add(marker_id)
            MARKERS[kind](self.defs, marker_id, colour)
        return f"url(#{marker_id})"

    def text(self, parent: etree._Element, lines: list[str], x: float, y: float, size: float, *,
             anchor: str = "middle", halo: bool = False, weight: str | None = None, colour: str = INK,
             transform: str | None = None) -> etree._Element | None:
        """Write `lines` with the first baseline at `y`; a halo keeps labels readable over flow lines."""
        if not lines:
            return None
        node = add(parent, "text", x=x, y=y, font_size=size, text_anchor=anchor, fill=colour, font_weight=weight,
                   transform=transform)
        if halo:
            node.set("stroke", PAPER)
            node.set("stroke-width", "3")
            node.set("stroke-linejoin", "round")
            node.set("paint-order", "stroke")
        step = size * 1.2
        for index, line in enumerate(lines):
            add(node, "tspan", line, x=x, y=y + index * step)
        if transform is None:
            widest = max(text_width(line, size) for line in lines)
            left = {"start": x, "middle": x - widest / 2, "end": x - widest}[anchor]
            self.cover(left, y - size, left + widest, y + (len(lines) - 1) * step + size * 0.3)
        return node

    def text_block(self, parent: etree._Element, lines: list[str], cx: float, cy: float, size: float,
                   **options: Any) -> etree._Element | None:
        """Write `lines` centred vertically on `cy` (and horizontally on `cx`)."""
        first = cy - (len(lines) - 1) * size * 0.6 + size * 0.35
        return self.text(parent, lines, cx, first, size, **options)

    def serialise(self) -> str:
        """Indented markup, except inside <text>: whitespace there would be drawn."""
        etree.indent(self.root, space=" ")
        for node in self.root.iter(f"{{{SVG}}}text"):
            node.text = None if len(node) else node.text
            for span in node:
                span.tail = None
        return etree.tostring(self.root, encoding="unicode")


def _arrow_marker(defs: etree._Element, marker_id: str, colour: str) -> None:
    marker = add(defs, "marker", id=marker_id, viewBox="0 0 12 10", refX=11, refY=5, markerWidth=12,
                 markerHeight=10, markerUnits="userSpaceOnUse", orient="auto")
    add(marker, "path", d="M0,0 L12,5 L0,10 Z", fill=colour)


def _open_arrow_marker(defs: etree._Element, marker_id: str, colour: str) -> None:
    marker = add(defs, "marker", id=marker_id, viewBox="0 0 12 10", refX=11, refY=5, markerWidth=12,
                 markerHeight=10, markerUnits="userSpaceOnUse", orient="auto")
    add(marker, "path", d="M1,1 L11,5 L1,9 Z", fill=PAPER, stroke=colour, stroke_width=1.5)


def _circle_marker(defs: etree._Element, marker_id: str, colour: str) -> None:
    marker = add(defs, "marker", id=marker_id, viewBox="0 0 10 10", refX=5, refY=5, markerWidth=10,
                 markerHeight=10, markerUnits="userSpaceOnUse", orient="auto")
    add(marker, "circle", cx=5, cy=5, r=3.8, fill=PAPER, stroke=colour, stroke_width=1.5)


def _diamond_marker(defs: etree._Element, marker_id: str, colour: str) -> None:
    marker = add(defs, "marker", id=marker_id, viewBox="0 0 20 12", refX=1, refY=6, markerWidth=20,
                 markerHeight=12, markerUnits="userSpaceOnUse", orient="auto")
    add(marker, "path", d="M1,6 L10,1 L19,6 L10,11 Z", fill=PAPER, stroke=colour, stroke_width=1.5)


def _line_arrow_marker(defs: etree._Element, marker_id: str, colour: str) -> None:
    marker = add(defs, "marker", id=marker_id, viewBox="0 0 12 10", refX=11, refY=5, markerWidth=12,
                 markerHeight=10, markerUnits="userSpaceOnUse", orient="auto")
    add(marker, "path", d="M1,1 L11,5 L1,9", fill="none", stroke=colour, stroke_width=1.5)


MARKERS: dict[str, Callable[[etree._Element, str, str], None]] = {
    "arrow": _arrow_marker, "open-arrow": _open_arrow_marker, "circle": _circle_marker,
    "diamond": _diamond_marker, "line-arrow": _line_arrow_marker,
}


def paint(states: list[str], width: float, fill: str = PAPER) -> Paint:
    """The stroke and fill of an element in the given states (the most important state wins)."""
    for state in STATE_COLOURS:
        if state in states:
            stroke, tint = STATE_COLOURS[state]
            return Paint(stroke, tint if fill != "none" else "none", width + STATE_EXTRA_WIDTH[state])
    return Paint(INK, fill, width)


def points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{fmt(float(x))},{fmt(float(y))}" for x, y in points)


def polygon(cx: float, cy: float, scale: float, unit_points: Iterable[tuple[float, float]]) -> str:
    return points((cx + px * scale, cy + py * scale) for px, py in unit_points)


# ------------------------------------------------------------------------------------------------ glyphs
# Small markers drawn inside shapes. Each takes the parent <g>, a centre (or corner), a size and the paint.


def _envelope(g: etree._Element, cx: float, cy: float, w: float, colour: str, filled: bool) -> None:
    h = w * 0.68
    x, y = cx - w / 2, cy - h / 2
    add(g, "rect", x=x, y=y, width=w, height=h, fill=colour if filled else PAPER, stroke=colour, stroke_width=1.2)
    add(g, "polyline", points=points([(x, y), (cx, cy + h * 0.1), (x + w, y)]), fill="none",
        stroke=PAPER if filled else colour, stroke_width=1.2)


def _clock(g: etree._Element, cx: float, cy: float, r: float, colour: str) -> None:
    add(g, "circle", cx=cx, cy=cy, r=r, fill=PAPER, stroke=colour, stroke_width=1.5)
    for hour in range(12):
        angle = hour * math.pi / 6
        inner = r * (0.72 if hour % 3 == 0 else 0.82)
        add(g, "line", x1=cx + inner * math.sin(angle), y1=cy - inner * math.cos(angle),
            x2=cx + r * math.sin(angle), y2=cy - r * math.cos(angle), stroke=colour, stroke_width=1)
    add(g, "polyline", points=points([(cx, cy - r * 0.65), (cx, cy), (cx + r * 0.5, cy + r * 0.12)]), fill="none",
        stroke=colour, stroke_width=1.5, stroke_linecap="round", stroke_linejoin="round")


EVENT_GLYPHS: dict[str, list[tuple[float, float]]] = {  # unit polygons, scaled by the event radius
    "error": [(-0.5, 0.55), (-0.18, -0.5), (0.14, 0.08), (0.5, -0.55), (0.2, 0.5), (-0.12, -0.05)],
    "signal": [(0.0, -0.6), (0.55, 0.4), (-0.55, 0.4)],
    "escalation": [(0.0, -0.62), (0.42, 0.5), (0.0, 0.05), (-0.42, 0.5)],
    "link": [(-0.5, -0.2), (0.1, -0.2), (0.1, -0.5), (0.55, 0.0), (0.1, 0.5), (0.1, 0.2), (-0.5, 0.2)],
    "compensate": [(-0.6, 0.0), (-0.05, -0.38), (-0.05, 0.0), (0.5, -0.38), (0.5, 0.38), (-0.05, 0.0),
                   (-0.05, 0.38)],
    "multiple": [(0.0, -0.55), (0.52, -0.17), (0.32, 0.45), (-0.32, 0.45), (-0.52, -0.17)],
}


def event_glyph(g: etree._Element, definition: str, cx: float, cy: float, r: float, colour: str,
                 filled: bool) -> None:
    """The marker of an event definition (timer clock, message envelope, error bolt, ...) inside an event."""
    fill = colour if filled else PAPER
    if definition == "timer":
        _clock(g, cx, cy, r * 0.6, colour)
    elif definition == "message":
        _envelope(g, cx, cy, r * 1.05, colour, filled)
    elif definition == "terminate":
        add(g, "circle", cx=cx, cy=cy, r=r * 0.58, fill=colour)
    elif definition == "conditional":
        add(g, "rect", x=cx - r * 0.38, y=cy - r * 0.5, width=r * 0.76, height=r, fill=PAPER, stroke=colour,
            stroke_width=1.2)
        for step in (0.28, 0.5, 0.72):
            y = cy - r * 0.5 + r * step
            add(g, "line", x1=cx - r * 0.26, y1=y, x2=cx + r * 0.26, y2=y, stroke=colour, stroke_width=1.2)
    elif definition == "cancel":
        d = r * 0.38
        for x1, y1, x2, y2 in ((cx - d, cy - d, cx + d, cy + d), (cx - d, cy + d, cx + d, cy - d)):
            add(g, "line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=colour, stroke_width=3.5)
    elif definition in EVENT_GLYPHS:
        add(g, "polygon", points=polygon(cx, cy, r, EVENT_GLYPHS[definition]), fill=fill, stroke=colour,
            stroke_width=1.3, stroke_linejoin="round")


def _user_glyph(g: etree._Element, x: float, y: float, colour: str) -> None:
    add(g, "path", d=f"M{fmt(x + 3)},{fmt(y + 17)} v-3 q0,-5 6,-5 h2 q6,0 6,5 v3 z", fill=PAPER, stroke=colour,
        stroke_width=1.2)
    add(g, "circle", cx=x + 10, cy=y + 5.5, r=3.6, fill=PAPER, stroke=colour, stroke_width=1.2)


def _service_glyph(g: etree._Element, x: float, y: float, colour: str) -> None:
    cx, cy = x + 10, y + 10
    for tooth in range(8):
        angle = tooth * math.pi / 4
        add(g, "line", x1=cx + 4.5 * math.cos(angle), y1=cy + 4.5 * math.sin(angle), x2=cx + 7.8 * math.cos(angle),
            y2=cy + 7.8 * math.sin(angle), stroke=colour, stroke_width=2.6)
    add(g, "circle", cx=cx, cy=cy, r=5.3, fill=PAPER, stroke=colour, stroke_width=1.3)
    add(g, "circle", cx=cx, cy=cy, r=2, fill=PAPER, stroke=colour, stroke_width=1.2)


def _script_glyph(g: etree._Element, x: float, y: float, colour: str) -> None:
    add(g, "path", d=f"M{fmt(x + 6)},{fmt(y + 2)} h11 q-4,4 0,8 q4,4 0,8 h-11 q4,-4 0,-8 q-4,-4 0,-8 z",
        fill=PAPER, stroke=colour, stroke_width=1.2)
    for row in (6, 10, 14):
        add(g, "line", x1=x + 8.5, y1=y + row, x2=x + 14.5, y2=y + row, stroke=colour, stroke_width=1)


def _rule_glyph(g: etree._Element, x: float, y: float, colour: str) -> None:
    add(g, "rect", x=x + 2, y=y + 4, width=16, height=12, fill=PAPER, stroke=colour, stroke_width=1.2)
    add(g, "rect", x=x + 2, y=y + 4, width=16, height=3.5, fill=colour)
    add(g, "line", x1=x + 2, y1=y + 11.5, x2=x + 18, y2=y + 11.5, stroke=colour, stroke_width=1)
    add(g, "line", x1=x + 7, y1=y + 7.5, x2=x + 7, y2=y + 16, stroke=colour, stroke_width=1)


def _manual_glyph(g: etree._Element, x: float, y: float, colour: str) -> None:
    add(g, "path", d=f"M{fmt(x + 2)},{fmt(y + 9)} l5,-5 h4 l-2,3 h9 v2.5 h-6 h7 v2.5 h-7 h6 v2.5 h-6 h5 v2.5"
                     " h-11 q-3,0 -3,-3 z", fill=PAPER, stroke=colour, stroke_width=1.1, stroke_linejoin="round")


TASK_GLYPHS: dict[str, Callable[[etree._Element, float, float, str], None]] = {
    "userTask": _user_glyph, "serviceTask": _service_glyph, "scriptTask": _script_glyph,
    "businessRuleTask": _rule_glyph, "manualTask": _manual_glyph,
    "sendTask": lambda g, x, y, colour: _envelope(g, x + 10, y + 9, 16, colour, True),
    "receiveTask": lambda g, x, y, colour: _envelope(g, x + 10, y + 9, 16, colour, False),
}


def bottom_markers(g: etree._Element, box: Box, names: list[str], colour: str) -> None:
    """The markers at the bottom centre of an activity: [+] collapsed, loop, multi-instance, ad hoc."""
    size, gap = 12.0, 3.0
    x = box.cx - (len(names) * size + (len(names) - 1) * gap) / 2
    y = box.bottom - size - 4
    for name in names:
        if name == "collapsed":
            add(g, "rect", x=x, y=y, width=size, height=size, fill=PAPER, stroke=colour, stroke_width=1.2)
            add(g, "path", d=f"M{fmt(x + 6)},{fmt(y + 2.5)} v7 M{fmt(x + 2.5)},{fmt(y + 6)} h7", stroke=colour,
                stroke_width=1.5)
        elif name == "loop":
            add(g, "path", d=f"M{fmt(x + 3)},{fmt(y + 10)} A5,5 0 1 1 {fmt(x + 9)},{fmt(y + 10)}", fill="none",
                stroke=colour, stroke_width=1.4)
            add(g, "path", d=f"M{fmt(x + 0.5)},{fmt(y + 8.5)} L{fmt(x + 3)},{fmt(y + 10.5)} L{fmt(x + 5.5)},"
                             f"{fmt(y + 8)}", fill="none", stroke=colour, stroke_width=1.4)
        elif name in ("parallel", "sequential"):
            for step in (2, 6, 10):
                if name == "parallel":
                    add(g, "line", x1=x + step, y1=y + 1, x2=x + step, y2=y + size - 1, stroke=colour, stroke_width=2)
                else:
                    add(g, "line", x1=x + 1, y1=y + step, x2=x + size - 1, y2=y + step, stroke=colour, stroke_width=2)
        elif name == "compensation":
            for dx in (0.0, 6.0):
                add(g, "polygon", points=points([(x + dx, y + 6), (x + dx + 6, y + 2), (x + dx + 6, y + 10)]),
                    fill="none", stroke=colour, stroke_width=1.2, stroke_linejoin="round")
        elif name == "ad-hoc":
            add(g, "path", d=f"M{fmt(x + 1)},{fmt(y + 7)} q2.5,-4 5,0 t5,0", fill="none", stroke=colour,
                stroke_width=1.5)
        x += size + gap


