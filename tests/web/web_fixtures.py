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

from conftest import TEST_LIBRARY
from pmoflow.engine.api import Pmoflow
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


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD):
    """Sign in through the form, as a browser does: the sign-in page, then its form posted back."""
    token = csrf_of(client.get("/sign-in").text)
    return client.post("/sign-in", data={"name": name, "password": password, "csrf_token": token})
