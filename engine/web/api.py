"""The REST API at /api/v1: what staff, designers and auditors do in the CLI, with the same JSON shapes as
`--json`. Every route acts as the signed-in user through `auth.Acting` (session or bearer token) and is one call
of the Python API; errors are problem details (`problems`). `app.create_app` mounts `router`.

The routes live by noun: `api_tasks` (inbox, tasks, messages, notifications), `api_instances` (start, list,
show, history, report, administrative acts), `api_processes` (versions, diagrams, diffs, uploads, deployment,
schedules, the process report), `api_audit` (events, verify). `answers` holds how they answer (JSON, pages,
ETags and If-Match), `api_schema` the shapes the OpenAPI document describes.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pmoflow.engine.web import api_audit, api_instances, api_processes, api_tasks
from pmoflow.engine.web import api_schema as schema
from pmoflow.engine.web.answers import JSON, ok
from pmoflow.engine.web.auth import Acting

PREFIX = "/api/v1"
PROBLEM_SCHEMA = schema.PROBLEM_SCHEMA  # the problem details every error response refers to
router = APIRouter(prefix=PREFIX, default_response_class=JSON)


@router.get("/me", tags=["identity"], summary="Who the request acts as",
            responses=schema.answer(schema.Me, "`pmoflow whoami --json`"))
def me(pmo: Acting) -> Response:
    """The signed-in user (or the token's user) as the organisation knows them: `pmoflow whoami --json`."""
    return ok(pmo.whoami())


@router.get("/users", tags=["identity"], summary="The organisation's people and their roles",
            responses=schema.answer(list[schema.User], "`pmoflow users --json`"))
def users(pmo: Acting) -> Response:
    return ok(pmo.users())


for part in (api_tasks, api_instances, api_processes, api_audit):
    router.include_router(part.router)
