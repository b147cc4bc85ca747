"""The server-rendered pages (Jinja2 templates in templates/, CSS in static/). Every page acts as the signed-in
user through `auth.acting`; its forms carry the CSRF token (`{{ csrf_token }}` in every template). Add routes to
`router`; `app.create_app` mounts it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pmoflow.engine.web.auth import Acting
from pmoflow.engine.web.templates import page

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request, pmo: Acting) -> Response:
    return page(request, "home.html", {"me": pmo.whoami()})
