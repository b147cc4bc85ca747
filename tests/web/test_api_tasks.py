"""The REST API's tasks, messages and notifications over HTTP (the app through httpx), on SQLite and PostgreSQL:
each route's answer in the shape `--json` prints, and every rule the CLI enforces holding through the API:
candidates, duties (403 naming the rule, recorded), forms (422 with every field), locking (409, and 412 for a
stale If-Match, nothing changed), CSRF for session requests and none for tokens."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from api_helpers import *  # noqa: F403 (the fixtures)
from api_helpers import documented, problem, state
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import csrf_of, sign_in

from conftest import FIXTURES
from pmoflow.engine.web import api_schema as schema

WEB = FIXTURES / "web"


def sla_at_approval(pmo, make_pmo) -> tuple[int, int]:
    """alice (PM, QD, administrator) starts an SLA approval and bob prepares it: (instance, the open approval)."""
    instance_id = pmo.start("sla", {})["instance_id"]
    bob = make_pmo("bob")
    [prepare] = [t for t in bob.tasks() if t["instance_id"] == instance_id]
    bob.complete(prepare["id"], {})
    [approve] = [t for t in make_pmo("carol").tasks() if t["instance_id"] == instance_id]
    return instance_id, approve["id"]


def test_the_inbox_lists_my_tasks_a_page_at_a_time(pmo, api):
    started = [pmo.start("sla", {})["instance_id"] for _ in range(3)]
    first = api("erin").get("/tasks", params={"limit": 2})
    assert first.status_code == 200
    documented(list[schema.Task], first.json())
    assert [t["instance_id"] for t in first.json()] == started[:2]
    assert all(t["bpmn_id"] == "prepare" and t["candidates"] == ["Project Manager"] for t in first.json())
    following = first.headers["link"]
    assert following.endswith('>; rel="next"') and f"after={first.json()[-1]['id']}" in following
    second = api("erin").get(following[following.index("/api/v1") + 7:following.index(">")])
    assert [t["instance_id"] for t in second.json()] == started[2:] and "link" not in second.headers
    assert api("erin").get("/tasks").json() == first.json() + second.json() == pmo.acting_as("erin").tasks()
    assert api("carol").get("/tasks").json() == []  # a Quality Director has none of these
    assert len(api("carol").get("/tasks", params={"all": "true"}).json()) == 3
    assert api("erin").get("/tasks", params={"process": "simple"}).json() == []
    problem(api("erin").get("/tasks", params={"limit": 0}), 400, "invalid-input")


def test_a_task_shows_its_form_its_ui_schema_and_its_etag(pmo, api):
    pmo.deploy([WEB])
    instance_id = api("erin").post("/instances", json={"process_id": "ui_review"}).json()["instance_id"]
    [task] = api("erin").get("/tasks", params={"process": "ui_review"}).json()
    shown = api("erin").get(f"/tasks/{task['id']}")
    assert shown.status_code == 200
    body = shown.json()
    documented(schema.TaskDetail, body)
    assert body["schema"] == json.loads((WEB / "ui-review.schema.json").read_text())
    assert body["ui_schema"] == json.loads((WEB / "ui-review-uischema.json").read_text())
    assert body["instructions"] == "Read the document and say what you think." and body["data"] == {}
    version = pmo.show(instance_id)["lock_version"]
    assert shown.headers["etag"] == f'"{instance_id}.{version}"' == f'"{instance_id}.{body["instance_lock_version"]}"'
    assert body == {**pmo.task(task["id"])}
    problem(api("erin").get("/tasks/99999"), 404, "not-found")
    problem(api("erin").get("/tasks/abc"), 400, "invalid-input")


def test_claim_unclaim_delegate_and_complete(pmo, api, make_pmo):
    instance_id = pmo.start("sla", {})["instance_id"]
    [prepare] = api("erin").get("/tasks").json()
    claimed = api("erin").post(f"/tasks/{prepare['id']}/claim")
    assert claimed.status_code == 200 and claimed.json()["assignee"] == "erin"
    documented(schema.Task, claimed.json())
    taken = problem(api("bob").post(f"/tasks/{prepare['id']}/claim"), 409, "conflict")
    assert taken["detail"] == f"task {prepare['id']} is claimed by erin" and taken["exit_code"] == 3
    assert api("bob").get("/tasks").json() == []  # claimed by someone else: out of bob's inbox
    problem(api("bob").post(f"/tasks/{prepare['id']}/unclaim"), 409)
    assert api("erin").post(f"/tasks/{prepare['id']}/unclaim").json()["assignee"] is None
    problem(api("erin").post(f"/tasks/{prepare['id']}/delegate", json={"to": "carol"}), 403, "permission-denied")
    problem(api("erin").post(f"/tasks/{prepare['id']}/delegate", json={"to": "nobody"}), 404)
    problem(api("erin").post(f"/tasks/{prepare['id']}/delegate", json={"who": "bob"}), 400, "invalid-input")
    delegated = api("erin").post(f"/tasks/{prepare['id']}/delegate", json={"to": "bob"})
    assert delegated.json()["assignee"] == "bob"
    done = api("bob").post(f"/tasks/{prepare['id']}/complete", json={"data": {}})
    assert done.status_code == 200
    documented(schema.Completed, done.json())
    assert done.json() == {"task_id": prepare["id"], "instance_id": instance_id, "status": "running", "error": None}
    [approve] = api("carol").get("/tasks").json()
    assert (approve["bpmn_id"], approve["instance_id"]) == ("approve", instance_id)
    problem(api("bob").post(f"/tasks/{prepare['id']}/complete", json={"data": {}}), 409, "conflict")
    types = [e["type"] for e in pmo.history(instance_id)]
    assert {"task_claimed", "task_unclaimed", "task_delegated", "task_completed"} <= set(types)
    assert [e["actor"] for e in pmo.history(instance_id) if e["type"] == "task_completed"] == ["bob"]


def test_a_project_manager_cannot_complete_a_quality_directors_task(pmo, api, make_pmo):
    instance_id, approve = sla_at_approval(pmo, make_pmo)
    before = state(pmo, instance_id)
    refused = problem(api("erin").post(f"/tasks/{approve}/complete", json={"data": {}}), 403, "permission-denied")
    assert "is for role Quality Director; erin is not one of them" in refused["detail"]
    problem(api("erin").post(f"/tasks/{approve}/claim"), 403, "permission-denied")
    assert state(pmo, instance_id) == before


def test_a_duty_refusal_names_its_rule_and_is_recorded(pmo, api, make_pmo):
    instance_id, approve = sla_at_approval(pmo, make_pmo)
    show_before, history_before = state(pmo, instance_id)
    refused = problem(api("alice").post(f"/tasks/{approve}/complete", json={"data": {}}), 403, "permission-denied")
    assert refused["rule"] == "performer differs from starter" and refused["exit_code"] == 4
    assert "segregation of duties: alice may not take 'Approve the package'" in refused["detail"]
    show_after, history_after = state(pmo, instance_id)
    assert show_after["tasks"] == show_before["tasks"] and history_after[:-1] == history_before
    recorded = history_after[-1]
    assert (recorded["type"], recorded["actor"], recorded["payload"]["rule"]) == (
        "duty_refused", "alice", "performer differs from starter")
    not_a_candidate = problem(api("bob").post(f"/tasks/{approve}/claim"), 403)  # not a QD: no duty involved
    assert "rule" not in not_a_candidate and "bob is not one of them" in not_a_candidate["detail"]
    assert api("carol").post(f"/tasks/{approve}/complete", json={"data": {}}).json()["status"] == "completed"


def test_form_data_that_does_not_fit_gives_422_with_every_fields_error(pmo, api):
    instance_id = api("erin").post("/instances", json={"process_id": "simple",
                                                       "data": {"title": "abc", "amount": 2}}).json()["instance_id"]
    [review] = api("erin").get("/tasks").json()
    before = state(pmo, instance_id)
    refused = problem(api("erin").post(f"/tasks/{review['id']}/complete",
                                       json={"data": {"approved": "yes", "comment": 5}}), 422, "invalid-form")
    assert {e["field"] for e in refused["errors"]} == {"approved", "comment"}
    assert all(e["message"] for e in refused["errors"])
    assert state(pmo, instance_id) == before
    missing = problem(api("erin").post(f"/tasks/{review['id']}/complete", json={"data": {}}), 422)
    assert [e["field"] for e in missing["errors"]] == ["approved"]
    problem(api("erin").post(f"/tasks/{review['id']}/complete", json={"data": [1]}), 400, "invalid-input")
    problem(api("erin").post(f"/tasks/{review['id']}/complete", content=b"{not json",
                             headers={"content-type": "application/json"}), 400)
    assert state(pmo, instance_id) == before
    done = api("erin").post(f"/tasks/{review['id']}/complete", json={"data": {"approved": True}})
    assert done.json()["status"] == "completed"


def test_a_stale_if_match_gives_412_and_changes_nothing(pmo, api):
    instance_id = api("erin").post("/instances", json={"process_id": "simple",
                                                       "data": {"title": "abc", "amount": 2}}).json()["instance_id"]
    [review] = api("erin").get("/tasks").json()
    read = api("erin").get(f"/tasks/{review['id']}").headers["etag"]
    assert api("erin").post(f"/tasks/{review['id']}/claim", headers={"If-Match": read}).status_code == 200
    before = state(pmo, instance_id)
    for stale in (read, f'W/{read}', '"junk"', f'"{instance_id + 1}.{before[0]["lock_version"]}"'):
        refused = problem(api("erin").post(f"/tasks/{review['id']}/complete", headers={"If-Match": stale},
                                           json={"data": {"approved": True}}), 412, "stale")
        assert "changed since you read it" in refused["detail"]
    problem(api("erin").post(f"/tasks/{review['id']}/unclaim", headers={"If-Match": read}), 412)
    assert state(pmo, instance_id) == before
    fresh = api("erin").get(f"/instances/{instance_id}").headers["etag"]
    assert fresh == api("erin").get(f"/tasks/{review['id']}").headers["etag"] != read
    done = api("erin").post(f"/tasks/{review['id']}/complete", headers={"If-Match": f'"junk", {fresh}'},
                            json={"data": {"approved": True}})
    assert done.status_code == 200 and done.json()["status"] == "completed"
    problem(api("erin").post(f"/tasks/{review['id']}/complete", headers={"If-Match": "*"},
                             json={"data": {"approved": True}}), 409)  # '*': no condition; the task is done


def test_a_token_needs_no_csrf_token_and_a_session_does(pmo, client, passwords, api):
    pmo.start("sla", {})
    [prepare] = api("erin").get("/tasks").json()
    passwords("erin")
    sign_in(client, "erin")
    refused = problem(client.post(f"/api/v1/tasks/{prepare['id']}/claim"), 403, "permission-denied")
    assert "CSRF" in refused["detail"]
    assert pmo.task(prepare["id"])["assignee"] is None
    token = csrf_of(client.get("/", headers={"accept": "text/html"}).text)
    claimed = client.post(f"/api/v1/tasks/{prepare['id']}/claim", headers={"X-CSRF-Token": token})
    assert claimed.status_code == 200 and claimed.json()["assignee"] == "erin"
    assert client.get(f"/api/v1/tasks/{prepare['id']}").status_code == 200  # reading needs none
    client.cookies.clear()
    assert api("erin").post(f"/tasks/{prepare['id']}/unclaim").status_code == 200  # a bearer token: no CSRF


def test_messages_start_what_they_start_for_those_who_may(pmo, api):
    pmo.deploy([FIXTURES / "roles" / "started_by_message.bpmn"])
    refused = problem(api("erin").post("/messages", json={"name": "please_review"}), 403, "permission-denied")
    assert "Quality Director" in refused["detail"]
    sent = api("carol").post("/messages", json={"name": "please_review", "data": {"doc": "plan"}})
    assert sent.status_code == 200
    documented(schema.MessageSent, sent.json())
    [instance_id] = sent.json()["delivered_to"]
    assert pmo.show(instance_id)["started_by"] == "carol"
    problem(api("carol").post("/messages", json={"name": "nobody_listens"}), 404, "not-found")
    problem(api("carol").post("/messages", json={"data": {}}), 400, "invalid-input")
    waits = api("carol").get("/messages")
    assert waits.status_code == 200 and waits.json() == pmo.messages()
    documented(list[schema.MessageWait], waits.json())


def test_notifications_are_delivered_by_listing_ones_own_and_not_by_an_auditors_view(pmo, api, make_pmo):
    pmo.deploy([FIXTURES / "notifications"])
    instance_id = make_pmo("bob").start("package_approval")["instance_id"]
    [approve] = [t for t in make_pmo("carol").tasks() if t["instance_id"] == instance_id]
    fired = pmo.acting_as("pmo.admin").run_due(datetime.fromisoformat(approve["created_at"]) + timedelta(days=3))
    assert fired["fired"] == [instance_id]
    auditor = api("dave").get("/notifications", params={"user": "carol"})
    assert [n["delivered_at"] for n in auditor.json()] == [None]
    documented(list[schema.Notification], auditor.json())
    [mine] = api("carol").get("/notifications").json()
    assert mine["new"] is True and mine["delivered_at"] and mine["recipient"] == "carol"
    [again] = api("carol").get("/notifications").json()
    assert (again["new"], again["delivered_at"]) == (False, mine["delivered_at"])
    everyone = api("dave").get("/notifications", params={"all": "true", "undelivered": "true",
                                                         "instance": instance_id}).json()
    assert "carol" not in {n["recipient"] for n in everyone} and everyone
    problem(api("dave").get("/notifications", params={"user": "nobody"}), 404)
    problem(api("dave").get("/notifications", params={"user": "carol", "all": "true"}), 400)
