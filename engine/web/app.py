"""The web app: the only place its middleware, error handlers and routers are assembled.

    from pmoflow.engine.web.app import create_app
    app = create_app("postgresql://pmo@db/pmo")      # then: uvicorn, or `pmoflow serve`

One `Pmoflow` (one database engine and pool, the installed libraries) serves every request; each request acts
through `installation.acting_as(signed-in user)`, a view sharing it. Nothing is kept between requests but in the
database and the signed cookie, so several server processes or hosts can serve one PostgreSQL database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.library import Library
from pmoflow.engine.web import api, auth, pages, problems
from pmoflow.engine.web.security import BodyLimit, SecurityHeaders
from pmoflow.engine.web.settings import Settings
from pmoflow.engine.web.settings import secret_key as find_secret_key
from pmoflow.engine.web.templates import page

STATIC = Path(__file__).parent / "static"
OPENAPI_PATH, DOCS_PATH = f"{api.PREFIX}/openapi.json", f"{api.PREFIX}/docs"


def create_app(db_url: str | None = None, *, secret_key: str | None = None, settings: Settings | None = None,
               libraries: list[Library] | None = None) -> FastAPI:
    """The ASGI app over the database at `db_url` (default: `PMOFLOW_DB`, then ./pmoflow.db). The secret key
    signing cookies comes from `settings`, `secret_key`, or `settings.secret_key(db_url)`; without `settings`,
    `PMOFLOW_TRUSTED_PROXY` turns single sign-on on (`Settings.from_environment`)."""
    settings = settings or Settings.from_environment(secret_key or find_secret_key(db_url))
    installation = Pmoflow(db_url, libraries=libraries)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        installation.close()

    app = FastAPI(title="pmoflow", version="1", summary="Run a PMO's processes as BPMN: the REST API",
                  openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan,
                  dependencies=[Depends(auth.authenticate)])
    app.state.pmoflow, app.state.settings, app.state.sessions = installation, settings, auth.Sessions(settings)
    problems.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)  # the outermost: its headers reach every response, a 413 included
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    _add_service_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_service_routes(app: FastAPI) -> None:
    @app.get("/health", include_in_schema=False)
    @auth.public
    def health(request: Request) -> JSONResponse:
        """For load balancers and monitors: no sign-in; says ok and whether the schema is current."""
        state = request.app.state.pmoflow.db.schema_state()
        return JSONResponse({"status": "ok" if state == "current" else "unavailable", "schema": state},
                            status_code=200 if state == "current" else 503)

    @app.get(OPENAPI_PATH, include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(openapi_document(app))

    @app.get(DOCS_PATH, include_in_schema=False, response_class=HTMLResponse)
    def docs(request: Request) -> Response:
        """The API described from its OpenAPI document, rendered on the server (no script from anywhere)."""
        return page(request, "api_docs.html", {"doc": openapi_document(app), "openapi_path": OPENAPI_PATH})


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document, saying how clients authenticate (a bearer token, or the session cookie)."""
    if app.openapi_schema is None:
        document = app.openapi()
        document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = api.PROBLEM_SCHEMA
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "A personal API token: `pmoflow token create NAME`"},
            "session": {"type": "apiKey", "in": "cookie", "name": auth.COOKIE,
                        "description": "A signed-in browser session; state-changing calls also send the "
                                       "X-CSRF-Token header"}}
        document["security"] = [{"bearer": []}, {"session": []}]
    return app.openapi_schema or {}


def app_from_env() -> FastAPI:
    """The factory `pmoflow serve --workers N` hands to uvicorn: each worker process builds its app from the
    environment the command set (`PMOFLOW_DB`, and the secret key's variables)."""
    return create_app(os.environ.get("PMOFLOW_DB"))
