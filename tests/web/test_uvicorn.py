"""The web workspace served for real: `pmoflow serve --with-worker` (Uvicorn) on a free port of 127.0.0.1, started
and stopped by the test, on SQLite and PostgreSQL. A browser's sign-in and sign-out, an API token, the headers,
the worker loop firing a timer beside the server, and a server log that holds no password or token. On
PostgreSQL the server runs two processes (`--workers 2`), as a scaled-out install does."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import PASSWORD, SECRET

from conftest import FIXTURES

PMOFLOW = Path(sys.executable).parent / "pmoflow"
STARTUP = 120.0  # seconds: a loaded machine takes a while to import FastAPI and SpiffWorkflow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(db_url, pmo, cli_handlers, tmp_path) -> Iterator[tuple[str, Path]]:
    """`pmoflow serve --with-worker` on a free port; yields its base URL and its log file; stopped with SIGTERM."""
    port, log = free_port(), tmp_path / "server.log"
    env = {**os.environ, "PMOFLOW_SECRET_KEY": SECRET}
    with log.open("wb") as out:
        # On PostgreSQL, two server processes: a session made by one is honoured by the other.
        workers = "1" if db_url.startswith("sqlite") else "2"
        process = subprocess.Popen([str(PMOFLOW), "--db", db_url, "serve", "--port", str(port), "--workers", workers,
                                    "--with-worker", "--worker-interval", "0.2"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up:\n" + log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_real_server_signs_in_serves_tokens_and_runs_the_worker(server, pmo, make_pmo, passwords):
    base, log = server
    passwords("erin")
    with httpx.Client(base_url=base) as browser:
        form = browser.get("/sign-in")
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        assert form.headers["x-content-type-options"] == "nosniff"
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed = browser.post("/sign-in", data={"name": "erin", "password": PASSWORD, "csrf_token": token})
        assert signed.status_code == 303
        for _ in range(6):  # with two processes, some of these reach the one that did not sign erin in
            assert browser.get("/api/v1/me").json()["name"] == "erin"
        page = browser.get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and "erin" in page.text and page.headers["content-type"].startswith("text/html")
        copied = browser.cookies.get("pmoflow_session")
        out = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        assert browser.post("/sign-out", data={"csrf_token": out}).status_code == 303
        assert httpx.get(f"{base}/api/v1/me", cookies={"pmoflow_session": copied}).status_code == 401

    made = make_pmo("erin").create_token("script")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {made['token']}"})
    assert api.get("/api/v1/me").json()["name"] == "erin"
    make_pmo("erin").revoke_token(made["id"])
    assert api.get("/api/v1/me").status_code == 401
    api.close()

    pmo.deploy([FIXTURES / "audit" / "time_date_timer.bpmn"])  # the worker beside the server fires its timer
    due = datetime.now(UTC) + timedelta(seconds=1)
    instance_id = pmo.start("time_date_timer", {"waitUntil": due.isoformat()})["instance_id"]
    deadline = time.monotonic() + 60
    while pmo.show(instance_id)["status"] != "completed":
        assert time.monotonic() < deadline, "the worker did not fire the timer:\n" + log.read_text()
        time.sleep(0.2)

    logged = log.read_text()
    assert "GET /api/v1/me" in logged  # the access log was captured
    assert PASSWORD not in logged and made["token"] not in logged and made["token"].split("_")[-1] not in logged
