"""The notification outbox: every reminder and escalation a process queues lands there, one row per recipient,
and is delivered when its recipient lists their own notifications.

Timers are fired by the worker (`run_due(now)`) on real processes: the fixture `package_approval` (a Quality
Director's approval with a 2-day reminder to the role and the starter, and a 5-day escalation to the Sponsor)
on the test organisation, where two people hold the Quality Director role; and the bundled project initiation
(its 5-day approval reminder) on the demo organisation. Each test runs on SQLite and, when PMOFLOW_TEST_PG_URL
is set, on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from scenario_helpers import task_for
from test_cli import assert_error, run, run_json
from test_initiation_engine import request, to_approval

from conftest import FIXTURES, TEST_ORG, People, people_getter
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, NotFound, PermissionDenied

PACKAGE = FIXTURES / "notifications"
REMINDER = "Reminder: the package is waiting for your approval"
ESCALATION = "Overdue: the package was not approved in 5 days"


@pytest.fixture
def people(initialised, make_pmo) -> People:
    """`people("carol")`: an API object acting as that user of the test organisation, with the fixture process."""
    return people_getter(make_pmo, initialised("alice", TEST_ORG, PACKAGE))


@pytest.fixture
def demo_people(demo_pmo, make_pmo) -> People:
    """conftest's `people` (demo users), under another name: `people` here is the test organisation's."""
    return people_getter(make_pmo, demo_pmo)


def waiting_package(people: People) -> tuple[int, dict, datetime]:
    """bob (a Project Manager) starts a package approval: (instance, the open approval, when it opened)."""
    started = people("bob").start("package_approval")
    assert (started["status"], started["error"]) == ("running", None)
    [approve] = [t for t in people("carol").tasks() if t["instance_id"] == started["instance_id"]]
    return started["instance_id"], approve, datetime.fromisoformat(approve["created_at"])


def fire(app: Pmoflow, moment: datetime, instance_id: int) -> tuple[datetime, datetime]:
    """Fire the instance's timers as of `moment`; the real time window the run took (what it records)."""
    before = datetime.now(UTC)
    fired = app.acting_as("pmo.admin").run_due(moment)
    assert (fired["fired"], fired["errors"]) == ([instance_id], [])
    return before, datetime.now(UTC)


def queued_within(notification: dict, window: tuple[datetime, datetime]) -> bool:
    """Queued at the real time of the run that fired it, not at the time the run evaluated as of."""
    return window[0] <= datetime.fromisoformat(notification["created_at"]) <= window[1]


def outbox(app: Pmoflow, instance_id: int | None = None) -> dict[str, dict]:
    """Everyone's notifications, by recipient (an auditor's listing: delivers nothing)."""
    return {n["recipient"]: n for n in app.notifications(all_users=True, instance=instance_id)}


# -- what lands in the outbox ---------------------------------------------------------------------------------

def test_a_reminder_reaches_the_role_holders_and_the_named_user(people):
    iid, approve, opened = waiting_package(people)
    assert people("dave").notifications(all_users=True) == []
    # not due yet
    assert people("dave").acting_as("pmo.admin").run_due(opened + timedelta(days=1, hours=23))["fired"] == []

    queued_at = fire(people("dave"), opened + timedelta(days=2, hours=1), iid)
    rows = outbox(people("dave"), iid)
    # the role expanded to both Quality Directors; bob was named (process_initiator()); nobody else
    assert {user: n["via_role"] for user, n in rows.items()} == {
        "alice": "Quality Director", "carol": "Quality Director", "bob": None}
    record = people("alice").show(iid)["data"]["reminder"]
    for n in rows.values():
        assert (n["notification_id"], n["instance_id"], n["process_id"], n["kind"], n["subject"], n["channel"]) == (
            record["notificationId"], iid, "package_approval", "notice", REMINDER, "inbox")
        assert (n["task"], n["task_name"], n["human_task_id"]) == ("approve", "Approve the package", approve["id"])
        assert queued_within(n, queued_at) and (n["delivered_at"], n["new"]) == (None, False)
    assert people("carol").tasks()[0]["id"] == approve["id"]  # non-interrupting: the approval stays open

    # the audit record: who got it, and who could not be reached
    [event] = [e for e in people("dave").history(iid) if e["type"] == "notification_queued"]
    assert (event["actor"], event["task"]) == ("worker", "remind_approvers")
    payload = event["payload"]
    assert (payload["notification_id"], payload["subject"], payload["about_task"]) == (
        record["notificationId"], REMINDER, "approve")
    assert payload["recipients"] == [{"user": "bob", "via_role": None},
                                     {"user": "alice", "via_role": "Quality Director"},
                                     {"user": "carol", "via_role": "Quality Director"}]
    assert (payload["unknown_users"], payload["unreached_roles"]) == (["nobody.here"], ["Internal Auditor"])
    found = people("dave").audit_events(types=["notification_queued"], where=["recipients.user=carol"])
    assert [e["payload"]["notification_id"] for e in found] == [record["notificationId"]]
    assert people("dave").acting_as("pmo.admin").run_due(opened + timedelta(days=3))["fired"] == []  # it fires once


def test_an_escalation_names_its_level_and_no_task(people):
    iid, approve, opened = waiting_package(people)
    fire(people("dave"), opened + timedelta(days=6), iid)  # the reminder (day 2), then the escalation (day 5)
    assert people("dave").show(iid)["status"] == "completed"  # the escalation ended the approval

    rows = people("dave").notifications(all_users=True)
    assert [(n["recipient"], n["kind"], n["subject"]) for n in rows] == [
        ("bob", "notice", REMINDER), ("alice", "notice", REMINDER), ("carol", "notice", REMINDER),
        ("dave", "overdue", ESCALATION)]
    escalation = rows[-1]
    assert (escalation["via_role"], escalation["task"], escalation["task_name"], escalation["human_task_id"]) == (
        "Sponsor", None, None, None)
    assert escalation["notification_id"] == people("dave").show(iid)["data"]["escalation"]["notificationId"]


# -- delivery ----------------------------------------------------------------------------------------------

def test_listing_your_own_delivers_them_and_listing_someone_elses_does_not(people):
    iid, _, opened = waiting_package(people)
    fire(people("dave"), opened + timedelta(days=3), iid)

    # an auditor, and a colleague, look at carol's: nothing is delivered
    assert [n["delivered_at"] for n in people("dave").notifications(user="carol")] == [None]
    assert [n["new"] for n in people("alice").notifications(user="carol", undelivered_only=True)] == [False]
    assert outbox(people("dave"))["carol"]["delivered_at"] is None

    # carol lists her own: delivered now, once
    listed_from = datetime.now(UTC)
    [mine] = people("carol").notifications()
    assert mine["new"] is True
    assert listed_from <= datetime.fromisoformat(mine["delivered_at"]) <= datetime.now(UTC)  # when she listed them
    [again] = people("carol").notifications()
    assert (again["new"], again["delivered_at"]) == (False, mine["delivered_at"])
    assert people("carol").notifications(undelivered_only=True) == []

    # naming yourself is listing your own
    [alices] = people("alice").notifications(user="alice", instance=iid)
    assert alices["new"] is True
    delivered = {user: n["delivered_at"] is not None for user, n in outbox(people("dave")).items()}
    assert delivered == {"alice": True, "carol": True, "bob": False}
    assert [n["recipient"] for n in people("dave").notifications(all_users=True, undelivered_only=True)] == ["bob"]


def test_listing_refuses_what_it_cannot_answer(people, make_pmo, monkeypatch):
    iid, _, opened = waiting_package(people)
    fire(people("dave"), opened + timedelta(days=3), iid)
    monkeypatch.delenv("PMOFLOW_USER", raising=False)
    with pytest.raises(PermissionDenied, match="no user given"):
        make_pmo(None).notifications()
    with pytest.raises(NotFound, match="unknown user 'nobody.here'"):
        people("dave").notifications(user="nobody.here")
    with pytest.raises(NotFound, match="no instance 999"):
        people("carol").notifications(instance=999)
    with pytest.raises(InvalidInput, match="not both"):
        people("carol").notifications(user="bob", all_users=True)
    assert all(n["delivered_at"] is None for n in outbox(people("dave")).values())  # refused: nothing delivered


def test_archiving_a_finished_instance_takes_its_notifications_along(people, tmp_path):
    iid, _, opened = waiting_package(people)
    fire(people("dave"), opened + timedelta(days=6), iid)
    assert len(people("dave").notifications(all_users=True)) == 4
    archived = people("alice").archive("2200-01-01", tmp_path / "pmo.pmoarchive")
    assert archived["instance_ids"] == [iid]
    assert people("dave").notifications(all_users=True) == []
    assert people("dave").verify_archive(tmp_path / "pmo.pmoarchive")["ok"]


# -- a bundled process -------------------------------------------------------------------------------------

def test_the_charter_approval_reminder_reaches_the_approver(demo_people):
    alex, sara = demo_people("alex.apd"), demo_people("sara.spm")
    iid = demo_people("sean.sponsor").start("project_initiation", request())["instance_id"]
    to_approval(demo_people, iid)
    approve = task_for(alex, iid, "approve_charter")
    assert alex.notifications() == []

    queued_at = fire(sara, datetime.fromisoformat(approve["created_at"]) + timedelta(days=6), iid)
    [n] = sara.notifications(user="alex.apd")  # someone else's: not delivered
    request_id = alex.task(approve["id"])["data"]["requestId"]
    assert (n["instance_id"], n["process_id"], n["via_role"], n["task"], n["human_task_id"]) == (
        iid, "project_initiation", "Assistant Project Director", "approve_charter", approve["id"])
    assert request_id in n["subject"] and n["task_name"] == approve["name"]
    assert queued_within(n, queued_at) and n["delivered_at"] is None
    assert sara.notifications(instance=iid) == []  # the Senior PM got none

    [mine] = alex.notifications()
    assert (mine["id"], mine["new"]) == (n["id"], True)
    assert sara.notifications(user="alex.apd", undelivered_only=True) == []


# -- the command ---------------------------------------------------------------------------------------------

def test_the_command_lists_delivers_and_refuses_plainly(people, db_url):
    iid, _, opened = waiting_package(people)
    fire(people("dave"), opened + timedelta(days=3), iid)
    db = db_url

    shown = run(db, "notifications", "--for", "bob", user="carol")  # a table of someone else's
    assert shown.exit_code == 0, shown.stderr
    for text in ("Notifications for bob", "Reminder: the package", "Approve the package", "notice"):
        assert text in shown.stdout, shown.stdout
    assert [n["delivered_at"] for n in run_json(db, "notifications", "--all", "--undelivered")] == [None] * 3

    [mine] = run_json(db, "notifications", user="bob")  # bob's own: delivered
    assert (mine["recipient"], mine["new"], mine["task"]) == ("bob", True, "approve")
    assert run_json(db, "notifications", "--format", "json", user="bob")[0]["new"] is False
    assert "no undelivered notifications for bob" in run(db, "notifications", "--undelivered", user="bob").stdout
    assert [n["recipient"] for n in run_json(db, "notifications", "--all", "--undelivered")] == ["alice", "carol"]

    before = run_json(db, "notifications", "--all")
    assert_error(run(db, "notifications"), 4, "no user given")
    assert_error(run(db, "notifications", "--for", "nobody.here"), 1, "unknown user 'nobody.here'")
    assert_error(run(db, "notifications", "--instance", "abc", user="alice"), 1, "no instance 'abc'")
    bad_format = run(db, "notifications", "--format", "xml", user="alice")
    assert bad_format.exit_code == 2 and "Invalid value for '--format'" in bad_format.stderr
    assert "Traceback" not in bad_format.stderr + bad_format.stdout
    both = run(db, "notifications", "--for", "bob", "--all", user="alice")
    assert both.exit_code == 2 and "give --for USER or --all, not both" in both.stderr
    assert run_json(db, "notifications", "--all") == before  # the refused commands delivered nothing
