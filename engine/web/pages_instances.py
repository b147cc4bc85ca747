"""Pages of process instances: the list, and one instance (status, data, its tasks, the diagram with the path
taken, where it stands and what failed, the timeline), with the administrative acts for PMO Administrators
(suspend, resume, terminate, retry with data, skip, data edit; the service refuses anyone else anyway)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PmoflowError
from pmoflow.engine.report import describe
from pmoflow.engine.services import reports
from pmoflow.engine.web.auth import Acting
from pmoflow.engine.web.problems import classify
from pmoflow.engine.web.workspace import Posted, context, diagram_markup, field_text, problem_of, redirect, render

router = APIRouter(include_in_schema=False)
PAGE = 50
STATUSES = ("running", "waiting", "suspended", "error", "completed", "terminated")
ACTS = {  # act: (label, the statuses it applies to, what its data field is)
    "suspend": ("Suspend", ("running", "waiting"), None),
    "resume": ("Resume", ("suspended",), None),
    "retry": ("Retry the failed task", ("error",), "corrected data for the failed task (optional; needs a reason)"),
    "skip": ("Skip the failed task", ("error",), "the failed task's result (optional)"),
    "data": ("Change the data", ("running", "waiting", "suspended", "error"), "the values to set (required)"),
    "terminate": ("Terminate", ("running", "waiting", "suspended", "error"), None),
}
DONE = {"suspend": "suspended", "resume": "resumed", "retry": "retried", "skip": "skipped past its failed task",
        "data": "given new data", "terminate": "terminated"}


@router.get("/instances")
def instance_list(request: Request, pmo: Acting, status: str | None = None, process: str | None = None,
                  after: int | None = None) -> Response:
    status = status if status in STATUSES else None
    rows = pmo.instances(status=status, process=process or None, limit=PAGE + 1, after=after)
    more = len(rows) > PAGE
    return render(request, pmo, "instances.html", {
        "section": "instances", "instances": rows[:PAGE], "status": status, "process": process or None,
        "statuses": STATUSES, "processes": {p["process_id"]: p["name"] for p in pmo.processes()},
        "next_after": rows[PAGE - 1]["instance_id"] if more else None})


def _instance_page(request: Request, pmo: Pmoflow, instance_id: int, problem: dict[str, Any] | None = None,
                   typed: dict[str, str] | None = None, notice: str | None = None, status: int = 200) -> Response:
    shown = pmo.show(instance_id)
    events = pmo.history(instance_id)
    drawing = reports.instance_diagram(context(pmo), instance_id)
    timeline = [{**e, "text": describe(e)} for e in reversed(events)]
    acts = {act: spec for act, spec in ACTS.items() if shown["status"] in spec[1]}
    return render(request, pmo, "instance.html", {
        "section": "instances", "instance": shown, "timeline": timeline, "acts": acts,
        "data_json": json.dumps(shown["data"], indent=2, sort_keys=True, default=str, ensure_ascii=False),
        "diagram": diagram_markup(drawing["svg"], drawing["current"] + drawing["errored"],
                                  f"Diagram of instance {instance_id}"),
        "diagram_note": drawing["note"], "problem": problem, "typed": typed or {}, "notice": notice},
        status_code=status)


@router.get("/instances/{instance_id}")
def instance_page(request: Request, instance_id: int, pmo: Acting, started: int | None = None,
                  done: str | None = None) -> Response:
    notice = "The instance was started." if started else \
        f"The instance was {DONE[done]}." if done in DONE else None
    return _instance_page(request, pmo, instance_id, notice=notice)


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what}: give a JSON object, like {{\"field\": \"value\"}}")
    return value


@router.post("/instances/{instance_id}/admin")
def administer(request: Request, instance_id: int, pmo: Acting, posted: Posted) -> Response:
    """One administrative act, as `pmoflow suspend|resume|terminate|retry|skip|data` does it."""
    act = field_text(posted, "act") or ""
    reason = (field_text(posted, "reason") or "").strip() or None
    typed = {"act": act, "reason": reason or "", "data": field_text(posted, "data") or ""}
    try:
        if act not in ACTS:
            raise InvalidInput(f"no administrative act '{act[:40]}': {', '.join(ACTS)}")
        data = _json_object(typed["data"], "the data")
        if act == "suspend":
            pmo.suspend(instance_id, reason)
        elif act == "resume":
            pmo.resume(instance_id, reason)
        elif act == "terminate":
            pmo.terminate(instance_id, reason)
        elif act == "retry":
            pmo.retry(instance_id, data, reason)
        elif act == "skip":
            pmo.skip(instance_id, data, reason)
        else:
            if data is None:
                raise InvalidInput("the data: give the values to set as a JSON object")
            pmo.edit_data(instance_id, data, reason)
    except PmoflowError as exc:
        return _instance_page(request, pmo, instance_id, problem=problem_of(exc), typed=typed,
                              status=classify(exc)[0])
    return redirect(f"/instances/{instance_id}", done=act)
