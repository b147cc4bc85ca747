"""The REST API's instances over HTTP, on SQLite and PostgreSQL: start, list a page at a time, show with its ETag,
history, report; and the administrative acts, which only PMO Administrators may do (403 with the rule's words
for anyone else, nothing changed), each honouring If-Match."""

from __future__ import annotations

from api_helpers import *  # noqa: F403 (the fixtures)
from api_helpers import documented, problem, state
from web_fixtures import *  # noqa: F403 (the fixtures)

from conftest import FIXTURES
from pmoflow.engine.web import api_schema as schema

SIMPLE = {"title": "abc", "amount": 2}


def start(api, user: str = "erin", data: dict | None = None, process: str = "simple") -> int:
    started = api(user).post("/instances", json={"process_id": process, "data": SIMPLE if data is None else data})
    assert started.status_code == 201, started.text
    return started.json()["instance_id"]


def test_starting_an_instance_answers_201_with_its_location(pmo, api):
    started = api("erin").post("/instances", json={"process_id": "simple", "data": SIMPLE, "business_key": "B-1"})
    assert started.status_code == 201
    documented(schema.Started, started.json())
    instance_id = started.json()["instance_id"]
    assert started.json() == {"instance_id": instance_id, "status": "running", "error": None,
                              "process_id": "simple", "version": 1}
    assert started.headers["location"] == f"/api/v1/instances/{instance_id}"
    shown = api("erin").get(started.headers["location"].removeprefix("/api/v1")).json()
    assert (shown["started_by"], shown["business_key"], shown["data"]["total"]) == ("erin", "B-1", 4)


def test_a_start_form_that_does_not_fit_and_who_may_start_are_checked(pmo, api):
    refused = problem(api("erin").post("/instances", json={"process_id": "simple", "data": {"title": "ab"}}),
                      422, "invalid-form")
    assert {e["field"] for e in refused["errors"]} == {"title", "amount"}
    assert pmo.instances() == []
    lane = problem(api("carol").post("/instances", json={"process_id": "sla"}), 403, "permission-denied")
    assert "started from the Project Manager lane" in lane["detail"]
    problem(api("erin").post("/instances", json={"process_id": "nope"}), 404, "not-found")
    problem(api("erin").post("/instances", json={"data": {}}), 400, "invalid-input")
    problem(api("erin").post("/instances", json={"process_id": "simple", "data": SIMPLE, "extra": 1}), 400)
    assert pmo.instances() == []


def test_instances_are_listed_filtered_and_paged(pmo, api):
    ids = [start(api) for _ in range(3)] + [api("erin").post("/instances", json={"process_id": "sla"}).json()[
        "instance_id"]]
    listed = api("dave").get("/instances")
    assert listed.status_code == 200 and listed.json() == pmo.instances()
    documented(list[schema.Instance], listed.json())
    assert [i["instance_id"] for i in api("dave").get("/instances", params={"process": "sla"}).json()] == ids[3:]
    page = api("dave").get("/instances", params={"process": "simple", "limit": 2})
    assert [i["instance_id"] for i in page.json()] == ids[:2]
    assert f"after={ids[1]}" in page.headers["link"] and "process=simple" in page.headers["link"]
    rest = api("dave").get("/instances", params={"process": "simple", "limit": 2, "after": ids[1]})
    assert [i["instance_id"] for i in rest.json()] == ids[2:3] and "link" not in rest.headers
    assert api("dave").get("/instances", params={"status": "completed"}).json() == []
    problem(api("dave").get("/instances", params={"status": "sleeping"}), 400, "invalid-input")
    problem(api("dave").get("/instances", params={"limit": 1001}), 400)


def test_an_instance_shows_with_its_etag_history_and_report(pmo, api):
    instance_id = start(api)
    shown = api("dave").get(f"/instances/{instance_id}")
    documented(schema.InstanceDetail, shown.json())
    assert shown.json() == pmo.show(instance_id)
    assert shown.headers["etag"] == f'"{instance_id}.{shown.json()["lock_version"]}"'
    history = api("dave").get(f"/instances/{instance_id}/history")
    documented(list[schema.Event], history.json())
    assert history.json() == pmo.history(instance_id) and history.json()[0]["type"] == "instance_started"
    report = api("dave").get(f"/instances/{instance_id}/report")
    documented(schema.InstanceReport, report.json())
    assert report.json()["summary"]["instance_id"] == instance_id and report.json()["verification"]["ok"]
    html = api("dave").get(f"/instances/{instance_id}/report", params={"format": "html"})
    assert html.headers["content-type"] == "text/html; charset=utf-8" and "<title>Audit report" in html.text
    assert html.headers["content-disposition"] == f'attachment; filename="instance-{instance_id}-report.html"'
    markdown = api("dave").get(f"/instances/{instance_id}/report", params={"format": "md"})
    assert markdown.headers["content-type"].startswith("text/markdown") and f"{instance_id}" in markdown.text
    problem(api("dave").get(f"/instances/{instance_id}/report", params={"format": "pdf"}), 400)
    problem(api("dave").get("/instances/424242"), 404, "not-found")
    problem(api("dave").get("/instances/424242/history"), 404)


def test_a_project_manager_may_do_no_administrators_act(pmo, api):
    instance_id = start(api, data={"title": "abc", "amount": 13})  # fails in its script: in error
    before = state(pmo, instance_id)
    acts = {"suspend": None, "resume": None, "terminate": {"reason": "no"}, "retry": {"reason": "again"},
            "skip": {"data": {"total": 1}}, "data": {"set": {"amount": 4}, "reason": "typo"},
            "migrate": {"to_version": 1}}
    for act, body in acts.items():
        refused = problem(api("erin").post(f"/instances/{instance_id}/{act}", json=body), 403, "permission-denied")
        assert "needs the role PMO Administrator; erin holds Project Manager" in refused["detail"], act
    assert state(pmo, instance_id) == before


def test_an_administrator_repairs_an_instance_in_error(pmo, api):
    instance_id = start(api, data={"title": "abc", "amount": 13})
    assert api("bob").get(f"/instances/{instance_id}").json()["status"] == "error"
    problem(api("bob").post(f"/instances/{instance_id}/retry", json={"data": {"amount": 4}}), 400)  # no reason
    retried = api("bob").post(f"/instances/{instance_id}/retry", json={"data": {"amount": 4}, "reason": "typo"})
    assert retried.status_code == 200 and retried.json()["status"] == "running"
    documented(schema.Run, retried.json())
    edited = api("bob").post(f"/instances/{instance_id}/data", json={"set": {"comment": "checked"},
                                                                    "reason": "note"})
    documented(schema.DataEdit, edited.json())
    assert edited.json()["after"] == {"comment": "checked"}
    problem(api("bob").post(f"/instances/{instance_id}/skip"), 409, "conflict")  # not in error any more
    suspended = api("bob").post(f"/instances/{instance_id}/suspend", json={"reason": "audit"})
    assert suspended.json()["status"] == "suspended"
    [review] = api("erin").get("/tasks").json()
    problem(api("erin").post(f"/tasks/{review['id']}/complete", json={"data": {"approved": True}}), 409)
    assert api("bob").post(f"/instances/{instance_id}/resume").json()["status"] == "running"
    assert api("bob").post(f"/instances/{instance_id}/terminate", json={}).json()["status"] == "terminated"
    acts = {"retry", "data_edit", "suspend", "resume", "terminate"}
    assert [(e["type"], e["actor"]) for e in pmo.history(instance_id) if e["type"] in acts] == [
        ("retry", "bob"), ("data_edit", "bob"), ("suspend", "bob"), ("resume", "bob"), ("terminate", "bob")]


def test_an_administrators_act_with_a_stale_if_match_changes_nothing(pmo, api):
    instance_id = start(api)
    read = api("bob").get(f"/instances/{instance_id}").headers["etag"]
    [review] = api("erin").get("/tasks").json()
    api("erin").post(f"/tasks/{review['id']}/claim")  # the instance moves on meanwhile
    before = state(pmo, instance_id)
    for act in ("suspend", "terminate"):
        problem(api("bob").post(f"/instances/{instance_id}/{act}", headers={"If-Match": read}), 412, "stale")
    assert state(pmo, instance_id) == before
    fresh = api("bob").get(f"/instances/{instance_id}").headers["etag"]
    assert api("bob").post(f"/instances/{instance_id}/suspend", headers={"If-Match": fresh}).status_code == 200


def test_migration_moves_a_safe_instance_and_refuses_an_unsafe_one_with_409(pmo, api):
    migration = FIXTURES / "migration"
    pmo.deploy([migration / "mig_v1.bpmn"])
    instance_id = start(api, process="mig")
    [prepare] = api("erin").get("/tasks", params={"process": "mig"}).json()
    api("erin").post(f"/tasks/{prepare['id']}/complete", json={"data": {}})
    for version in ("mig_v2.bpmn", "mig_v3.bpmn"):
        pmo.deploy([migration / version])
    before = state(pmo, instance_id)
    refused = problem(api("bob").post(f"/instances/{instance_id}/migrate", json={"to_version": 3}), 409,
                      "migration-refused")
    assert {r["element"] for r in refused["result"]["reasons"]} == {"review", "prepare"}
    assert state(pmo, instance_id) == before
    dry = api("bob").post(f"/instances/{instance_id}/migrate", json={"to_version": 2, "dry_run": True})
    assert dry.json()["outcome"] == "would-migrate" and state(pmo, instance_id) == before
    moved = api("bob").post(f"/instances/{instance_id}/migrate", json={"to_version": 2, "reason": "confirm step"})
    documented(schema.Migration, moved.json())
    assert moved.json()["outcome"] == "migrated" and pmo.show(instance_id)["version"] == 2
    bulk = api("bob").post("/processes/mig/migrate", json={"from_version": 2, "to_version": 3, "dry_run": True})
    documented(schema.BulkMigration, bulk.json())
    assert bulk.json()["refused"][0]["instance_id"] == instance_id
    problem(api("erin").post("/processes/mig/migrate", json={"from_version": 2, "to_version": 3}), 403)
