"""Helpers for the pages' tests: the app over the demo organisation and library, a browser-like client signed in
as one demo user, and the fields a browser posts for a form filled with some data."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web_fixtures import PASSWORD, SECRET, csrf_of, sign_in

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.web.app import create_app
from pmoflow.engine.web.form_render import Field, Form, build

__all__ = ["browser", "demo_app"]  # the fixtures, for `from page_helpers import *`

HTML = {"accept": "text/html"}
DEMO_ADMIN = "pmo.admin"


@pytest.fixture
def demo_app(demo_pmo: Pmoflow, db_url: str) -> Iterator[FastAPI]:
    """The app over a demo database (the installed PMO library and its organisation)."""
    yield create_app(db_url, secret_key=SECRET)


@pytest.fixture
def browser(demo_app: FastAPI, demo_pmo: Pmoflow) -> Iterator[Callable[[str], TestClient]]:
    """`browser("pete.pm")`: a client with its own cookies, signed in through the form as that demo user."""
    made: list[TestClient] = []
    admin = demo_pmo.acting_as(DEMO_ADMIN)

    def open_as(user: str) -> TestClient:
        admin.set_password(user, PASSWORD)
        client = TestClient(demo_app, follow_redirects=False, headers=HTML)
        client.__enter__()
        made.append(client)
        assert sign_in(client, user).status_code == 303
        return client

    yield open_as
    for client in made:
        client.__exit__(None, None, None)


def post_form(client: TestClient, page: str, fields: list[tuple[str, str]] | dict[str, str], action: str | None = None,
              **kwargs):
    """Post to `action` (default: the page itself) the fields, with the CSRF token the page's forms carry."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    data: dict[str, list[str]] = {}
    for name, value in pairs + [("csrf_token", csrf_of(client.get(page).text))]:
        data.setdefault(name, []).append(value)
    return client.post(action or page, data=data, **kwargs)


def fields_for(schema: dict, data: dict, ui: dict | None = None) -> list[tuple[str, str]]:
    """The fields a browser posts for `schema`'s form filled in with `data`."""
    return fields_of(build(schema, ui, data))


def fields_of(form: Form) -> list[tuple[str, str]]:
    """The fields a browser posts for a drawn form as it stands (no field changed)."""
    pairs: list[tuple[str, str]] = []

    def add(f: Field) -> None:
        if f.widget in ("hidden", "readonly"):
            return
        if f.widget in ("object", "tuple", "array"):
            if f.widget == "array":
                pairs.append((f.rows_name, str(len(f.children))))
            for child in f.children:
                add(child)
        elif f.widget == "checkbox":
            pairs.extend([(f.path, "true")] if f.value else [])
        elif f.widget == "checkboxes":
            pairs.extend((f.path, v) for v in f.value)
        elif f.widget == "date-range":
            pairs.extend([(f"{f.path}.start", f.value[0]), (f"{f.path}.end", f.value[1])])
        elif f.widget == "radio":
            pairs.extend([(f.path, f.value)] if f.value else [])
        else:
            pairs.append((f.path, f.value))

    for f in form.fields:
        add(f)
    return pairs


def text_of(html: str) -> str:
    """The page's text without tags, spaces squeezed: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
