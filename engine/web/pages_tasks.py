"""Pages for staff: the inbox, one's notifications, a task with its instructions, form and diagram (claim,
unclaim, submit), and starting a process from its start form.

A form posts back to its own page. "Add a row" and "Remove" draw it again with what was typed; a submission the
service refuses is drawn again with the service's per-field errors beside the fields (422) or its refusal above
the form (403, 409 ...), nothing typed lost; a submission it takes redirects (303) to the inbox or the new
instance, so reloading repeats nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidForm, NotFound, PermissionDenied, PmoflowError
from pmoflow.engine.services import instances, reports
from pmoflow.engine.web import form_render, instructions
from pmoflow.engine.web.auth import Acting
from pmoflow.engine.web.problems import classify
from pmoflow.engine.web.workspace import (
    Posted,
    back_to,
    context,
    diagram_markup,
    field_text,
    problem_of,
    redirect,
    render,
)

router = APIRouter(include_in_schema=False)
PAGE = 50  # inbox rows per page
SOON = timedelta(days=2)  # a task due within this is marked "due soon"
STATUSES = {"running", "waiting", "completed", "error", "suspended", "terminated"}


# -- the inbox and notifications --------------------------------------------------------------------------------

def due_state(due: str | None, now: datetime) -> str | None:
    """'overdue', 'soon' or None for a task's due time (ISO text)."""
    if not due:
        return None
    moment = datetime.fromisoformat(due)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return "overdue" if moment < now else "soon" if moment < now + SOON else None


def _for_whom(task: dict[str, Any], me: str) -> str:
    if task["assignee"] == me:
        return "you (claimed)"
    if task["candidate_kind"] == "user":
        return "you" if task["candidates"] == [me] else ", ".join(task["candidates"])
    return ", ".join(task["candidates"])


def _inbox_notice(completed: int | None, instance: int | None, status: str | None, claimed: int | None,
                  unclaimed: int | None) -> str | None:
    if completed is not None:
        state = f"; instance {instance} is {status}" if instance is not None and status in STATUSES else ""
        return f"Task {completed} completed{state}."
    if claimed is not None:
        return f"You claimed task {claimed}: it stays yours until you complete or unclaim it."
    if unclaimed is not None:
        return f"Task {unclaimed} is open to its candidates again."
    return None


@router.get("/")
def inbox(request: Request, pmo: Acting, process: str | None = None, after: int | None = None,
          completed: int | None = None, instance: int | None = None, status: str | None = None,
          claimed: int | None = None, unclaimed: int | None = None) -> Response:
    """My tasks and my roles' tasks, oldest first, a page at a time; due and overdue marked."""
    process = process or None
    rows = pmo.tasks(process=process, limit=PAGE + 1, after=after)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    now = datetime.now(UTC)
    me = pmo.user or ""
    tasks = [{**t, "due_state": due_state(t["due"], now), "for": _for_whom(t, me)} for t in rows]
    names = {p["process_id"]: p["name"] for p in pmo.processes()}
    return render(request, pmo, "inbox.html", {
        "section": "inbox", "tasks": tasks, "processes": names, "process": process, "after": after,
        "next_after": rows[-1]["id"] if more else None,
        "notice": _inbox_notice(completed, instance, status, claimed, unclaimed)})


@router.get("/notifications")
def notifications_page(request: Request, pmo: Acting) -> Response:
    """My notifications, newest first; showing them delivers them (as `pmoflow notifications` does)."""
    shown = list(reversed(pmo.notifications()))
    return render(request, pmo, "notifications.html", {"section": "notifications", "notifications": shown,
                                                       "unread": 0})


@router.post("/tasks/{task_id}/claim")
def claim(task_id: int, pmo: Acting, posted: Posted) -> Response:
    pmo.claim(task_id)
    return redirect(back_to(field_text(posted, "next"), "/"), claimed=task_id)


@router.post("/tasks/{task_id}/unclaim")
def unclaim(task_id: int, pmo: Acting, posted: Posted) -> Response:
    pmo.unclaim(task_id)
    return redirect(back_to(field_text(posted, "next"), "/"), unclaimed=task_id)


# -- one task ----------------------------------------------------------------------------------------------------

def may_act(task: dict[str, Any], me: dict[str, Any]) -> bool:
    """Whether the signed-in user may complete the task (the service decides; this only hides the button)."""
    if task["state"] != "ready" or me["name"] in task["excluded"]:
        return False
    if task["assignee"]:
        return task["assignee"] == me["name"]
    if task["candidate_kind"] == "user":
        return me["name"] in task["candidates"]
    return bool(set(task["candidates"]) & set(me["roles"]))


def _task_page(request: Request, pmo: Acting, task: dict[str, Any], shown: dict[str, Any] | None = None,
               errors: list[str] | None = None, problem: dict[str, Any] | None = None, status: int = 200,
               notice: str | None = None) -> Response:
    form, form_problem = None, None
    if task["state"] == "ready" and task.get("schema"):
        try:
            schema = form_render.resolve(task["schema"], task.get("data"), task["form"])
            form = form_render.build(schema, task.get("ui_schema"), task.get("data") if shown is None else shown,
                                     errors)
        except PmoflowError as exc:  # choices the task data should hold but does not
            form_problem = problem_of(exc)
    drawing = reports.instance_diagram(context(pmo), task["instance_id"])
    me = pmo.whoami()
    return render(request, pmo, "task.html", {
        "section": "inbox", "task": task, "form": form, "problem": problem or form_problem, "notice": notice,
        "instructions": instructions.render(task["instructions"], task.get("data") or {}),
        "may_act": may_act(task, me), "due_state": due_state(task["due"], datetime.now(UTC)),
        "diagram": diagram_markup(drawing["svg"], [task["bpmn_id"]], f"Diagram of instance {task['instance_id']}"
                                  f" with '{task['name']}' marked", highlight=task["bpmn_id"]),
        "diagram_note": drawing["note"]},
        status_code=status)


@router.get("/tasks/{task_id}")
def task_page(request: Request, task_id: int, pmo: Acting) -> Response:
    return _task_page(request, pmo, pmo.task(task_id))


@router.post("/tasks/{task_id}")
def submit_task(request: Request, task_id: int, pmo: Acting, posted: Posted) -> Response:
    """Complete the task with the posted form, or add/remove a row and draw the form again."""
    task = pmo.task(task_id)
    action = field_text(posted, form_render.ACTION) or "submit"
    schema: dict[str, Any] = {}
    if task["state"] == "ready" and task.get("schema"):
        try:
            schema = form_render.resolve(task["schema"], task.get("data"), task["form"])
        except PmoflowError as exc:
            return _task_page(request, pmo, task, problem=problem_of(exc), status=classify(exc)[0])
    ui = task.get("ui_schema")
    if action != "submit":
        data = form_render.parse(schema, ui, posted, task.get("data"), keep_blank=True)
        form_render.apply_action(data, action)
        return _task_page(request, pmo, task, shown=data)
    data = form_render.parse(schema, ui, posted, task.get("data"))
    try:
        result = pmo.complete(task_id, data)
    except InvalidForm as exc:
        return _task_page(request, pmo, task, shown=data, errors=exc.details, status=422)
    except PmoflowError as exc:
        return _task_page(request, pmo, task, shown=data, problem=problem_of(exc), status=classify(exc)[0])
    return redirect("/", completed=task_id, instance=result["instance_id"], status=result["status"])


# -- starting a process ------------------------------------------------------------------------------------------

@router.get("/start")
def start_list(request: Request, pmo: Acting) -> Response:
    """The processes I may start: a start lane I hold, or none."""
    return render(request, pmo, "start.html", {"section": "start", "offered": instances.startable(context(pmo))})


def _offered(pmo: Pmoflow, process_id: str) -> dict[str, Any]:
    for process in instances.startable(context(pmo)):
        if process["process_id"] == process_id:
            return process
    if any(p["process_id"] == process_id for p in pmo.processes()):
        raise PermissionDenied(f"{pmo.user} may not start {process_id}: its start event is in a lane whose role "
                               f"{pmo.user} does not hold, or it starts only by a message or a timer")
    raise NotFound(f"no process '{process_id}' is deployed")


def _start_page(request: Request, pmo: Acting, process: dict[str, Any], shown: dict[str, Any] | None = None,
                errors: list[str] | None = None, problem: dict[str, Any] | None = None, business_key: str = "",
                status: int = 200) -> Response:
    form = form_render.build(process["schema"], process.get("ui_schema"), shown, errors) \
        if process.get("schema") else None
    return render(request, pmo, "start_form.html", {"section": "start", "process": process, "form": form,
                                                    "problem": problem, "business_key": business_key},
                  status_code=status)


@router.get("/start/{process_id}")
def start_form(request: Request, process_id: str, pmo: Acting) -> Response:
    return _start_page(request, pmo, _offered(pmo, process_id))


@router.post("/start/{process_id}")
def start(request: Request, process_id: str, pmo: Acting, posted: Posted) -> Response:
    process = _offered(pmo, process_id)
    schema = process.get("schema") or {}
    ui = process.get("ui_schema")
    action = field_text(posted, form_render.ACTION) or "submit"
    business_key = (field_text(posted, "_business_key") or "").strip()
    if action != "submit":
        data = form_render.parse(schema, ui, posted, {}, keep_blank=True)
        form_render.apply_action(data, action)
        return _start_page(request, pmo, process, data, business_key=business_key)
    data = form_render.parse(schema, ui, posted, {})
    try:
        started = pmo.start(process_id, data, business_key or None)
    except InvalidForm as exc:
        return _start_page(request, pmo, process, data, exc.details, business_key=business_key, status=422)
    except PmoflowError as exc:
        return _start_page(request, pmo, process, data, problem=problem_of(exc), business_key=business_key,
                           status=classify(exc)[0])
    return redirect(f"/instances/{started['instance_id']}", started=1)
