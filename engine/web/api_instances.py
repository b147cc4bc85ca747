"""Instances in the REST API: start one, list them a page at a time, show one with its ETag, its history and
audit report; and the administrative acts (retry, skip, suspend, resume, terminate, data, migrate), which the
service layer allows PMO Administrators only (anyone else: 403 with the rule's words)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from pmoflow.engine.migration import MigrationRefused
from pmoflow.engine.web import api_schema as schema
from pmoflow.engine.web import problems
from pmoflow.engine.web.answers import AFTER_DOC, JSON, LIMIT_DOC, Expecting, etag, ok, paged
from pmoflow.engine.web.auth import Acting

router = APIRouter(default_response_class=JSON)

InstanceId = Annotated[int, Path(description="The instance's id.")]
Status = Literal["running", "waiting", "completed", "error", "suspended", "terminated"]
REPORT_TYPES = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8",
                "json": "application/json"}


@router.post("/instances", tags=["instances"], summary="Start a process", status_code=201,
             responses=schema.answer(schema.Started, "Started and run to its first wait (`pmoflow start --json`); "
                                                     "`Location` names the instance", 201, 400, 403, 404, 422))
def start(body: schema.StartBody, pmo: Acting, request: Request) -> Response:
    """The newest version of the process, with the start form's data (422 with every field's error when it
    does not fit). A process started from a lane is started only by holders of that lane's role (403)."""
    started = pmo.start(body.process_id, body.data, body.business_key)
    where = request.url_for("instance", instance_id=started["instance_id"]).path
    return ok(started, 201, {"Location": where})


@router.get("/instances", tags=["instances"], summary="Instances, filtered, a page at a time",
            responses=schema.answer(list[schema.Instance], "In id order (`pmoflow instances --json`)", 200, 400))
def instances(pmo: Acting, request: Request,
              status: Annotated[Status | None, Query(description="Only instances in this status.")] = None,
              process: Annotated[str | None, Query(description="Only instances of this process.")] = None,
              limit: Annotated[int, Query(ge=1, le=1000, description=LIMIT_DOC)] = 100,
              after: Annotated[int | None, Query(ge=0, le=2**31 - 1, description=AFTER_DOC)] = None) -> Response:
    return paged(request, pmo.instances(status, process, limit, after), limit, "instance_id")


@router.get("/instances/{instance_id}", tags=["instances"], summary="One instance: status, data, tasks",
            responses=schema.answer(schema.InstanceDetail, "The instance (`pmoflow show --json`), with its ETag",
                                    200, 404))
def instance(instance_id: InstanceId, pmo: Acting) -> Response:
    shown = pmo.show(instance_id)
    return ok(shown, headers={"ETag": etag(shown["instance_id"], shown["lock_version"])})


@router.get("/instances/{instance_id}/history", tags=["instances"], summary="The instance's audit events",
            responses=schema.answer(list[schema.Event], "Oldest first (`pmoflow history --json`)", 200, 404))
def history(instance_id: InstanceId, pmo: Acting) -> Response:
    return ok(pmo.history(instance_id))


@router.get("/instances/{instance_id}/report", tags=["audit"], summary="The instance's audit report",
            response_class=Response,
            responses=schema.report(schema.InstanceReport, "`pmoflow report INSTANCE --format ...`: JSON inline, "
                                    "HTML (one self-contained file) or Markdown as a download"))
def report(instance_id: InstanceId, pmo: Acting,
           format: Annotated[Literal["html", "md", "json"], Query(description="The report's format.")] = "json",
           ) -> Response:
    return rendered(pmo.report(instance_id), format, f"instance-{instance_id}-report")


def rendered(result: dict, fmt: str, stem: str) -> Response:
    """A report as JSON, or as an HTML or Markdown download (never shown inline from this site: an HTML
    report carries its own styles, and is nobody's page here)."""
    from pmoflow.engine.report import render

    if fmt == "json":
        return ok(result)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:100]
    return Response(render(result, fmt), media_type=REPORT_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


# -- administrative acts --------------------------------------------------------------------------------------

ADMIN = (400, 403, 404, 409, 412)


@router.post("/instances/{instance_id}/suspend", tags=["administration"], summary="Hold an instance",
             responses=schema.answer(schema.Run, "Suspended", 200, *ADMIN))
def suspend(instance_id: InstanceId, pmo: Expecting, body: schema.ReasonBody | None = None) -> Response:
    return ok(pmo.suspend(instance_id, body.reason if body else None))


@router.post("/instances/{instance_id}/resume", tags=["administration"], summary="Release a suspended instance",
             responses=schema.answer(schema.Run, "Resumed", 200, *ADMIN))
def resume(instance_id: InstanceId, pmo: Expecting, body: schema.ReasonBody | None = None) -> Response:
    return ok(pmo.resume(instance_id, body.reason if body else None))


@router.post("/instances/{instance_id}/terminate", tags=["administration"], summary="End an instance for good",
             responses=schema.answer(schema.Run, "Terminated, its open tasks cancelled", 200, *ADMIN))
def terminate(instance_id: InstanceId, pmo: Expecting, body: schema.ReasonBody | None = None) -> Response:
    return ok(pmo.terminate(instance_id, body.reason if body else None))


@router.post("/instances/{instance_id}/retry", tags=["administration"], summary="Re-run the failed task",
             responses=schema.answer(schema.Run, "Retried (still in error if it failed again)", 200, *ADMIN))
def retry(instance_id: InstanceId, pmo: Expecting, body: schema.RepairBody | None = None) -> Response:
    body = body or schema.RepairBody()
    return ok(pmo.retry(instance_id, body.data, body.reason))


@router.post("/instances/{instance_id}/skip", tags=["administration"],
             summary="Mark the failed task done without running it",
             responses=schema.answer(schema.Run, "Skipped; the instance ran on", 200, *ADMIN))
def skip(instance_id: InstanceId, pmo: Expecting, body: schema.RepairBody | None = None) -> Response:
    body = body or schema.RepairBody()
    return ok(pmo.skip(instance_id, body.data, body.reason))


@router.post("/instances/{instance_id}/data", tags=["administration"], summary="Change the data an instance is at",
             responses=schema.answer(schema.DataEdit, "Changed, with before and after (`pmoflow data --json`)",
                                     200, *ADMIN))
def edit_data(instance_id: InstanceId, body: schema.DataEditBody, pmo: Expecting) -> Response:
    return ok(pmo.edit_data(instance_id, body.set, body.reason))


@router.post("/instances/{instance_id}/migrate", tags=["administration"],
             summary="Move an instance to another version when it is safe",
             responses=schema.answer(schema.Migration, "Migrated, or what would happen (dry run)", 200, *ADMIN))
def migrate(instance_id: InstanceId, body: schema.MigrateBody, pmo: Expecting, request: Request) -> Response:
    """Refused with 409 and every reason (`result`) when it is not safe; the instance is left as it was."""
    try:
        return ok(pmo.migrate(instance_id, body.to_version, body.dry_run, body.reason))
    except MigrationRefused as refused:
        return migration_refused(request, refused)


def migration_refused(request: Request, refused: MigrationRefused) -> Response:
    problem = {**problems.body(refused), "type": problems.TYPE_BASE + "migration-refused", "status": 409,
               "title": "The instance cannot move safely", "result": refused.result}
    return problems.problem_response(request, problem)
