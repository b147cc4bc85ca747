"""The auditor's pages over HTTP (SQLite, and PostgreSQL when configured): event search with the CLI's filters,
the CSV and JSON downloads (the same rows as `pmoflow audit events`), verification of the record, the instance
report (the same HTML as `pmoflow report --format html`, with its diagram, under a policy of its own) and the
process report over a period; a filter the record cannot answer is said on the page."""

from __future__ import annotations

import csv
import io
import json

from page_helpers import *  # noqa: F403 (the fixtures)
from page_helpers import text_of
from web_fixtures import *  # noqa: F403 (the fixtures)

from pmoflow.engine import report as reporting
from pmoflow.engine.audit import CSV_COLUMNS, csv_row
from pmoflow.workflows.demo import INTAKE, REQUEST


def section_of(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def walked(people) -> int:
    instance = people("sean.sponsor").start("project_initiation", REQUEST)["instance_id"]
    people("sara.spm").complete(1, INTAKE)
    return instance


def test_the_search_finds_events_with_the_clis_filters(people, browser):
    walked(people)
    ian = browser("ian.auditor")
    assert 'href="/audit"' in ian.get("/").text  # an auditor's navigation shows Audit
    page = ian.get("/audit?search=1&actor=sara.spm&type=task_completed")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "1 event" in text and "completed 'Intake review' with" in text.replace("&#39;", "'")
    assert "task_completed" in text and "sean.sponsor" not in text.split("Search events")[1].split("Verify")[0]
    unknown = ian.get("/audit?search=1&actor=nobody.at.all")  # refused as the CLI refuses it, on the page
    assert unknown.status_code == 404 and "no user or actor &#39;nobody.at.all&#39; in the record" in unknown.text
    assert 'value="nobody.at.all"' in unknown.text
    assert "No event matches" in ian.get("/audit?search=1&actor=sean.sponsor&type=task_completed").text
    where = ian.get("/audit?search=1&type=task_completed&where=data.intakeDecision%3DAccept").text
    assert "1 event" in text_of(where)


def test_the_downloads_carry_what_the_cli_writes(people, browser):
    instance = walked(people)
    ian = browser("ian.auditor")
    downloaded = ian.get(f"/audit/events.csv?instance={instance}")
    assert downloaded.status_code == 200 and downloaded.headers["content-type"].startswith("text/csv")
    assert "attachment" in downloaded.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(downloaded.text)))
    expected = people("ian.auditor").audit_events(instance=instance)
    assert table[0] == CSV_COLUMNS and table[1:] == [[str(c) if c is not None else "" for c in csv_row(e)]
                                                      for e in expected]
    as_json = ian.get(f"/audit/events.json?instance={instance}")
    assert json.loads(as_json.text) == json.loads(json.dumps(expected, default=str))


def test_a_filter_the_record_cannot_answer_is_said_on_the_page(people, browser):
    walked(people)
    page = browser("ian.auditor").get("/audit?search=1&period=2027-Q9")
    assert page.status_code == 400 and "Invalid input" in page.text and "2027-Q9" in page.text
    assert browser("ian.auditor").get("/audit/events.csv?limit=none").status_code == 400


def test_verification_says_the_record_is_intact(people, browser):
    instance = walked(people)
    ian = browser("ian.auditor")
    whole = text_of(ian.get("/audit/verify").text)
    assert "Verified:" in whole and "every chain is intact" in whole
    one = text_of(ian.get(f"/audit/verify?instance={instance}").text)
    assert f"of instance {instance}" in one
    assert ian.get("/audit/verify?instance=99").status_code == 404


def test_the_instance_report_is_the_clis_html_with_its_diagram_under_its_own_policy(people, browser):
    instance = walked(people)
    ian = browser("ian.auditor")
    assert ian.get(f"/audit/report?instance={instance}").headers["location"] == \
        f"/audit/report/{instance}?format=html"
    shown = ian.get(f"/audit/report/{instance}")
    assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
    policy = shown.headers["content-security-policy"]
    assert "style-src 'unsafe-inline'" in policy and "script" not in policy and "frame-ancestors 'none'" in policy
    assert "<svg" in shown.text and "<script" not in shown.text
    cli = reporting.render(people("ian.auditor").report(instance), "html")
    for section in ("diagram", "verification", "timeline"):  # the CLI's sections (durations move with the clock)
        assert section_of(shown.text, section) == section_of(cli, section), section
    download = ian.get(f"/audit/report/{instance}?format=md&download=1")
    assert download.headers["content-disposition"] == f'attachment; filename="instance-{instance}-report.md"'
    assert download.text.startswith("# ")


def test_the_process_report_over_a_period(people, browser):
    walked(people)
    ian = browser("ian.auditor")
    shown = ian.get("/audit/process-report?process=project_initiation&since=2020-01-01&format=html")
    assert shown.status_code == 200 and "project_initiation" in shown.text and "<script" not in shown.text
    as_json = ian.get("/audit/process-report?process=project_initiation&period=2020&format=json").json()
    assert as_json["kind"] == "process"
    refused = ian.get("/audit/process-report?process=project_initiation")
    assert refused.status_code == 400 and "give the period" in refused.text
