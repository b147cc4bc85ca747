"""Every act that changes the installation needs its role, checked in the service layer (so the CLI, the Python
API and any later entry point agree): PMO Administrator for administrative acts and organisation reloads, Process
Designer (or PMO Administrator) for deploy. A refusal is exit 4 and changes nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from conftest import FIXTURES, TEST_LIBRARY, TEST_ORG
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PermissionDenied
from pmoflow.engine.models import Event, ProcessDefinition, User, UserRole

ROLES = FIXTURES / "roles"


def fingerprint(app: Pmoflow) -> tuple:
    """What a refused act must leave as it was: events, definitions, people and roles, instance states."""
    with app.db.transaction() as s:
        stored = (s.scalar(select(func.count(Event.id))), s.scalar(select(func.count(ProcessDefinition.id))),
                  sorted((r.user_name, r.role) for r in s.scalars(select(UserRole))))
    return stored, [(i["instance_id"], i["status"]) for i in app.instances()]


@pytest.fixture
def failed(pmo, make_pmo):
    """An instance in error (the `simple` fixture divides by zero for amount 13), and erin, a Project Manager who
    holds no administrative role."""
    started = make_pmo("bob").start("simple", {"title": "abc", "amount": 13})
    assert started["status"] == "error"
    return started["instance_id"], make_pmo("erin")


@pytest.mark.parametrize("act", [
    lambda app, i: app.suspend(i, reason="r"),
    lambda app, i: app.terminate(i, reason="r"),
    lambda app, i: app.retry(i),
    lambda app, i: app.retry(i, {"amount": 2}, reason="typo"),
    lambda app, i: app.skip(i, {"total": 1}, reason="r"),
    lambda app, i: app.migrate(i, 1),
    lambda app, i: app.deploy([FIXTURES]),
    lambda app, i: app.init(TEST_ORG),
], ids=["suspend", "terminate", "retry", "retry-data", "skip", "migrate", "deploy", "init"])
def test_a_project_manager_may_not_administer(failed, pmo, act):
    instance_id, erin = failed
    before = fingerprint(pmo)
    with pytest.raises(PermissionDenied, match="needs the role .*PMO Administrator; erin holds Project Manager"):
        act(erin, instance_id)
    assert fingerprint(pmo) == before


def test_data_edits_and_archives_need_an_administrator(failed, pmo, make_pmo, tmp_path):
    instance_id, erin = failed
    pmo.retry(instance_id, {"amount": 2}, reason="the amount was mistyped")  # alice administers: running again
    before = fingerprint(pmo)
    with pytest.raises(PermissionDenied, match="changing an instance's data needs the role PMO Administrator"):
        erin.edit_data(instance_id, {"title": "x"}, reason="r")
    with pytest.raises(PermissionDenied, match="archiving history needs the role PMO Administrator"):
        erin.archive("2999-01-01", tmp_path / "x.pmoarchive")
    with pytest.raises(PermissionDenied, match="resuming an instance needs"):
        make_pmo("carol").resume(instance_id)
    assert fingerprint(pmo) == before and not (tmp_path / "x.pmoarchive").exists()


def test_a_process_designer_may_deploy(make_pmo, tmp_path):
    org = tmp_path / "org.toml"
    org.write_text(TEST_ORG.read_text() + '\n[[users]]\nname = "dee"\nroles = ["Process Designer"]\n')
    make_pmo("alice").init(org)
    [deployed] = make_pmo("dee").deploy([FIXTURES / "simple.bpmn"])
    assert (deployed["process_id"], deployed["deployed_by"], deployed["created"]) == ("simple", "dee", True)
    with pytest.raises(PermissionDenied, match="migrating instances needs the role PMO Administrator"):
        make_pmo("dee").migrate_all("simple", 1, 1)


def test_acts_without_a_user_or_by_an_unknown_one_are_refused(failed, pmo, db_url):
    instance_id, _ = failed
    for user, message in ((None, "no user given"), ("mallory", "unknown user 'mallory'")):
        app = Pmoflow(db_url, user=user, libraries=[TEST_LIBRARY])
        for act, args in ((app.suspend, [instance_id]), (app.deploy, [[FIXTURES]]), (app.init, [TEST_ORG])):
            with pytest.raises(PermissionDenied, match=message):
                act(*args)
        app.close()


def test_the_first_init_is_the_installers_and_later_ones_need_an_administrator(make_pmo, db_url, tmp_path):
    installer = Pmoflow(db_url, user=None, libraries=[TEST_LIBRARY])
    assert installer.init(TEST_ORG)["users"] == 6
    with pytest.raises(PermissionDenied, match="no user given"):
        installer.init(TEST_ORG)
    installer.close()
    assert make_pmo("alice").init(TEST_ORG)["users"] == 6  # alice administers: reloads


def test_an_organisation_without_an_administrator_is_refused(make_pmo, tmp_path):
    org = tmp_path / "org.toml"
    org.write_text('[[users]]\nname = "solo"\nroles = ["Project Manager"]\n')
    app = make_pmo("solo")
    with pytest.raises(InvalidInput, match="nobody holds the role PMO Administrator"):
        app.init(org)
    with pytest.raises(Exception, match="pmoflow init"):  # nothing was created: the schema is not there
        app.users()


def test_retry_and_data_edits_refuse_routing_keys_alike(failed, pmo):
    instance_id, _ = failed
    routing = {"lane_owners": {"Quality Director": ["alice"]}}
    with pytest.raises(InvalidInput, match="lane_owners route tasks as they become ready"):
        pmo.retry(instance_id, routing, reason="r")
    with pytest.raises(InvalidInput, match="lane_owners route tasks as they become ready"):
        pmo.edit_data(instance_id, routing, reason="r")
    assert pmo.show(instance_id)["status"] == "error"


def test_a_message_from_outside_starts_a_process_only_for_holders_of_its_start_lane(pmo, make_pmo):
    pmo.deploy([ROLES])
    before = fingerprint(pmo)
    with pytest.raises(PermissionDenied, match="started from the Quality Director lane; erin does not hold"):
        make_pmo("erin").message("please_review")
    assert fingerprint(pmo) == before
    started = make_pmo("carol").message("please_review")
    [instance] = started["delivered_to"]
    assert pmo.show(instance)["started_by"] == "carol"


def test_users_keep_their_roles_in_the_database(pmo):
    with pmo.db.transaction() as s:
        assert {r.role for r in s.get(User, "bob").roles} == {"Project Manager", "PMO Administrator"}


def test_the_worker_at_real_time_needs_no_role_but_as_of_another_time_an_administrator(failed, pmo, make_pmo):
    from datetime import UTC, datetime, timedelta

    erin = make_pmo("erin")
    assert erin.run_due()["fired"] == []  # what is due now: the engine's own duty
    later = datetime.now(UTC) + timedelta(days=30)
    assert erin.run_due(later, dry_run=True)["dry_run"] is True  # a look changes nothing
    with pytest.raises(PermissionDenied, match=r"running the worker as of another time \(--now\) needs the role"):
        erin.run_due(later)
    assert make_pmo("pmo.admin").run_due(later)["errors"] == []


def test_a_reason_the_record_could_not_store_is_refused_before_anything_changes(failed, pmo):
    instance_id, _ = failed
    before = fingerprint(pmo)
    for reason, problem in (("hold\x00", "NUL"), ("x" * 2001, "at most 2000 fit")):
        with pytest.raises(InvalidInput, match=problem):
            pmo.suspend(instance_id, reason=reason)
        with pytest.raises(InvalidInput, match=problem):
            pmo.retry(instance_id, {"amount": 2}, reason=reason)
    assert fingerprint(pmo) == before
