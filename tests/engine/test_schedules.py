"""Timer start events: the worker starts one instance per due occurrence, once, however late or many workers."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidProcess
from pmoflow.engine.models import Event

SCHEDULES = FIXTURES / "schedules"
YEARLY = SCHEDULES / "yearly_review.bpmn"


@pytest.fixture
def app(initialised):
    return initialised("alice", TEST_ORG)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def schedule(app, process_id: str) -> dict:
    return next(s for s in app.schedules() if s["process_id"] == process_id)


def started(app, result: dict, process_id: str = "yearly_review") -> list[int]:
    """The instances a run started of one process (init's bundled audit programme has a yearly timer too)."""
    return [i for i in result["started"] if app.show(i)["process_id"] == process_id]


def started_events(app, instance_ids: list[int]) -> list[dict]:
    return [app.history(i)[0]["payload"] for i in instance_ids]


def deploy_yearly(app) -> tuple[dict, datetime]:
    deployed = app.deploy([YEARLY])[0]
    return deployed, at(deployed["deployed_at"])


def test_deploy_computes_each_kind_of_timer_start(app):
    deployed = {d["process_id"]: d for d in app.deploy([SCHEDULES])}
    now = {p: at(d["deployed_at"]) for p, d in deployed.items()}
    yearly = schedule(app, "yearly_review")
    assert (yearly["start_event"], yearly["expression"], yearly["remaining"], yearly["fired"], yearly["owner"]) == \
        ("every_year", '"R/P1Y"', None, 0, "alice")
    assert at(yearly["next_due"]) == now["yearly_review"].replace(year=now["yearly_review"].year + 1)
    assert (schedule(app, "twice")["next_due"], schedule(app, "twice")["remaining"]) == \
        ("2031-01-05T09:00:00+00:00", 2)
    assert (schedule(app, "on_a_date")["next_due"], schedule(app, "on_a_date")["remaining"]) == \
        ("2031-03-01T08:00:00+00:00", 1)
    assert at(schedule(app, "after_a_week")["next_due"]) == now["after_a_week"] + timedelta(days=7)
    assert deployed["yearly_review"]["schedules"] == [yearly]
    with app.db.transaction() as s:
        recorded = s.scalar(select(Event.payload).where(Event.type == "deployed", Event.process_id == "twice"))
    assert recorded["schedules"][0]["next_due"] == "2031-01-05T09:00:00+00:00"


def test_yearly_start_fires_once_at_its_due_time(app):
    deploy_yearly(app)
    due = at(schedule(app, "yearly_review")["next_due"])
    assert started(app, app.acting_as("pmo.admin").run_due(now=due - timedelta(seconds=1))) == []
    firing = due + timedelta(hours=3)
    result = app.acting_as("pmo.admin").run_due(now=firing)
    assert result["errors"] == []
    [instance_id] = started(app, result)
    shown = app.show(instance_id)
    assert (shown["status"], shown["started_by"], shown["version"]) == ("running", "alice", 1)
    [task] = shown["tasks"]
    assert (task["bpmn_id"], task["candidates"], task["candidate_kind"]) == ("review", ["Project Manager"], "role")
    assert at(task["due"]) == firing + timedelta(days=5)  # its SLA runs from when it really started
    event = started_events(app, [instance_id])[0]
    assert (event["by_timer"], event["expression"], event["occurrence"]) == ("every_year", '"R/P1Y"', 1)
    assert at(event["due"]) == due
    # the same run again starts nothing more (of any process)
    assert app.acting_as("pmo.admin").run_due(now=firing)["started"] == []
    after = schedule(app, "yearly_review")
    assert (at(after["next_due"]), after["fired"]) == (due.replace(year=due.year + 1), 1)
    assert app.verify()["ok"]


def test_a_worker_three_years_late_starts_each_missed_year_once(app):
    deploy_yearly(app)
    first = at(schedule(app, "yearly_review")["next_due"])
    result = app.acting_as("pmo.admin").run_due(now=first.replace(year=first.year + 2) + timedelta(days=1))
    yearly = started(app, result)
    assert len(yearly) == 3
    dues = [at(e["due"]) for e in started_events(app, yearly)]
    assert dues == [first.replace(year=first.year + k) for k in range(3)]
    assert [e["occurrence"] for e in started_events(app, yearly)] == [1, 2, 3]
    again = app.acting_as("pmo.admin").run_due(now=first.replace(year=first.year + 2) + timedelta(days=1))
    assert again["started"] == []
    assert schedule(app, "yearly_review")["fired"] == 3


def test_a_manual_start_does_not_also_wait_for_the_timer(app, make_pmo):
    deploy_yearly(app)
    bob = make_pmo("bob")
    instance_id = bob.start("yearly_review", {})["instance_id"]
    assert [t["bpmn_id"] for t in bob.show(instance_id)["tasks"]] == ["review"]
    first = at(schedule(app, "yearly_review")["next_due"])
    result = app.acting_as("pmo.admin").run_due(now=first + timedelta(days=1))
    assert result["fired"] == [instance_id]  # its 5-day reminder, nothing else
    assert instance_id not in result["started"] and len(started(app, result)) == 1
    assert [t["bpmn_id"] for t in bob.show(instance_id)["tasks"]] == ["review"]
    assert "every_year" not in {e["task"] for e in bob.history(instance_id)}
    assert bob.show(instance_id)["started_by"] == "bob"


def test_a_bounded_cycle_stops_after_its_count(app):
    app.deploy([SCHEDULES / "twice.bpmn"])
    assert started(app, app.acting_as("pmo.admin").run_due(now=at("2031-01-05T08:59:00+00:00")), "twice") == []
    result = app.acting_as("pmo.admin").run_due(now=at("2031-02-01T00:00:00+00:00"))
    assert [e["due"] for e in started_events(app, started(app, result, "twice"))] == \
        ["2031-01-05T09:00:00+00:00", "2031-01-12T09:00:00+00:00"]
    assert (schedule(app, "twice")["next_due"], schedule(app, "twice")["remaining"]) == (None, 0)
    assert started(app, app.acting_as("pmo.admin").run_due(now=at("2031-06-01T00:00:00+00:00")), "twice") == []


def test_a_date_start_and_a_duration_start_fire_once(app):
    deployed = app.deploy([SCHEDULES / "on_a_date.bpmn", SCHEDULES / "after_a_week.bpmn"])
    week = at(deployed[1]["deployed_at"]) + timedelta(days=7)
    assert started(app, app.acting_as("pmo.admin").run_due(now=week - timedelta(minutes=1)), "after_a_week") == []
    [follow_up] = started(app, app.acting_as("pmo.admin").run_due(now=week), "after_a_week")
    assert app.show(follow_up)["tasks"][0]["bpmn_id"] == "follow_up"
    [dated] = started(app, app.acting_as("pmo.admin").run_due(now=at("2031-03-01T08:00:00+00:00")), "on_a_date")
    shown = app.show(dated)
    assert (shown["status"], shown["data"]["noted"]) == ("completed", True)
    later = app.acting_as("pmo.admin").run_due(now=at("2031-06-01T00:00:00+00:00"))
    assert started(app, later, "on_a_date") == started(app, later, "after_a_week") == []


def changed_copy(tmp_path: Path, old: str, new: str) -> Path:
    target = tmp_path / "yearly_review.bpmn"
    target.write_text(YEARLY.read_text().replace(old, new))
    return target


def test_redeploying_a_changed_version_keeps_the_yearly_clock(app, tmp_path):
    deploy_yearly(app)
    first = at(schedule(app, "yearly_review")["next_due"])
    app.acting_as("pmo.admin").run_due(now=first)
    kept = schedule(app, "yearly_review")
    assert app.deploy([changed_copy(tmp_path, "Review the year", "Review the past year")])[0]["version"] == 2
    after = schedule(app, "yearly_review")
    assert (after["version"], after["next_due"], after["fired"]) == (2, kept["next_due"], 1)
    [new] = started(app, app.acting_as("pmo.admin").run_due(now=at(kept["next_due"])))
    assert (app.show(new)["version"], app.show(new)["tasks"][0]["name"]) == (2, "Review the past year")


def test_a_changed_timer_starts_a_new_schedule(app, tmp_path):
    deploy_yearly(app)
    deployed = app.deploy([changed_copy(tmp_path, '"R/P1Y"', '"R/P1M"')])[0]
    monthly = schedule(app, "yearly_review")
    assert (monthly["expression"], monthly["version"], monthly["fired"]) == ('"R/P1M"', 2, 0)
    assert at(monthly["next_due"]) - at(deployed["deployed_at"]) in (timedelta(days=d) for d in (28, 29, 30, 31))


def test_a_timer_start_that_needs_task_data_is_refused_at_deploy(app, tmp_path):
    with pytest.raises(InvalidProcess, match="cannot be computed before the process starts"):
        app.deploy([changed_copy(tmp_path, '"R/P1Y"', "startAt")])
    assert "yearly_review" not in {p["process_id"] for p in app.processes()}
    assert "yearly_review" not in {s["process_id"] for s in app.schedules()}


def cli(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--db", db_url, *args])
    return result.exit_code, result.stdout


def test_cli_schedules_and_worker(app, db_url):
    app.deploy([SCHEDULES / "twice.bpmn"])
    code, shown = cli(db_url, "schedules")
    assert code == 0 and "twice_start" in shown and "2031-01-05T09:00:00+00:00" in shown and "alice" in shown
    code, shown = cli(db_url, "schedules", "--json")
    assert code == 0 and ("twice", 2) in [(s["process_id"], s["remaining"]) for s in json.loads(shown)]
    code, shown = cli(db_url, "--user", "pmo.admin", "worker", "--once", "--now", "2031-01-06T00:00:00+00:00")
    ids = sorted(i["instance_id"] for i in app.instances())  # the audit programme's yearly starts, then ours
    assert code == 0 and f"started {len(ids)} instance(s) {ids} by timer start events" in shown
    assert [i["process_id"] for i in app.instances()].count("twice") == 1
    code, shown = cli(db_url, "--user", "pmo.admin", "worker", "--once", "--json", "--now", "2031-01-06T00:00:00+00:00")
    assert code == 0 and json.loads(shown)["started"] == []
    code, shown = cli(db_url, "schedules")
    assert "2031-01-12T09:00:00+00:00" in shown


def test_the_audit_programme_starts_every_year_for_the_internal_auditors(demo_pmo, make_pmo):
    programme = schedule(demo_pmo, "audit_programme")
    assert (programme["start_event"], programme["expression"], programme["owner"]) == \
        ("start_yearly", '"R/P1Y"', "pmoflow-init")
    result = demo_pmo.acting_as("pmo.admin").run_due(now=at(programme["next_due"]) + timedelta(days=1))
    assert result["errors"] == []
    [instance_id] = [i for i in result["started"] if demo_pmo.show(i)["process_id"] == "audit_programme"]
    [task] = demo_pmo.show(instance_id)["tasks"]
    assert (task["bpmn_id"], task["candidates"], task["candidate_kind"]) == \
        ("plan_programme", ["Internal Auditor"], "role")
    # whoever plans the year becomes its programme manager (task_performer): a plan that misses clauses
    # comes back to them, not to the deployer nobody can act as
    from test_audit_process_engine import next_months, programme_entry

    ian = make_pmo("ian.auditor")
    month = next_months(2)
    ian.complete(task["id"], {"programmeYear": int(month[:4]), "audits": [programme_entry(month, ["4", "5"])]})
    shown = ian.show(instance_id)
    assert shown["data"]["programmeManager"] == "ian.auditor"
    [revise] = [t for t in shown["tasks"] if t["state"] == "ready"]
    assert (revise["candidates"], revise["candidate_kind"]) == (["ian.auditor"], "user")


def test_racing_workers_start_each_occurrence_once(make_pmo, db_url):
    app = make_pmo("alice")
    app.init(TEST_ORG)
    deploy_yearly(app)
    first = at(schedule(app, "yearly_review")["next_due"])
    now = first.replace(year=first.year + 7) + timedelta(days=1)  # eight occurrences due
    workers = [make_pmo() for _ in range(4)]
    results: list[dict] = []
    gate = threading.Barrier(len(workers))

    def work(worker) -> None:
        gate.wait()
        results.append(worker.acting_as("pmo.admin").run_due(now=now))

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    ids = sorted(i for r in results for i in r["started"])
    yearly = started(app, {"started": ids})
    assert len(results) == 4 and len(yearly) == 8 == len(set(yearly)) and len(ids) == len(set(ids))
    assert sorted(e["occurrence"] for e in started_events(app, yearly)) == list(range(1, 9))
    assert schedule(app, "yearly_review")["fired"] == 8
