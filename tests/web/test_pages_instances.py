"""The instance pages over HTTP (SQLite, and PostgreSQL when configured): the list, one instance with its status,
data, tasks, diagram (the path taken, where it stands, what failed) and timeline; the administrative acts shown to
PMO Administrators only, done through the service (with the reason recorded), and refused to anyone else."""

from __future__ import annotations

import re

from page_helpers import *  # noqa: F403 (the fixtures)
from page_helpers import HTML, post_form, text_of
from web_fixtures import *  # noqa: F403 (the fixtures)
from web_fixtures import sign_in

from pmoflow.workflows.demo import INTAKE, REQUEST


def started(people) -> int:
    instance = people("sean.sponsor").start("project_initiation", REQUEST, business_key="PORTAL-1")["instance_id"]
    people("sara.spm").complete(1, INTAKE)
    return instance


def test_the_list_filters_by_status_and_process(people, browser):
    instance = started(people)
    pete = browser("pete.pm")
    listing = pete.get("/instances").text
    assert f'href="/instances/{instance}"' in listing and "PORTAL-1" in listing and "running" in listing
    assert "No instance matches" in pete.get("/instances?status=completed").text
    assert "PORTAL-1" in pete.get("/instances?process=project_initiation&status=running").text


def test_an_instance_shows_its_status_data_tasks_diagram_and_timeline(people, browser):
    instance = started(people)
    page = browser("pete.pm").get(f"/instances/{instance}")
    assert page.status_code == 200
    html, text = page.text, text_of(page.text)
    assert "Instance 1 running" in text and "PORTAL-1" in text and "by sean.sponsor" in text
    assert "Customer portal replacement" in html  # the data
    assert 'href="/tasks/1">Intake review</a>' in html and 'href="/tasks/2">Draft project charter</a>' in html
    assert re.search(r'data-bpmn-id="intake_review"[^>]*class="[^"]*completed', html)
    assert re.search(r'data-bpmn-id="draft_charter"[^>]*class="[^"]*current', html)
    assert "completed &#39;Intake review&#39; with" in html and "instance_started" in html
    assert "Administration" not in html  # a Project Manager sees no administrative act


def test_an_administrator_suspends_and_resumes_with_the_reason_recorded(people, browser):
    instance = started(people)
    admin = browser("pmo.admin")
    page = admin.get(f"/instances/{instance}").text
    assert "Administration" in page and 'name="act" value="suspend"' in page and 'value="resume"' not in page
    done = post_form(admin, f"/instances/{instance}", {"act": "suspend", "reason": "Budget freeze"},
                     f"/instances/{instance}/admin")
    assert done.status_code == 303 and done.headers["location"] == f"/instances/{instance}?done=suspend"
    assert people("pmo.admin").show(instance)["status"] == "suspended"
    [event] = [e for e in people("pmo.admin").history(instance) if e["type"] == "suspend"]
    assert (event["actor"], event["payload"]["reason"]) == ("pmo.admin", "Budget freeze")
    after = admin.get(done.headers["location"]).text
    assert "The instance was suspended." in after and 'name="act" value="resume"' in after
    post_form(admin, f"/instances/{instance}", {"act": "resume", "reason": "Budget back"},
              f"/instances/{instance}/admin")
    assert people("pmo.admin").show(instance)["status"] == "running"


def test_a_data_edit_needs_a_json_object_and_a_reason_and_keeps_what_was_typed(people, browser):
    instance = started(people)
    admin = browser("pmo.admin")
    bad = post_form(admin, f"/instances/{instance}", {"act": "data", "data": "{not json", "reason": "typo"},
                    f"/instances/{instance}/admin")
    assert bad.status_code == 400 and "not JSON" in bad.text and "{not json" in bad.text
    edited = post_form(admin, f"/instances/{instance}", {"act": "data", "data": '{"budgetSource": "Opex"}',
                                                          "reason": "Finance moved it"},
                       f"/instances/{instance}/admin")
    assert edited.status_code == 303
    assert people("pmo.admin").task(2)["data"]["budgetSource"] == "Opex"  # the data of the task it is at
    [event] = [e for e in people("pmo.admin").history(instance) if e["type"] == "data_edit"]
    assert event["payload"]["reason"] == "Finance moved it"


def test_a_project_manager_posting_an_administrative_act_is_refused_and_nothing_changes(people, browser):
    instance = started(people)
    refused = post_form(browser("pete.pm"), f"/instances/{instance}", {"act": "terminate", "reason": "mine"},
                        f"/instances/{instance}/admin")
    assert refused.status_code == 403 and "needs the role PMO Administrator" in refused.text
    assert people("pmo.admin").show(instance)["status"] == "running"


def test_an_instance_in_error_shows_the_failing_element_and_the_retry_and_skip_acts(pmo, client, passwords):
    """The test library's `simple` process fails in its script when the amount is 13."""
    failed = pmo.start("simple", {"title": "Boom", "amount": 13})
    assert failed["status"] == "error"
    passwords("alice")
    sign_in(client, "alice")
    page = client.get(f"/instances/{failed['instance_id']}", headers=HTML).text
    assert "Error" in page and "Compute total" in page and "ZeroDivisionError" in page
    assert "No diagram: process &#39;simple&#39; has no diagram (BPMNDI) to draw" in page  # said, not hidden
    assert 'name="act" value="retry"' in page and 'name="act" value="skip"' in page


def test_an_unknown_instance_is_a_404_page(browser):
    missing = browser("pete.pm").get("/instances/999")
    assert missing.status_code == 404 and "no instance 999" in missing.text
