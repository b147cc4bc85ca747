"""The REST API against a real server: `pmoflow serve` (Uvicorn) on a free port of 127.0.0.1, on SQLite and
PostgreSQL (two server processes there), reached with httpx over TCP: a task's round trip with its ETag, a race
for one task between two clients (one wins, the other gets 409 or 412, never a lost update), a body over the
limit refused before it is read, and a session that needs its CSRF token."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
from test_uvicorn import server  # noqa: F401 (the fixture: a real `pmoflow serve`)
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import PASSWORD


def client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_the_api_over_a_real_server(server, pmo, make_pmo, passwords):  # noqa: F811 (the fixture)
    base, log = server
    erin = client(base, make_pmo("erin").create_token("script")["token"])
    bob = client(base, make_pmo("bob").create_token("script")["token"])
    try:
        started = erin.post("/instances", json={"process_id": "simple", "data": {"title": "abc", "amount": 2}})
        assert started.status_code == 201 and started.headers["location"].startswith("/api/v1/instances/")
        instance_id = started.json()["instance_id"]
        [review] = erin.get("/tasks").json()
        read = erin.get(f"/tasks/{review['id']}")
        assert read.json()["schema"]["required"] == ["approved"]
        etag = read.headers["etag"]
        assert erin.post(f"/tasks/{review['id']}/claim", headers={"If-Match": etag}).status_code == 200
        stale = erin.post(f"/tasks/{review['id']}/complete", json={"data": {"approved": True}},
                          headers={"If-Match": etag})
        assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
        fresh = erin.get(f"/tasks/{review['id']}").headers["etag"]
        done = erin.post(f"/tasks/{review['id']}/complete", json={"data": {"approved": True}},
                         headers={"If-Match": fresh})
        assert done.json()["status"] == "completed"
        assert pmo.show(instance_id)["status"] == "completed"

        # two people race for one task: exactly one completes it, the other is told someone was first
        race = pmo.start("sla", {})["instance_id"]
        [prepare] = [t for t in erin.get("/tasks").json() if t["instance_id"] == race]
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda who: who.post(f"/tasks/{prepare['id']}/complete", json={"data": {}}),
                                    (erin, bob)))
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        assert [e["type"] for e in pmo.history(race)].count("task_completed") == 1

        too_big = erin.post("/processes", content=b"x" * (5 * 1024 * 1024 + 1),
                            headers={"content-type": "application/octet-stream"})
        assert too_big.status_code == 413 and too_big.json()["status"] == 413
        assert erin.get("/openapi.json").json()["paths"]["/api/v1/tasks/{task_id}/complete"]
    finally:
        erin.close()
        bob.close()

    passwords("carol")
    with httpx.Client(base_url=base) as browser:
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/sign-in").text).group(1)
        assert browser.post("/sign-in", data={"name": "carol", "password": PASSWORD,
                                              "csrf_token": token}).status_code == 303
        [approve] = [t for t in browser.get("/api/v1/tasks").json() if t["instance_id"] == race]
        refused = browser.post(f"/api/v1/tasks/{approve['id']}/claim")
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        page = browser.get("/", headers={"accept": "text/html"}).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        claimed = browser.post(f"/api/v1/tasks/{approve['id']}/claim", headers={"X-CSRF-Token": csrf})
        assert claimed.status_code == 200 and claimed.json()["assignee"] == "carol"
    assert "Traceback" not in log.read_text()
