"""Signing in and out of the web workspace: passwords, throttling, sessions (fixation, sign-out), CSRF, and the
identity audit chain. Over HTTP against the app, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading

import pytest
from fastapi.testclient import TestClient
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import PASSWORD, csrf_of, database_text, identity_events, sign_in

from pmoflow.engine.errors import InvalidInput, NotFound, PermissionDenied
from pmoflow.engine.services import identity
from pmoflow.engine.web.auth import COOKIE


def test_a_password_is_stored_as_an_argon2id_hash_and_sign_in_records_no_secret(pmo, client, passwords, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, SQLAlchemy's statements included
    passwords("erin")
    assert sign_in(client, "erin", "a wrong password, typed").status_code == 401
    assert sign_in(client, "erin").status_code == 303
    dump = database_text(pmo)
    assert "$argon2id$" in dump
    for secret in (PASSWORD, "a wrong password, typed"):
        assert secret not in dump
        assert secret not in caplog.text
    failed, signed = identity_events(pmo, "sign_in_failed", "signed_in")
    assert failed["actor"] == "erin" and failed["payload"]["reason"] == "wrong password"
    assert signed["actor"] == "erin" and signed["payload"]["user"] == "erin"
    assert "testclient" in (signed["payload"]["client"] or "")


def test_refusals_read_the_same_whatever_was_wrong_and_record_why(pmo, client, passwords):
    passwords("erin")
    for name, password in (("erin", "not the right one"), ("nobody", PASSWORD), ("carol", PASSWORD)):
        response = sign_in(client, name, password)
        assert response.status_code == 401 and "wrong user name or password" in response.text
    reasons = [e["payload"]["reason"] for e in identity_events(pmo, "sign_in_failed")]
    assert reasons == ["wrong password", "unknown user", "no password set"]


def test_five_failures_throttle_the_name_with_429_and_retry_after(pmo, client, passwords):
    passwords("erin", "carol")
    for _ in range(identity.MAX_FAILURES):
        assert sign_in(client, "erin", "wrong password!").status_code == 401
    refused = sign_in(client, "erin")  # even the right password is not checked now
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= identity.THROTTLE_WINDOW.total_seconds() + 1
    assert client.get("/api/v1/me").status_code == 401
    assert sign_in(client, "carol").status_code == 303  # another name is not held back
    throttled = identity_events(pmo, "sign_in_throttled")
    assert [e["actor"] for e in throttled] == ["erin"] and throttled[0]["payload"]["retry_after"] > 0
    assert len(identity_events(pmo, "sign_in_failed")) == identity.MAX_FAILURES
    with pytest.raises(identity.Throttled):
        pmo.sign_in("erin", PASSWORD)


def test_a_successful_sign_in_clears_the_failures_before_it(client, passwords):
    passwords("erin")
    for _ in range(identity.MAX_FAILURES - 1):
        sign_in(client, "erin", "wrong password!")
    assert sign_in(client, "erin").status_code == 303
    for _ in range(identity.MAX_FAILURES - 1):
        sign_in(client, "erin", "wrong password!")
    assert sign_in(client, "erin").status_code == 303


def test_signing_in_issues_a_new_session_id_and_a_planted_one_stays_anonymous(app, client, passwords):
    passwords("erin")
    client.get("/sign-in")
    planted = client.cookies.get(COOKIE)
    assert sign_in(client, "erin").status_code == 303
    signed_in = client.cookies.get(COOKIE)
    assert planted and signed_in and planted != signed_in
    with TestClient(app) as attacker:
        attacker.cookies.set(COOKIE, planted)
        assert attacker.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me").json()["name"] == "erin"


def test_the_session_cookie_is_httponly_lax_and_bounded(client, passwords):
    passwords("erin")
    header = sign_in(client, "erin").headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=lax" in header and "Max-Age=28800" in header
    assert "Secure" not in header  # plain http on the test server; https requests get Secure


def test_sign_out_ends_the_session_everywhere(app, client, passwords, pmo):
    passwords("erin")
    sign_in(client, "erin")
    copied = client.cookies.get(COOKIE)
    page = client.get("/", headers={"accept": "text/html"})
    response = client.post("/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"].startswith("/sign-in")
    assert client.get("/api/v1/me").status_code == 401
    with TestClient(app) as replay:  # a copy of the cookie taken before sign-out is worth nothing after it
        replay.cookies.set(COOKIE, copied)
        assert replay.get("/api/v1/me").status_code == 401
    assert [e["actor"] for e in identity_events(pmo, "signed_out")] == ["erin"]


def test_state_changing_requests_with_the_session_need_its_csrf_token(app, client, passwords):
    passwords("erin", "carol")
    sign_in(client, "erin")
    assert client.post("/sign-out").status_code == 403
    assert client.post("/sign-out", data={"csrf_token": "0" * 64}).status_code == 403
    with TestClient(app) as other:  # a token is bound to its session: carol's page does not serve erin's session
        sign_in(other, "carol")
        carols = csrf_of(other.get("/", headers={"accept": "text/html"}).text)
    refused = client.post("/sign-out", data={"csrf_token": carols})
    assert refused.status_code == 403 and refused.json()["type"].endswith("permission-denied")
    assert client.get("/api/v1/me").json()["name"] == "erin"  # still signed in
    mine = csrf_of(client.get("/", headers={"accept": "text/html"}).text)
    assert client.post("/sign-out", headers={"X-CSRF-Token": mine}).status_code == 303


def test_the_sign_in_form_needs_its_csrf_token(client, passwords):
    passwords("erin")
    client.get("/sign-in")
    refused = client.post("/sign-in", data={"name": "erin", "password": PASSWORD, "csrf_token": "forged"})
    assert refused.status_code == 403 and "expired" in refused.text
    assert client.get("/api/v1/me").status_code == 401


def test_after_sign_in_the_browser_goes_where_it_was_going_on_this_site_only(client, passwords):
    passwords("erin")
    form = client.get("/sign-in?next=/api/v1/docs")
    assert 'name="next" value="/api/v1/docs"' in form.text
    for target, expected in (("/api/v1/docs", "/api/v1/docs"), ("//evil.example/", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):
        token = csrf_of(client.get("/sign-in").text)
        response = client.post("/sign-in", data={"name": "erin", "password": PASSWORD, "csrf_token": token,
                                                 "next": target})
        assert response.headers["location"] == expected, target


def test_who_may_set_a_password_and_the_policy(pmo, make_pmo):
    erin, admin = make_pmo("erin"), pmo.acting_as("alice")
    assert erin.set_password("erin", "twelve chars!")["set_by"] == "erin"
    with pytest.raises(PermissionDenied, match="another user's password needs the role PMO Administrator"):
        erin.set_password("carol", "twelve chars!")
    with pytest.raises(InvalidInput, match="at least 12 characters"):
        admin.set_password("carol", "short")
    with pytest.raises(InvalidInput, match="may not be the user name"):
        admin.set_password("carol", "  CAROL  ")
    with pytest.raises(NotFound, match="no user 'zed'"):
        admin.set_password("zed", "twelve chars!")
    assert admin.set_password("carol", "twelve chars!")["set_by"] == "alice"
    assert [e["payload"]["user"] for e in identity_events(pmo, "password_set")] == ["erin", "carol"]


def test_a_new_password_ends_the_users_sessions(client, passwords, pmo):
    passwords("erin")
    sign_in(client, "erin")
    pmo.acting_as("erin").set_password("erin", "an entirely new passphrase")
    assert client.get("/api/v1/me").status_code == 401


def test_the_identity_chain_verifies_with_the_rest_of_the_record(pmo, client, passwords):
    passwords("erin")
    sign_in(client, "erin", "wrong password!")
    sign_in(client, "erin")
    result = pmo.verify_record()
    assert result["ok"], result["findings"]


def test_attempts_made_at_once_cannot_slip_past_the_throttle(pmo, passwords):
    """Eight wrong passwords at the same moment: the throttle is checked again as each outcome is written, so five
    are recorded as failures and the rest are held back."""
    passwords("erin")
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            pmo.sign_in("erin", "a wrong password, again")
        except identity.Throttled:
            outcomes.append("throttled")
        except identity.SignInRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * identity.MAX_FAILURES + ["throttled"] * 3
    assert len(identity_events(pmo, "sign_in_failed")) == identity.MAX_FAILURES
    assert pmo.verify_record()["ok"]


def test_over_https_the_cookie_is_secure_and_hsts_is_sent(app, passwords):
    passwords("erin")
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        response = sign_in(client, "erin")
        assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert client.get("/api/v1/me").json()["name"] == "erin"
