"""The auditor's REST API over HTTP, on SQLite and PostgreSQL: events with the CLI's filters as JSON or as CSV and
JSON downloads, verification of the record, and the process report over a period."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from api_helpers import *  # noqa: F403 (the fixtures)
from api_helpers import documented, problem
from web_fixtures import *  # noqa: F403 (the fixtures)

from pmoflow.engine.audit import CSV_COLUMNS
from pmoflow.engine.web import api_schema as schema


def two_reviews(api) -> list[int]:
    """erin starts two simple requests and approves one, rejects the other."""
    ids = []
    for approved in (True, False):
        ids.append(api("erin").post("/instances", json={"process_id": "simple", "data": {"title": "abc",
                                                                                          "amount": 2}}).json()[
            "instance_id"])
        [review] = api("erin").get("/tasks").json()
        api("erin").post(f"/tasks/{review['id']}/complete", json={"data": {"approved": approved}})
    return ids


def test_events_take_the_clis_filters(pmo, api):
    ids = two_reviews(api)
    completed = api("dave").get("/audit/events", params={"process": "simple", "type": "task_completed"})
    assert completed.status_code == 200 and "content-disposition" not in completed.headers
    documented(list[schema.AuditEvent], completed.json())
    assert [e["instance_id"] for e in completed.json()] == ids
    assert completed.json() == pmo.audit_events(process="simple", types=["task_completed"])
    rejected = api("dave").get("/audit/events", params={"where": "data.approved=false", "actor": "erin",
                                                          "type": "task_completed"}).json()
    assert [e["instance_id"] for e in rejected] == ids[1:]
    several = api("dave").get("/audit/events", params=[("type", "instance_started"), ("type", "task_completed"),
                                                       ("instance", ids[0])]).json()
    assert [e["type"] for e in several] == ["instance_started", "task_completed"]
    year = datetime.now(UTC).year
    assert len(api("dave").get("/audit/events", params={"period": str(year), "limit": 3}).json()) == 3
    assert api("dave").get("/audit/events", params={"period": str(year - 5)}).json() == []
    problem(api("dave").get("/audit/events", params={"period": "2027-Q5"}), 400)
    problem(api("dave").get("/audit/events", params={"period": str(year), "since": f"{year}-01-01"}), 400)
    problem(api("dave").get("/audit/events", params={"where": "data.approved"}), 400)
    problem(api("dave").get("/audit/events", params={"instance": 424242}), 404)


def test_events_download_as_csv_and_json(pmo, api):
    two_reviews(api)
    params = {"process": "simple", "type": "task_completed"}
    as_csv = api("dave").get("/audit/events", params={**params, "format": "csv"})
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"] == 'attachment; filename="audit-events.csv"'
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == CSV_COLUMNS and len(rows) == 3
    assert [r[CSV_COLUMNS.index("actor")] for r in rows[1:]] == ["erin", "erin"]
    as_json = api("dave").get("/audit/events", params={**params, "format": "json"})
    assert as_json.headers["content-disposition"] == 'attachment; filename="audit-events.json"'
    assert as_json.json() == pmo.audit_events(process="simple", types=["task_completed"])
    problem(api("dave").get("/audit/events", params={**params, "format": "xml"}), 400)


def test_the_record_verifies_whole_and_per_instance(pmo, api):
    ids = two_reviews(api)
    whole = api("dave").get("/audit/verify")
    assert whole.status_code == 200
    documented(schema.Verification, whole.json())
    assert whole.json()["ok"] is True and whole.json()["checked_events"] > 0
    one = api("dave").get("/audit/verify", params={"instance": ids[0]}).json()
    assert one["ok"] is True and one["checked_events"] == len(pmo.history(ids[0]))
    problem(api("dave").get("/audit/verify", params={"instance": 424242}), 404)


def test_the_process_report_over_a_period(pmo, api):
    two_reviews(api)
    year = str(datetime.now(UTC).year)
    report = api("dave").get("/processes/simple/report", params={"period": year})
    assert report.status_code == 200
    documented(schema.ProcessReport, report.json())
    assert report.json()["kind"] == "process" and report.json()["counts"]["started"] == 2
    html = api("dave").get("/processes/simple/report", params={"period": year, "format": "html"})
    assert html.headers["content-disposition"] == 'attachment; filename="simple-report.html"'
    assert "<html" in html.text
    problem(api("dave").get("/processes/simple/report"), 400)  # a period is needed
