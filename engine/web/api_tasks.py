"""Staff's part of the REST API: the inbox, one task with its form, claiming, delegating and completing it;
messages from outside and what instances wait for; one's notifications (and an auditor's view of anyone's).

Each route is one call of the signed-in user's `Pmoflow`: the roles, duties, forms and locking rules are the
service layer's, the same as the CLI's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from pmoflow.engine.web import api_schema as schema
from pmoflow.engine.web.answers import AFTER_DOC, JSON, LIMIT_DOC, Expecting, etag, ok, paged
from pmoflow.engine.web.auth import Acting

router = APIRouter(default_response_class=JSON)

TaskId = Annotated[int, Path(description="The task's id.")]


@router.get("/tasks", tags=["tasks"], summary="The inbox: open tasks I may take (or every open task)",
            responses=schema.answer(list[schema.Task], "Open tasks, oldest first (`pmoflow tasks --json`)", 200,
                                    400))
def inbox(pmo: Acting, request: Request,
          all_tasks: Annotated[bool, Query(alias="all", description="Every open task, not only mine (`--all`).")]
          = False,
          process: Annotated[str | None, Query(description="Only tasks of this process.")] = None,
          limit: Annotated[int, Query(ge=1, le=1000, description=LIMIT_DOC)] = 100,
          after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description=AFTER_DOC)] = None) -> Response:
    """Tasks offered to me (as a user or through a role, unless barred by a duty) or assigned to me."""
    return paged(request, pmo.tasks(all_tasks, process, limit, after), limit, "id")


@router.get("/tasks/{task_id}", tags=["tasks"], summary="One task, with its form and UI schema",
            responses=schema.answer(schema.TaskDetail, "The task (`pmoflow task --json`); its ETag is its "
                                                       "instance's version", 200, 404))
def task(task_id: TaskId, pmo: Acting) -> Response:
    shown = pmo.task(task_id)
    return ok(shown, headers={"ETag": etag(shown["instance_id"], shown["instance_lock_version"])})


@router.post("/tasks/{task_id}/claim", tags=["tasks"], summary="Take a task",
             responses=schema.answer(schema.Task, "The task, now mine", 200, 403, 404, 409, 412))
def claim(task_id: TaskId, pmo: Expecting) -> Response:
    """Refused (403, recorded) when a duty would keep me from completing it."""
    return ok(pmo.claim(task_id))


@router.post("/tasks/{task_id}/unclaim", tags=["tasks"], summary="Give a task back",
             responses=schema.answer(schema.Task, "The task, open again", 200, 404, 409, 412))
def unclaim(task_id: TaskId, pmo: Expecting) -> Response:
    return ok(pmo.unclaim(task_id))


@router.post("/tasks/{task_id}/delegate", tags=["tasks"], summary="Hand a task to someone who may take it",
             responses=schema.answer(schema.Task, "The task, assigned to them", 200, 400, 403, 404, 409, 412))
def delegate(task_id: TaskId, body: schema.DelegateBody, pmo: Expecting) -> Response:
    return ok(pmo.delegate(task_id, body.to))


@router.post("/tasks/{task_id}/complete", tags=["tasks"], summary="Submit a task's form",
             responses=schema.answer(schema.Completed, "Completed; the instance ran on to its next wait", 200,
                                     400, 403, 404, 409, 412, 422))
def complete(task_id: TaskId, body: schema.DataBody, pmo: Expecting) -> Response:
    """The data is checked against the task's form first (422 with every field's error; nothing stored), then
    the duties (403 naming the rule, recorded)."""
    return ok(pmo.complete(task_id, body.data))


# -- messages ------------------------------------------------------------------------------------------------

@router.post("/messages", tags=["messages"], summary="Send a message from outside",
             responses=schema.answer(schema.MessageSent, "Delivered (`pmoflow message --json`)", 200, 400, 403,
                                     404, 409))
def message(body: schema.MessageBody, pmo: Acting) -> Response:
    """To the one instance waiting for it with these correlation values, or to the process it starts (which
    you must be allowed to start). A message nobody takes is refused, with nothing changed."""
    return ok(pmo.message(body.name, body.data, body.correlate))


@router.get("/messages", tags=["messages"], summary="What running instances wait for",
            responses=schema.answer(list[schema.MessageWait], "Waits (`pmoflow messages --json`)"))
def messages(pmo: Acting) -> Response:
    return ok(pmo.messages())


# -- notifications -------------------------------------------------------------------------------------------

@router.get("/notifications", tags=["notifications"], summary="Notifications: mine (delivered by listing them), "
                                                                "or someone's / everyone's",
            responses=schema.answer(list[schema.Notification], "Oldest first (`pmoflow notifications --json`)",
                                    200, 400, 404))
def notifications(
        pmo: Acting,
        user: Annotated[str | None, Query(description="Someone else's (`--for`): delivers nothing.")] = None,
        all_users: Annotated[bool, Query(alias="all", description="Everyone's (`--all`): delivers nothing.")] = False,
        instance: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this instance's.")] = None,
        undelivered: Annotated[bool, Query(description="Only those not delivered yet.")] = False) -> Response:
    """Listing your own delivers them, as the web inbox does: each not delivered before comes with `new`."""
    return ok(pmo.notifications(user, undelivered, instance, all_users))
