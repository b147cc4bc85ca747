"""The designer's pages: deployed processes and their versions, a version's diagram, what changed between two
versions, and uploading a bundle (BPMN, DMN and form files, or one zip of them) to check it or deploy it, its
findings shown as `file:line:column` with the element and a hint (`pmoflow validate` / `deploy`).

The upload is bounded (the app's body limit, and `uploads.bundle` for a zip's content) and written to a
temporary folder that is removed once checked: nothing is kept between requests, so "Check" and "Deploy" are
two buttons of one upload form rather than two steps.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PmoflowError
from pmoflow.engine.parser import InvalidFiles
from pmoflow.engine.web import uploads
from pmoflow.engine.web.auth import Acting
from pmoflow.engine.web.problems import classify
from pmoflow.engine.web.workspace import Posted, diagram_markup, field_text, problem_of, render

router = APIRouter(include_in_schema=False)


def _designer(request: Request, pmo: Pmoflow, status: int = 200, **values: Any) -> Response:
    return render(request, pmo, "designer.html", {"section": "designer", "processes": pmo.processes(), **values},
                  status_code=status)


@router.get("/designer")
def designer(request: Request, pmo: Acting) -> Response:
    return _designer(request, pmo)


@router.post("/designer/upload")
def upload(request: Request, pmo: Acting, posted: Posted) -> Response:
    """Check (`validate`) or deploy an uploaded bundle, and show every finding with its file and line."""
    action = field_text(posted, "action") or "check"
    files = [f for f in posted.getlist("files") if isinstance(f, UploadFile) and f.filename]
    limit = request.app.state.settings.max_upload_bytes
    try:
        if action not in ("check", "deploy"):
            raise InvalidInput(f"no such action '{action[:20]}': check or deploy")
        with uploads.bundle(files, limit) as bundle:
            try:
                if action == "deploy":
                    deployed = pmo.deploy([bundle.folder])
                    findings = [bundle.relative(f) for f in pmo.validate([bundle.folder])]
                else:
                    deployed, findings = None, [bundle.relative(f) for f in pmo.validate([bundle.folder])]
            except InvalidFiles as refused:
                findings = [bundle.relative(f) for f in refused.findings]
                return _designer(request, pmo, 422, findings=findings, files=bundle.files, action=action,
                                 refused=True, ignored=bundle.ignored)
            return _designer(request, pmo, 200, findings=findings, files=bundle.files, action=action,
                             deployed=deployed, ignored=bundle.ignored)
    except PmoflowError as exc:
        return _designer(request, pmo, classify(exc)[0], problem=problem_of(exc), action=action)


@router.get("/designer/{process_id}")
def process_page(request: Request, process_id: str, pmo: Acting, version: int | None = None,
                 from_version: int | None = None, to_version: int | None = None) -> Response:
    """A process's versions, the diagram of one (the newest by default), and the diff of two when asked."""
    versions = pmo.versions(process_id)
    shown = version or versions[-1]["version"]
    diff, diff_problem, drawing, drawing_note = None, None, None, None
    try:
        drawing = diagram_markup(pmo.diagram(process_id, shown), label=f"Diagram of {process_id} v{shown}")
    except PmoflowError as exc:
        drawing_note = exc.message
    if from_version is not None and to_version is not None:
        try:
            diff = pmo.diff(process_id, from_version, to_version)
        except PmoflowError as exc:
            diff_problem = problem_of(exc)
    return render(request, pmo, "designer_process.html", {
        "section": "designer", "process_id": process_id, "versions": versions, "shown": shown,
        "diagram": drawing, "diagram_note": drawing_note, "diff": diff, "problem": diff_problem,
        "from_version": from_version or (versions[-2]["version"] if len(versions) > 1 else shown),
        "to_version": to_version or versions[-1]["version"]})
