"""Web fixtures (import them into a test module): an app over the test database (SQLite, and PostgreSQL when
configured), passwords, and signing in as a browser does. Not a conftest.py: a second module named conftest would
shadow tests/conftest.py for every test module importing from it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select

from conftest import TEST_LIBRARY
from pmoflow.engine import audit
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.models import Event
from pmoflow.engine.services import identity
from pmoflow.engine.web.app import create_app

__all__ = ["app", "cheap_hashes", "client", "passwords"]  # the fixtures, for `from web_fixtures import *`

SECRET = "test-secret-key-" + "x" * 32
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch) -> None:
    """Argon2id at its cheapest parameters: the tests check behaviour, not the cost (each hash says its own
    parameters, so verification follows whatever made it)."""
    monkeypatch.setattr(identity, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def passwords(pmo: Pmoflow) -> Callable[..., None]:
    """`passwords("erin", ...)`: give these test users the password PASSWORD (set by alice, an administrator)."""
    def give(*users: str) -> None:
        admin = pmo.acting_as("alice")
        for user in users:
            admin.set_password(user, PASSWORD)

    return give


@pytest.fixture
def app(pmo: Pmoflow, db_url: str) -> Iterator[FastAPI]:
    yield create_app(db_url, secret_key=SECRET, libraries=[TEST_LIBRARY])


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def identity_events(pmo: Pmoflow, *types: str) -> list[dict]:
    """The identity chain's events (of these types), oldest first, as rows of dicts."""
    with pmo.db.transaction() as session:
        query = select(Event).where(Event.stream == audit.IDENTITY_STREAM).order_by(Event.seq)
        if types:
            query = query.where(Event.type.in_(types))
        return [{"type": e.type, "actor": e.actor, "payload": e.payload, "at": e.at} for e in session.scalars(query)]


def database_text(pmo: Pmoflow) -> str:
    """Every row of every table, as text: what a copy of the database would give away."""
    tables = MetaData()
    tables.reflect(pmo.db.engine)
    with pmo.db.engine.connect() as conn:
        return "\n".join(repr(tuple(row)) for table in tables.sorted_tables for row in conn.execute(table.select()))


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD):
    """Sign in through the form, as a browser does: the sign-in page, then its form posted back."""
    token = csrf_of(client.get("/sign-in").text)
    return client.post("/sign-in", data={"name": name, "password": password, "csrf_token": token})
