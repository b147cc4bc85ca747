"""The designer's part of the REST API: deployed processes and their versions, a version's diagram, what changed
between two, validating and deploying an uploaded bundle (the linter's findings as JSON, with file and line),
moving every instance of a version, the start schedules; and the process report over a period."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Path, Query, Request, UploadFile
from fastapi.responses import Response

from pmoflow.engine.errors import PmoflowError
from pmoflow.engine.parser import InvalidFiles
from pmoflow.engine.web import api_schema as schema
from pmoflow.engine.web import problems, uploads
from pmoflow.engine.web.answers import JSON, ok
from pmoflow.engine.web.api_instances import rendered
from pmoflow.engine.web.auth import Acting

router = APIRouter(default_response_class=JSON)

ProcessId = Annotated[str, Path(description="The process's id (its BPMN process id).")]
Version = Annotated[int, Query(ge=1, le=2**31 - 1)]
Files = Annotated[list[UploadFile], File(description="One or more .bpmn, .dmn and .json (form) files, or one "
                                                     ".zip of them (folders inside kept, e.g. forms/).")]
UPLOAD_DOC = ("multipart/form-data, field `files`; at most the server's upload limit (5 MB by default) in all, "
              "a zip's content counted unpacked.")


@router.get("/processes", tags=["processes"], summary="Deployed processes at their newest version",
            responses=schema.answer(list[schema.Definition], "`pmoflow processes --json`"))
def processes(pmo: Acting) -> Response:
    return ok(pmo.processes())


@router.get("/processes/{process_id}/versions", tags=["processes"], summary="Every deployed version of a process",
            responses=schema.answer(list[schema.Definition], "Oldest first", 200, 404))
def versions(process_id: ProcessId, pmo: Acting) -> Response:
    return ok(pmo.versions(process_id))


@router.get("/processes/{process_id}/diagram", tags=["processes"], summary="A version's diagram as SVG",
            response_class=Response, responses=schema.media("image/svg+xml", "The diagram (`pmoflow diagram`)",
                                                            400, 404))
def diagram(process_id: ProcessId, pmo: Acting,
            version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Default: the newest.")] = None,
            ) -> Response:
    return Response(pmo.diagram(process_id, version), media_type="image/svg+xml")


@router.get("/processes/{process_id}/diff", tags=["processes"], summary="What changed between two versions",
            responses=schema.answer(schema.Diff, "`pmoflow diff P FROM TO --json`", 200, 400, 404))
def diff(process_id: ProcessId, pmo: Acting,
         from_version: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
         to_version: Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)]) -> Response:
    return ok(pmo.diff(process_id, from_version, to_version))


@router.post("/processes/validate", tags=["processes"], summary="Lint an uploaded bundle (nothing is stored)",
             description=UPLOAD_DOC,
             responses=schema.answer(schema.Validation, "No errors (warnings may be listed)", 200, 400, 413, 422))
def validate(files: Files, pmo: Acting, request: Request) -> Response:
    """Every finding with the file's name as uploaded, its line and column; 422 with `findings` on errors."""
    with uploads.bundle(files, request.app.state.settings.max_upload_bytes) as upload:
        try:
            findings = pmo.validate([*upload.model_folders()])
        except PmoflowError as refused:
            return refused_upload(request, refused, upload)
        return ok({"findings": [upload.relative(f) for f in findings], "files": upload.files,
                   "ignored": upload.ignored})


@router.post("/processes", tags=["processes"], summary="Deploy an uploaded bundle",
             description=UPLOAD_DOC,
             responses=schema.answer(schema.Deployment, "Deployed: a new version of each process that changed",
                                     200, 400, 403, 413, 422))
def deploy(files: Files, pmo: Acting, request: Request) -> Response:
    """Needs the role Process Designer or PMO Administrator (403). The files are validated first: any error
    refuses the whole bundle with 422 and every finding; running instances stay on their versions."""
    with uploads.bundle(files, request.app.state.settings.max_upload_bytes) as upload:
        try:
            findings = pmo.validate([*upload.model_folders()])
            deployed = pmo.deploy([*upload.model_folders()])
        except PmoflowError as refused:
            return refused_upload(request, refused, upload)
        return ok({"deployed": deployed, "findings": [upload.relative(f) for f in findings],
                   "files": upload.files, "ignored": upload.ignored})


def refused_upload(request: Request, refused: PmoflowError, upload: uploads.Bundle) -> Response:
    """The refusal as a problem whose messages name the files as uploaded, with every finding of a bundle that
    does not validate."""
    problem = {**problems.body(refused), "detail": upload.text(refused.message)}
    if refused.details:
        problem["details"] = [upload.text(line) for line in refused.details]
    if isinstance(refused, InvalidFiles):
        problem["findings"] = [upload.relative(f) for f in refused.findings]
    return problems.problem_response(request, problem)


@router.post("/processes/{process_id}/migrate", tags=["administration"],
             summary="Move every unfinished instance of one version to another",
             responses=schema.answer(schema.BulkMigration, "Each instance's outcome (`pmoflow migrate --process "
                                                           "--json`)", 200, 400, 403, 404))
def migrate_all(process_id: ProcessId, body: schema.BulkMigrateBody, pmo: Acting) -> Response:
    """PMO Administrators only (a dry run: anyone). Each instance moves in its own transaction; a refused one
    is listed with its reasons and left as it was."""
    return ok(pmo.migrate_all(process_id, body.from_version, body.to_version, body.dry_run, reason=body.reason))


@router.get("/processes/{process_id}/report", tags=["audit"], summary="The process report over a period",
            response_class=Response,
            responses=schema.report(schema.ProcessReport, "`pmoflow report --process P --format ...`: counts, "
                                    "cycle times, overrides, late tasks; JSON inline, HTML or Markdown as a download"))
def process_report(
        process_id: ProcessId, pmo: Acting,
        since: Annotated[str | None, Query(description="From this date or time (ISO, UTC unless a zone is "
                                                       "given).")] = None,
        until: Annotated[str | None, Query(description="Up to this date (inclusive) or time.")] = None,
        period: Annotated[str | None, Query(description="A whole period instead: 2027, 2027-Q1, 2027-03 or "
                                                        "2027-03-31.")] = None,
        override: Annotated[str | None, Query(description="SUBMITTED=RECOMMENDED: list the submissions that "
                                                          "differ, e.g. data.gateDecision=outputs.recommendation"
                                          )] = None,
        format: Annotated[Literal["html", "md", "json"], Query(description="The report's format.")] = "json",
) -> Response:
    result = pmo.process_report(process_id, since=since, until=until, period=period, override=override)
    return rendered(result, format, f"{process_id}-report")


@router.get("/schedules", tags=["processes"], summary="Timer start events and when each fires next",
            responses=schema.answer(list[schema.Schedule], "`pmoflow schedules --json`"))
def schedules(pmo: Acting) -> Response:
    return ok(pmo.schedules())

