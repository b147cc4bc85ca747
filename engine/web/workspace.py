"""What every page of the web workspace shares: drawing a page with its navigation (who is signed in, their
roles, the count of unread notifications), redirects after a POST, and the few reads the CLI has no command for.

Pages act through the signed-in user's `Pmoflow` (`auth.Acting`), the façade the CLI uses; the three reads of
the workspace alone (the processes one may start with their start forms, the unread count, an instance's
diagram) are service functions called with that façade's `Context`, as web.md allows ("`Pmoflow`, or the
services with a `Context`"): the same rules, the same transaction per call.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from lxml import etree
from markupsafe import Markup
from starlette.datastructures import FormData

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import PmoflowError
from pmoflow.engine.services import notifications
from pmoflow.engine.services.context import ADMINISTRATOR, DESIGNER, Context
from pmoflow.engine.web.templates import page

AUDITING_ROLES = {"Internal Auditor", "Quality Director", "SQA", ADMINISTRATOR}  # whose navigation shows Audit
DESIGNING_ROLES = {DESIGNER, ADMINISTRATOR}  # whose navigation shows Designer


async def posted_form(request: Request) -> FormData:
    """The posted form (already read, and its CSRF token checked, by `auth.authenticate`)."""
    return await request.form()


Posted = Annotated[FormData, Depends(posted_form)]  # a page's parameter `posted: Posted`: the posted form


def field_text(posted: FormData, name: str) -> str | None:
    """A posted text field (None when absent, or a file)."""
    value = posted.get(name)
    return value if isinstance(value, str) else None


def context(pmo: Pmoflow) -> Context:
    """The service context behind the signed-in user's façade (see the module's docstring)."""
    return pmo._ctx


def render(request: Request, pmo: Pmoflow, name: str, values: dict[str, Any] | None = None,
           status_code: int = 200) -> Response:
    """A page of templates/ with the navigation every page shows."""
    me = pmo.whoami()
    roles = set(me["roles"])
    nav = {"me": me, "unread": notifications.unread_count(context(pmo)), "is_admin": ADMINISTRATOR in roles,
           "audits": bool(roles & AUDITING_ROLES), "designs": bool(roles & DESIGNING_ROLES),
           "section": (values or {}).get("section", "")}
    return page(request, name, {**nav, **(values or {})}, status_code=status_code)


def redirect(path: str, **query: Any) -> RedirectResponse:
    """303 to a page of this site after a POST (the browser then GETs it: reloading repeats nothing)."""
    shown = {k: v for k, v in query.items() if v is not None}
    return RedirectResponse(path + (f"?{urlencode(shown)}" if shown else ""), status_code=303)


def back_to(target: str | None, default: str) -> str:
    """Where a button's `next` field says to go back to: a path on this site only."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\n" not in target:
        return target
    return default


SVG_NS = "http://www.w3.org/2000/svg"
WINDOW = (900.0, 520.0)  # the part of a large diagram shown around where the instance stands (diagram units)


def diagram_markup(svg: str | None, focus: list[str] | tuple[str, ...] = (), label: str = "The process diagram",
                   highlight: str | None = None) -> Markup | None:
    """The engine's SVG (engine/diagram.py: no script, no style element) for inline use, named for screen readers.

    A process drawn to fit a page is too small to read, so a large one is shown at its own size: around the
    elements of `focus` (where the instance stands: its open tasks, the element in error) when any is drawn,
    else whole in a scrolling figure. `highlight` (a BPMN id) gets the class `this-task` (outlined)."""
    if not svg:
        return None
    root = etree.fromstring(svg.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
    root.set("role", "img")
    root.set("aria-label", label)
    boxes = []
    for group in root.iter(f"{{{SVG_NS}}}g"):
        element = group.get("data-bpmn-id")
        if element is not None and element == highlight:
            group.set("class", f"{group.get('class', '')} this-task".strip())
        if element in focus and (box := _shape_box(group)) is not None:
            boxes.append(box)
    if boxes:
        _window(root, boxes)
    return Markup(etree.tostring(root, encoding="unicode"))


def _shape_box(group: etree._Element) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of a BPMN element's first rectangle, circle or polygon."""
    for shape in group:
        tag = etree.QName(shape).localname
        try:
            if tag == "rect":
                x, y = float(shape.get("x", 0)), float(shape.get("y", 0))
                return x, y, x + float(shape.get("width", 0)), y + float(shape.get("height", 0))
            if tag == "circle":
                cx, cy, r = (float(shape.get(k, 0)) for k in ("cx", "cy", "r"))
                return cx - r, cy - r, cx + r, cy + r
            if tag == "polygon":
                points = [float(v) for v in (shape.get("points") or "").replace(",", " ").split()]
                xs, ys = points[0::2], points[1::2]
                return min(xs), min(ys), max(xs), max(ys)
        except (TypeError, ValueError):
            return None
    return None


def _window(root: etree._Element, boxes: list[tuple[float, float, float, float]]) -> None:
    """Narrow the viewBox to WINDOW around the boxes (or their extent, when larger), inside the diagram."""
    try:
        x, y, width, height = (float(v) for v in (root.get("viewBox") or "").split())
    except ValueError:
        return
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    w, h = min(max(WINDOW[0], right - left + 200), width), min(max(WINDOW[1], bottom - top + 200), height)
    x0 = min(max((left + right - w) / 2, x), x + width - w)
    y0 = min(max((top + bottom - h) / 2, y), y + height - h)
    root.set("viewBox", f"{x0:g} {y0:g} {w:g} {h:g}")
    root.set("width", f"{w:g}")
    root.set("height", f"{h:g}")


def problem_of(exc: PmoflowError) -> dict[str, Any]:
    """An engine error as the page shows it above a form (status, title, the CLI's message)."""
    from pmoflow.engine.web.problems import body

    return body(exc)
