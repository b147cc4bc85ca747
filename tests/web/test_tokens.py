"""Personal API tokens: made and revoked through the Python API and the CLI, shown once, stored as hashes, acting
with their user's roles; and the CLI's passwd. Over HTTP against the app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import PASSWORD, database_text, identity_events, sign_in

from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidInput, NotFound, PermissionDenied
from pmoflow.engine.web.auth import Acting


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_admin_act(app: FastAPI) -> None:
    """A state-changing API route standing for the administrative acts the REST API offers: suspend."""
    @app.post("/api/v1/instances/{instance_id}/suspend")
    def suspend(instance_id: int, pmo: Acting) -> dict:
        return pmo.suspend(instance_id, reason="from the API")


def test_a_token_is_shown_once_stored_hashed_and_acts_as_its_user(pmo, make_pmo, client, caplog):
    caplog.set_level(logging.DEBUG)
    made = make_pmo("erin").create_token("laptop")
    assert made["token"].startswith("pmo_" + made["id"] + "_") and made["user"] == "erin"
    me = client.get("/api/v1/me", headers=bearer(made["token"]))
    assert me.status_code == 200 and me.json()["name"] == "erin"
    listed = make_pmo("erin").tokens()
    assert listed == [{"id": made["id"], "name": "laptop", "user": "erin", "created_at": made["created_at"],
                       "revoked_at": None}]
    secret = made["token"].partition(made["id"] + "_")[2]
    assert secret not in database_text(pmo) and secret not in caplog.text
    assert identity_events(pmo, "token_created")[0]["payload"] == {"token_id": made["id"], "name": "laptop",
                                                                   "user": "erin"}


def test_a_revoked_unknown_or_malformed_token_is_refused(make_pmo, client):
    erin = make_pmo("erin")
    made = erin.create_token("laptop")
    assert erin.revoke_token(made["id"])["revoked_at"]
    for header in (bearer(made["token"]), bearer(made["token"][:-1] + "x"), bearer("pmo_nothing"),
                   bearer(""), {"Authorization": "Basic ZXJpbjpwYXNz"}):
        response = client.get("/api/v1/me", headers=header)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_token_has_its_users_roles_and_no_more(app, pmo, make_pmo, client):
    add_admin_act(app)
    instance_id = make_pmo("bob").start("simple", {"title": "abc", "amount": 1})["instance_id"]
    erins, bobs = make_pmo("erin").create_token("script"), make_pmo("bob").create_token("script")
    refused = client.post(f"/api/v1/instances/{instance_id}/suspend", headers=bearer(erins["token"]))
    assert refused.status_code == 403
    problem = refused.json()
    assert refused.headers["content-type"] == "application/problem+json"
    assert problem["type"].endswith("permission-denied") and "erin holds Project Manager" in problem["detail"]
    assert pmo.show(instance_id)["status"] != "suspended"
    done = client.post(f"/api/v1/instances/{instance_id}/suspend", headers=bearer(bobs["token"]))
    assert done.status_code == 200 and pmo.show(instance_id)["status"] == "suspended"  # no CSRF for a token
    history = pmo.history(instance_id)
    assert [e["actor"] for e in history if e["type"] == "suspend"] == ["bob"]


def test_a_session_post_to_the_api_needs_the_csrf_header(app, client, passwords, make_pmo):
    add_admin_act(app)
    instance_id = make_pmo("bob").start("simple", {"title": "abc", "amount": 1})["instance_id"]
    passwords("bob")
    sign_in(client, "bob")
    assert client.post(f"/api/v1/instances/{instance_id}/suspend").status_code == 403
    page = client.get("/", headers={"accept": "text/html"}).text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(f"/api/v1/instances/{instance_id}/suspend", headers={"X-CSRF-Token": token})
    assert response.status_code == 200


def test_who_may_list_and_revoke_whose_tokens(pmo, make_pmo):
    erin, carol, alice = make_pmo("erin"), make_pmo("carol"), make_pmo("alice")
    made = erin.create_token("laptop")
    with pytest.raises(NotFound):
        carol.revoke_token(made["id"])
    with pytest.raises(PermissionDenied):
        carol.tokens(all_users=True)
    assert [t["user"] for t in alice.tokens(all_users=True)] == ["erin"] and alice.tokens() == []
    assert alice.revoke_token(made["id"])["revoked_at"]  # an administrator may revoke anyone's
    with pytest.raises(InvalidInput):
        erin.create_token("   ")


def cli(db_url: str, *args: str, user: str | None = None, stdin: str | None = None):
    argv = ["--db", db_url] + (["--user", user] if user else [])
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(main, [*argv, *args], input=stdin)


def test_the_cli_makes_lists_and_revokes_tokens(db_url, pmo, app):
    made = cli(db_url, "token", "create", "reporting job", user="erin")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("pmo_") and "not shown again" in made.stderr
    listed = json.loads(cli(db_url, "token", "list", "--json", user="erin").stdout)
    assert [t["name"] for t in listed] == ["reporting job"] and token not in json.dumps(listed)
    with TestClient(app) as client:
        assert client.get("/api/v1/me", headers=bearer(token)).json()["name"] == "erin"
        revoked = cli(db_url, "token", "revoke", listed[0]["id"], user="erin")
        assert revoked.exit_code == 0 and "revoked" in revoked.stdout
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    refused = cli(db_url, "token", "list", "--all", user="erin")
    assert refused.exit_code == 4 and refused.stderr.startswith("error: ")


def test_the_cli_sets_passwords_from_a_hidden_prompt_or_stdin(db_url, pmo, app):
    prompted = cli(db_url, "passwd", "erin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output and "password of erin set (by erin)" in prompted.stdout
    mismatch = cli(db_url, "passwd", "erin", stdin=f"{PASSWORD}\nsomething else entirely\n")
    assert mismatch.exit_code != 0
    short = cli(db_url, "passwd", "carol", "--password-stdin", user="alice", stdin="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.stderr
    refused = cli(db_url, "passwd", "carol", "--password-stdin", user="erin", stdin=f"{PASSWORD}\n")
    assert refused.exit_code == 4
    by_admin = cli(db_url, "passwd", "carol", "--password-stdin", user="alice", stdin=f"{PASSWORD}\n")
    assert by_admin.exit_code == 0 and "(by alice)" in by_admin.stdout
    with TestClient(app, follow_redirects=False) as client:
        assert sign_in(client, "erin").status_code == 303
        assert sign_in(client, "carol").status_code == 303
