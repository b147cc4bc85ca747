"""Staff's pages over HTTP, on the demo organisation and library (SQLite, and PostgreSQL when configured): the
inbox with claim and unclaim, a task's instructions, form and diagram, a submission refused field by field with
the input kept, one accepted and the next task in the Quality Director's inbox, someone else's task refused,
starting a process from its start form, and the notifications page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from page_helpers import *  # noqa: F403 (the fixtures)
from page_helpers import HTML, fields_for, post_form, text_of
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import csrf_of, sign_in

from conftest import FIXTURES
from pmoflow.engine import forms
from pmoflow.workflows.demo import CHARTER, INTAKE, REQUEST

FORMS = Path(forms.__file__).parent.parent / "forms"
CHARTER_SCHEMA = json.loads((FORMS / "project-charter.schema.json").read_text())
REQUEST_SCHEMA = json.loads((FORMS / "project-request.schema.json").read_text())


def charter_waiting(people) -> int:
    """A request started and accepted at intake: the draft charter (task 2) waits for a Project Manager."""
    started = people("sean.sponsor").start("project_initiation", REQUEST)
    people("sara.spm").complete(1, INTAKE)
    return started["instance_id"]


def test_the_inbox_lists_my_roles_tasks_with_claim_and_unclaim(people, browser):
    charter_waiting(people)
    pete = browser("pete.pm")
    inbox = pete.get("/")
    assert inbox.status_code == 200
    assert 'href="/tasks/2">Draft project charter</a>' in inbox.text and "Project Manager" in inbox.text
    assert 'action="/tasks/2/claim"' in inbox.text
    assert "Nothing waiting for you" in browser("sara.spm").get("/").text
    claimed = post_form(pete, "/", {}, "/tasks/2/claim")
    assert claimed.status_code == 303 and claimed.headers["location"] == "/?claimed=2"
    assert people("pete.pm").task(2)["assignee"] == "pete.pm"
    after = pete.get("/?claimed=2").text
    assert "You claimed task 2" in after and 'action="/tasks/2/unclaim"' in after and "you (claimed)" in after
    assert "Draft project charter" not in browser("paula.pm").get("/").text  # claimed: off the other PM's list
    assert post_form(pete, "/", {"next": "/tasks/2"}, "/tasks/2/unclaim").headers["location"] == \
        "/tasks/2?unclaimed=2"
    assert people("pete.pm").task(2)["assignee"] is None


def test_the_inbox_filters_by_process(people, browser):
    charter_waiting(people)
    pete = browser("pete.pm")
    assert "Draft project charter" in pete.get("/?process=project_initiation").text
    assert "Nothing waiting for you in this process" in pete.get("/?process=quality_gate").text


def test_claiming_without_the_csrf_token_is_refused_and_changes_nothing(people, browser):
    charter_waiting(people)
    refused = browser("pete.pm").post("/tasks/2/claim", data={"next": "/"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert people("pete.pm").task(2)["assignee"] is None


def test_the_task_page_shows_instructions_the_form_and_the_diagram_with_the_task_marked(people, browser):
    charter_waiting(people)
    page = browser("pete.pm").get("/tasks/2")
    assert page.status_code == 200
    html = page.text
    assert "Instructions" in html and "draft the project charter (PMBOK)" in html
    assert '<label for="f-purpose">Purpose' in html and 'id="f-purpose" name="purpose"' in html
    assert 'name="objectives[0].objective"' in html and 'value="Replace the portal"' in html  # from the request
    assert re.search(r'<g [^>]*data-bpmn-id="draft_charter"[^>]*class="[^"]*this-task', html) or \
        re.search(r'<g [^>]*class="[^"]*this-task[^"]*"[^>]*data-bpmn-id="draft_charter"', html)
    assert "<script" not in html
    every_input = re.findall(r'<(?:input|select|textarea) ([^>]*)>', html)
    labelled = set(re.findall(r'<label for="([^"]+)"', html))
    for attributes in every_input:
        if 'type="hidden"' in attributes or 'type="checkbox"' in attributes and "choice" in attributes:
            continue
        found = re.search(r'id="([^"]+)"', attributes)
        assert found is None or found.group(1) in labelled or 'type="radio"' in attributes, attributes


def test_an_invalid_submission_shows_each_fields_error_and_keeps_what_was_typed(people, browser):
    charter_waiting(people)
    pete = browser("pete.pm")
    typed = fields_for(CHARTER_SCHEMA, {**CHARTER, "purpose": "Too short", "preApprovedBudget": -5})
    typed = [(k, v) for k, v in typed if k != "pmAuthority"] + [("_action", "submit")]
    refused = post_form(pete, "/tasks/2", typed)
    assert refused.status_code == 422
    text = text_of(refused.text)
    assert "The form has 3 problems" in text
    assert 'id="f-purpose-error"><span>Too short: at least 20 characters.</span>' in refused.text
    assert 'id="f-preApprovedBudget-error"><span>Must be more than 0.</span>' in refused.text
    assert 'id="f-preApprovedBudget-error"' in refused.text and 'id="f-pmAuthority-error"' in refused.text
    assert 'value="Too short"' in refused.text and 'value="-5"' in refused.text  # nothing typed is lost
    assert 'value="Go-live"' in refused.text and 'aria-invalid="true"' in refused.text
    assert people("pete.pm").task(2)["state"] == "ready"


def test_a_valid_submission_completes_the_task_and_the_next_one_reaches_the_quality_director(people, browser):
    instance = charter_waiting(people)
    done = post_form(browser("pete.pm"), "/tasks/2", fields_for(CHARTER_SCHEMA, CHARTER) + [("_action", "submit")])
    assert done.status_code == 303
    assert done.headers["location"] == f"/?completed=2&instance={instance}&status=running"
    assert people("pete.pm").task(2)["completed_by"] == "pete.pm"
    assert people("pete.pm").show(instance)["data"]["pmName"] == "pete.pm"
    quinn = browser("quinn.qd").get("/").text
    assert "Assign SQA" in quinn and f'href="/instances/{instance}"' in quinn


def test_rows_are_added_and_removed_on_the_task_page(people, browser):
    charter_waiting(people)
    pete = browser("pete.pm")
    typed = fields_for(CHARTER_SCHEMA, {**CHARTER, "purpose": "Half-typed purpose"})
    added = post_form(pete, "/tasks/2", typed + [("_action", "add:milestones")])
    assert added.status_code == 200
    assert 'name="milestones[2].name"' in added.text and 'value="Half-typed purpose"' in added.text
    removed = post_form(pete, "/tasks/2", typed + [("_action", "remove:milestones[0]")])
    assert 'value="Design approved"' not in removed.text and 'value="Go-live"' in removed.text
    assert people("pete.pm").task(2)["state"] == "ready"


def test_someone_elses_task_is_refused_with_the_reason_and_nothing_changes(people, browser):
    charter_waiting(people)
    quinn = browser("quinn.qd")
    page = quinn.get("/tasks/2").text
    assert "you can read it but not complete it" in page and 'disabled>Submit' in page
    refused = post_form(quinn, "/tasks/2", fields_for(CHARTER_SCHEMA, CHARTER) + [("_action", "submit")])
    assert refused.status_code == 403
    assert "Not permitted" in refused.text and "quinn.qd is not one of them" in refused.text
    assert 'value="Replace the portal"' in refused.text  # the form is drawn again as typed
    assert people("pete.pm").task(2)["state"] == "ready"


def test_the_start_page_offers_what_the_user_may_start_and_starts_it_from_its_form(people, browser):
    sean = browser("sean.sponsor")
    offered = sean.get("/start").text
    assert 'href="/start/project_initiation"' in offered
    assert 'href="/start/project_initiation"' not in browser("pete.pm").get("/start").text
    assert browser("pete.pm").get("/start/project_initiation").status_code == 403
    form = sean.get("/start/project_initiation").text
    assert '<label for="f-title">' in form and 'name="_business_key"' in form
    bad = post_form(sean, "/start/project_initiation", [("title", "X"), ("_action", "submit")])
    assert bad.status_code == 422 and 'value="X"' in bad.text and "Required: fill this in." in bad.text
    assert people("sean.sponsor").instances() == []
    started = post_form(sean, "/start/project_initiation",
                        fields_for(REQUEST_SCHEMA, REQUEST) + [("_business_key", "PORTAL-1"), ("_action", "submit")])
    assert started.status_code == 303 and started.headers["location"] == "/instances/1?started=1"
    [instance] = people("sean.sponsor").instances()
    assert (instance["business_key"], instance["started_by"]) == ("PORTAL-1", "sean.sponsor")
    assert "The instance was started." in sean.get("/instances/1?started=1").text


def test_the_notifications_page_counts_the_unread_and_delivers_what_it_shows(pmo, client, passwords):
    """The test organisation's package approval: its 2-day reminder reaches the Quality Directors (carol)."""
    pmo.deploy([FIXTURES / "notifications"])
    started = pmo.acting_as("bob").start("package_approval")
    pmo.acting_as("pmo.admin").run_due(datetime.now(UTC) + timedelta(days=3))
    passwords("carol")
    sign_in(client, "carol")
    inbox = client.get("/", headers=HTML).text
    assert '1<span class="visually-hidden"> unread' in inbox and "1 unread notification" in text_of(inbox)
    listed = client.get("/notifications", headers=HTML).text
    assert "Reminder: the package is waiting for your approval" in listed
    assert f'href="/instances/{started["instance_id"]}"' in listed and 'class="new"' in listed
    [mine] = pmo.notifications(user="carol")
    assert mine["delivered_at"] is not None
    assert "unread" not in text_of(client.get("/", headers=HTML).text)
    assert 'class="new"' not in client.get("/notifications", headers=HTML).text


def test_pages_need_a_session_and_send_the_sign_in_form(demo_app):
    from fastapi.testclient import TestClient

    with TestClient(demo_app, follow_redirects=False) as anonymous:
        for path in ("/", "/tasks/1", "/start", "/notifications"):
            page = anonymous.get(path, headers=HTML)
            assert page.status_code == 401 and '<label for="password">' in page.text, path
        token = csrf_of(anonymous.get("/sign-in").text)
        assert anonymous.post("/tasks/1/claim", data={"csrf_token": token}).status_code == 401
    assert sign_in  # the sign-in helper of the other page tests
