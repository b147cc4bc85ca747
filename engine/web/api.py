"""The REST API at /api/v1: what staff, designers and auditors do in the CLI, with the same JSON shapes as
`--json`. Every route acts as the signed-in user through `auth.acting` (session or bearer token); errors are
problem details (`problems`). Add routes to `router`; `app.create_app` mounts it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pmoflow.engine.web.auth import Acting

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX)


@router.get("/me", tags=["identity"], summary="Who the request acts as")
def me(pmo: Acting) -> dict[str, Any]:
    """The signed-in user (or the token's user) as the organisation knows them: `pmoflow whoami --json`."""
    return pmo.whoami()
