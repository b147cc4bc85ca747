"""`pmoflow serve --check` and the secret key it finds or creates; `demo --serve`'s passwords. (The server itself
runs in test_uvicorn.py.)"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_tokens import cli
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import SECRET, sign_in

from pmoflow.engine.web import server
from pmoflow.engine.web.app import create_app


def test_serve_check_finds_or_creates_the_secret_key_file(db_url, pmo, tmp_path, monkeypatch):
    monkeypatch.delenv("PMOFLOW_SECRET_KEY", raising=False)
    monkeypatch.delenv("PMOFLOW_SECRET_KEY_FILE", raising=False)
    if db_url.startswith("sqlite"):
        key = Path(db_url.removeprefix("sqlite:///") + ".secret-key")  # beside the database file
    else:
        refused = cli(db_url, "serve", "--check")
        assert refused.exit_code == 1 and "set PMOFLOW_SECRET_KEY_FILE" in refused.stderr
        key = tmp_path / "web.secret-key"
        monkeypatch.setenv("PMOFLOW_SECRET_KEY_FILE", str(key))
    assert not key.exists()
    result = cli(db_url, "serve", "--check", "--port", "8099", "--with-worker")
    assert result.exit_code == 0, result.output
    assert "ready to serve" in result.stdout and ":8099/" in result.stdout and "the worker" in result.stdout
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    assert key.read_text() not in result.output


def test_the_demo_gives_every_user_a_demo_password_they_sign_in_with(demo_pmo, db_url):
    people = server.demo_passwords(db_url)
    assert len(people) == len(demo_pmo.users()) and {p["password"] for p in people} == {
        server.DEMO_PASSWORD.format(name=p["name"]) for p in people}
    assert server.demo_administrator() == "pmo.admin"
    with TestClient(create_app(db_url, secret_key=SECRET), follow_redirects=False) as client:
        for person in (people[0], people[-1]):
            assert sign_in(client, person["name"], person["password"]).status_code == 303
            assert client.get("/api/v1/me").json()["roles"] == person["roles"]
