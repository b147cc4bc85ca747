"""Helpers for the REST API's tests: a client per user (with a personal API token, as a REST client has), the
check that an answer has the documented shape, and reading the database's state to show a refusal changed
nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from pmoflow.engine.api import Pmoflow

BASE = "/api/v1"


class UserClient:
    """HTTP calls to the API as one user, with their bearer token (no CSRF token: none is needed)."""

    def __init__(self, client: TestClient | httpx.Client, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any):
        return self.client.request(method, BASE + path, headers={**self.headers, **(headers or {})}, **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any):
        return self.request("POST", path, **kwargs)


@pytest.fixture
def tokens(pmo: Pmoflow) -> Callable[[str], str]:
    """`tokens("erin")`: a personal API token of erin's, made once per test."""
    made: dict[str, str] = {}

    def token(user: str) -> str:
        if user not in made:
            made[user] = pmo.acting_as(user).create_token("api tests")["token"]
        return made[user]

    return token


@pytest.fixture
def api(client: TestClient, tokens: Callable[[str], str]) -> Callable[[str], UserClient]:
    """`api("erin").get("/tasks")`: the app over HTTP as erin."""
    return lambda user: UserClient(client, tokens(user))


def documented(model: Any, body: Any) -> None:
    """The answer fits its OpenAPI model (types checked), and every key it carries is documented there."""
    from pydantic import TypeAdapter

    TypeAdapter(model).validate_python(body)
    item = model.__args__[0] if getattr(model, "__origin__", None) is list else model
    rows = body if isinstance(body, list) else [body]
    assert isinstance(item, type) and issubclass(item, BaseModel)
    names = {field.alias or name for name, field in item.model_fields.items()}
    for row in rows:
        assert set(row) <= names, f"undocumented keys of {item.__name__}: {sorted(set(row) - names)}"


def problem(response, status: int, kind: str | None = None) -> dict[str, Any]:
    """The response is a problem of this status (and type); its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers["content-type"]
    body = response.json()
    assert body["status"] == status
    if kind is not None:
        assert body["type"] == f"urn:pmoflow:problem:{kind}", body
    return body


def state(pmo: Pmoflow, instance_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An instance as shown, and its history: equal before and after means nothing changed."""
    return pmo.show(instance_id), pmo.history(instance_id)
