"""The web app's skeleton over HTTP: who may reach which route, sign-in by form, the per-request façade acting as
the signed-in user, problem details, security headers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import SECRET, sign_in

from conftest import TEST_LIBRARY
from pmoflow.engine.errors import Conflict, InvalidForm, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from pmoflow.engine.services.tasks import DutyRefused
from pmoflow.engine.web.app import create_app
from pmoflow.engine.web.auth import Acting
from pmoflow.engine.web.settings import Settings

PUBLIC_PATHS = {"/sign-in", "/health"}  # and /static: the stylesheet the sign-in page needs


def test_nothing_but_sign_in_and_health_answers_without_credentials(app, client):
    """Every route of the app, whatever its method, is refused with 401 without a session or token."""
    walked = 0
    for route in iter_route_contexts(app.routes):
        if route.methods is None:  # a mount: only the static files are
            assert route.path == "/static", route.path
            continue
        for method in route.methods:
            path = route.path_format.replace("{", "").replace("}", "")  # path parameters get their own names
            response = client.request(method, path)
            if route.path in PUBLIC_PATHS:
                assert response.status_code != 401, (method, path)
            else:
                walked += 1
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["status"] == 401
    assert walked >= 4


def test_a_browser_without_a_session_gets_the_sign_in_form_with_401(client):
    response = client.get("/", headers={"accept": "text/html"})
    assert response.status_code == 401
    assert '<label for="password">' in response.text and 'name="next" value="/"' in response.text


def test_health_answers_without_sign_in_and_says_the_schema_state(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "schema": "current"}


def test_signing_in_gives_a_session_that_acts_as_the_user(client, passwords):
    passwords("erin")
    response = sign_in(client, "erin")
    assert response.status_code == 303 and response.headers["location"] == "/"
    me = client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["name"] == "erin" and me.json()["roles"] == ["Project Manager"]
    assert "erin" in client.get("/").text


def test_a_wrong_password_is_refused_with_the_form_again(client, passwords):
    passwords("erin")
    response = sign_in(client, "erin", "not the password at all")
    assert response.status_code == 401
    assert "wrong user name or password" in response.text and 'value="erin"' in response.text
    assert client.get("/api/v1/me").status_code == 401


def test_openapi_and_its_docs_page_are_served_to_the_signed_in(client, passwords):
    passwords("erin")
    sign_in(client, "erin")
    document = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/me" in document["paths"] and "bearer" in document["components"]["securitySchemes"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and "GET /api/v1/me" in docs.text and "<script" not in docs.text


def test_every_response_carries_the_security_headers(client):
    for path in ("/health", "/sign-in", "/api/v1/me", "/static/pmoflow.css", "/no-such-page"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "same-origin", path


def error_routes(app: FastAPI) -> None:
    """Routes raising each kind of engine error, as a service would under them."""
    raising = {
        "not-found": NotFound("no instance 99"), "conflict": Conflict("someone else took the task"),
        "stale": PreconditionFailed("the task changed since version 3"),
        "invalid-form": InvalidForm("the data does not fit form f.json (2 error(s))",
                                    ["title: 'title' is a required property", "amount: -1 is less than 0"]),
        "invalid-input": InvalidInput("the data must be a JSON object"),
        "role": PermissionDenied("suspending needs the role PMO Administrator; erin holds Project Manager"),
        "duty": DutyRefused("erin approved the request and may not also review it", 1, 2, "erin", "approve_request"),
        "bug": RuntimeError("a bug's inner details"),
    }
    def raises(error: Exception):
        def endpoint(pmo: Acting) -> None:
            raise error

        return endpoint

    for name, error in raising.items():
        app.add_api_route(f"/api/v1/errors/{name}", raises(error), methods=["GET"])
        app.add_api_route(f"/errors/{name}", raises(error), methods=["GET"])  # as a page would


def test_engine_errors_are_problem_details_with_their_status(app, passwords):
    error_routes(app)
    passwords("erin")
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, "erin")
        expected = {"not-found": 404, "conflict": 409, "stale": 412, "invalid-form": 422, "invalid-input": 400,
                    "role": 403, "duty": 403, "bug": 500}
        answers = {name: client.get(f"/api/v1/errors/{name}") for name in expected}
    for name, status in expected.items():
        assert answers[name].status_code == status, name
        assert answers[name].headers["content-type"] == "application/problem+json", name
        assert answers[name].json()["status"] == status, name
        assert "frame-ancestors 'none'" in answers[name].headers["content-security-policy"], name
    form = answers["invalid-form"].json()
    assert form["errors"] == [{"field": "title", "message": "'title' is a required property"},
                              {"field": "amount", "message": "-1 is less than 0"}]
    assert answers["duty"].json()["rule"] == "approve_request"
    assert answers["duty"].json()["exit_code"] == 4 and "may not also review" in answers["duty"].json()["detail"]
    assert "inner details" not in answers["bug"].text


def test_a_browser_gets_problems_as_a_page(app, client, passwords):
    error_routes(app)
    passwords("erin")
    sign_in(client, "erin")
    page = client.get("/errors/invalid-form", headers={"accept": "text/html"})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "<strong>title</strong>: &#39;title&#39; is a required property" in page.text
    missing = client.get("/no-such-page", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "<h1>Not Found</h1>" in missing.text
    api = client.get("/api/v1/errors/role", headers={"accept": "text/html"})  # the API answers JSON regardless
    assert api.status_code == 403 and api.headers["content-type"] == "application/problem+json"


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(pmo, db_url, passwords):
    passwords("erin")
    small = create_app(db_url, settings=Settings(secret_key=SECRET, max_upload_bytes=1000), libraries=[TEST_LIBRARY])
    with TestClient(small, follow_redirects=False) as client:
        sign_in(client, "erin")
        refused = client.post("/sign-out", content=b"x" * 1001, headers={"content-type": "text/plain"})
        assert refused.status_code == 413 and refused.json()["status"] == 413
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert client.get("/api/v1/me").status_code == 200


def test_a_trusted_proxy_header_signs_in_only_when_configured_and_from_the_proxy(pmo, db_url, monkeypatch):
    header = {"X-Remote-User": "erin"}
    plain = create_app(db_url, secret_key=SECRET, libraries=[TEST_LIBRARY])
    with TestClient(plain) as client:
        assert client.get("/api/v1/me", headers=header).status_code == 401
    proxied = create_app(db_url, settings=Settings(secret_key=SECRET, trusted_proxy="10.0.0.1"),
                         libraries=[TEST_LIBRARY])
    with TestClient(proxied, client=("10.0.0.1", 4000)) as client:
        assert client.get("/api/v1/me", headers=header).json()["name"] == "erin"
        assert client.get("/api/v1/me", headers={"X-Remote-User": "nobody"}).status_code == 401
    with TestClient(proxied, client=("10.0.0.2", 4000)) as client:
        assert client.get("/api/v1/me", headers=header).status_code == 401
    monkeypatch.setenv("PMOFLOW_TRUSTED_PROXY", "10.0.0.1")  # what `serve --trusted-proxy` sets
    with TestClient(create_app(db_url, secret_key=SECRET, libraries=[TEST_LIBRARY]), client=("10.0.0.1", 1)) as client:
        assert client.get("/api/v1/me", headers=header).json()["name"] == "erin"


def test_views_share_the_apps_database_and_closing_one_closes_nothing(pmo):
    view = pmo.acting_as("erin")
    assert view.db is pmo.db and view.whoami()["name"] == "erin" and pmo.user == "alice"
    view.close()
    assert pmo.whoami()["name"] == "alice" and pmo.acting_as("carol").whoami()["roles"] == ["Quality Director"]
