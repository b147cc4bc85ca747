"""`worker --now T` evaluates as of T but never forges the record: every event is written at the real time, with
T beside it (`as_of`), so an instance's history only goes forward. `worker --dry-run` changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, inspect, select, text
from test_cli import run, run_json

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine.models import Event, ProcessInstance


def waiting_instances(make_pmo, count: int = 2):
    app = make_pmo("alice")
    app.init(TEST_ORG)
    app.deploy([FIXTURES / "workers" / "wait_a_day.bpmn", FIXTURES / "schedules" / "twice.bpmn"])
    return app, [app.start("wait_a_day", {})["instance_id"] for _ in range(count)]


def history_times(app, instance_id: int) -> list[datetime]:
    return [datetime.fromisoformat(e["at"]) for e in app.history(instance_id)]


AS_OF = datetime(2031, 2, 1, tzinfo=UTC)  # both occurrences of `twice` (2031-01-05 and -12) are due by then


def test_a_run_as_of_a_later_time_records_events_at_the_real_time_with_the_simulated_time_beside(make_pmo):
    app, ids = waiting_instances(make_pmo)
    as_of = AS_OF
    before = datetime.now(UTC)
    result = app.acting_as("pmo.admin").run_due(as_of)
    after = datetime.now(UTC)
    assert sorted(result["fired"]) == ids and result["now"] == as_of.isoformat()
    for instance_id in ids:
        events = app.history(instance_id)
        times = history_times(app, instance_id)
        assert times == sorted(times) and before <= times[-1] <= after  # forward, and real
        fired = [e for e in events if e["type"] in ("timer_fired", "instance_completed")]
        assert [e["type"] for e in fired] == ["timer_fired", "instance_completed"]
        assert {e["payload"]["as_of"] for e in fired} == {as_of.isoformat()}
        assert "as_of" not in events[0]["payload"]  # the start was not simulated
        assert datetime.fromisoformat(fired[0]["payload"]["due"]) < as_of
    started = [app.history(instance_id)[0] for instance_id in result["started"]]
    assert len([e for e in started if e["process_id"] == "twice"]) == 2
    for first in started:
        assert first["type"] == "instance_started" and first["payload"]["as_of"] == as_of.isoformat()
        assert before <= datetime.fromisoformat(first["at"]) <= after
    assert app.verify()["ok"]


def test_a_run_as_of_an_earlier_time_than_the_last_one_still_records_forward(make_pmo, db_url):
    """The forged record this prevents: a run dated 12-07, then a run dated 12-01, wrote history backwards."""
    app, (first, second) = waiting_instances(make_pmo)
    later = datetime.now(UTC) + timedelta(days=7)
    assert app.acting_as("pmo.admin").run_due(later)["fired"] == [first, second]
    app.start("wait_a_day", {})
    earlier = datetime.now(UTC) + timedelta(days=1, hours=1)
    run_json(db_url, "worker", "--once", "--now", earlier.isoformat(), user="pmo.admin")
    with app.db.transaction() as session:
        rows = session.execute(select(Event.at, Event.payload).where(Event.stream.like("instance/%"))
                               .order_by(Event.id)).all()
    times = [at for at, _ in rows]
    assert times == sorted(times)
    assert [p["as_of"] for _, p in rows if "as_of" in p][-1] == earlier.isoformat()


def table_counts(app) -> dict[str, int]:
    with app.db.transaction() as session:
        names = inspect(session.connection()).get_table_names()
        return {name: session.scalar(select(func.count()).select_from(text(name))) for name in names}


def chain_heads(app) -> list[tuple]:
    with app.db.transaction() as session:
        return session.execute(select(ProcessInstance.id, ProcessInstance.last_seq, ProcessInstance.last_hash,
                                      ProcessInstance.next_due, ProcessInstance.lock_version)
                               .order_by(ProcessInstance.id)).all()


def test_a_dry_run_lists_what_would_fire_and_start_and_changes_nothing(make_pmo, db_url):
    app, ids = waiting_instances(make_pmo)
    as_of = AS_OF
    counts, heads = table_counts(app), chain_heads(app)
    with app.db.transaction() as session:
        schedule = session.execute(text("SELECT next_due, fired FROM process_schedules")).all()

    listed = run_json(db_url, "worker", "--dry-run", "--now", as_of.isoformat())
    assert listed["dry_run"] is True and listed["now"] == as_of.isoformat()
    assert [i["instance_id"] for i in listed["would_fire"]] == ids
    assert {t["task"] for i in listed["would_fire"] for t in i["timers"]} == {"one_day"}
    [twice] = [s for s in listed["would_start"] if s["process_id"] == "twice"]
    assert len(twice["occurrences"]) == 2 and twice["fired"] == 0
    shown = run(db_url, "worker", "--dry-run", "--now", as_of.isoformat())
    assert shown.exit_code == 0 and "nothing was changed" in shown.stdout and "wait_a_day" in shown.stdout

    assert table_counts(app) == counts and chain_heads(app) == heads
    with app.db.transaction() as session:
        assert session.execute(text("SELECT next_due, fired FROM process_schedules")).all() == schedule
    assert app.acting_as("pmo.admin").run_due(as_of)["fired"] == ids  # what the dry run listed is what a real run fires


def test_a_dry_run_without_now_lists_only_what_is_due_already(make_pmo, db_url):
    waiting_instances(make_pmo)
    listed = run_json(db_url, "worker", "--dry-run")
    assert listed["would_fire"] == [] and [s for s in listed["would_start"] if s["process_id"] == "twice"] == []
