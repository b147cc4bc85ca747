"""The Jinja2 templates of the pages (autoescaped), with what every page shows: who is signed in, and the CSRF
token its forms carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from pmoflow.engine.web.auth import CSRF_FIELD, csrf_for

FOLDER = Path(__file__).parent / "templates"


def _common(request: Request) -> dict[str, Any]:
    return {"user": getattr(request.state, "user", None), "csrf_token": csrf_for(request), "csrf_field": CSRF_FIELD}


templates = Jinja2Templates(directory=FOLDER, context_processors=[_common])


def page(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200,
         headers: dict[str, str] | None = None) -> Response:
    """Render a page of templates/ for this request."""
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code, headers=headers)
