"""The web app's skeleton over HTTP: who may reach which route, sign-in by form, the per-request façade acting as
the signed-in user, problem details, security headers."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import sign_in

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
