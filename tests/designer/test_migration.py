"""Versions and migration: `diff` between deployed versions, and running instances moved when it is safe.

The fixtures in fixtures/migration/ are versions of one small process, `mig` (start, compute, prepare, review,
gateway, echo): v2 adds a confirmation step after the review (safe for every running instance), v3 replaces the
review step (unsafe for an instance waiting on it, safe for one still at prepare), v4 changes the completed
script (unsafe for all). `sub_v1`/`sub_v2` wait inside an embedded subprocess. Every test runs on SQLite and,
with PMOFLOW_TEST_PG_URL, on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine import clock, runtime, serialization
from pmoflow.engine.cli import main
from pmoflow.engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from pmoflow.engine.migration import MigrationRefused
from pmoflow.engine.models import Event, HumanTask, ProcessDefinition, ProcessInstance

MIG = FIXTURES / "migration"
BUNDLED = FIXTURES.parent.parent / "bpmn"


# -- helpers -------------------------------------------------------------------------------------------------

def deploy(app, *names: str) -> None:
    for name in names:
        [result] = app.deploy([MIG / name])
        assert result["created"], result


def start(app, amount: int = 2) -> int:
    return app.start("mig", {"title": "abc", "amount": amount})["instance_id"]


def open_task(app, instance_id: int) -> dict:
    [task] = [t for t in app.tasks(all_tasks=True) if t["instance_id"] == instance_id]
    return task


def complete(app, instance_id: int, bpmn_id: str, data: dict | None = None) -> None:
    task = open_task(app, instance_id)
    assert task["bpmn_id"] == bpmn_id, task
    app.complete(task["id"], data or {})


def snapshot(app, instance_id: int) -> dict:
    """Everything stored and shown about one instance, to prove a refused or dry-run migration changed nothing."""
    with app.db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        rows = [(t.id, t.spiff_task_id, t.state, t.assignee) for t in s.scalars(
            select(HumanTask).where(HumanTask.instance_id == instance_id).order_by(HumanTask.id))]
        events = s.scalar(select(func.count(Event.id)).where(Event.instance_id == instance_id))
        stored = {"lock": inst.lock_version, "state": inst.state, "definition": inst.definition_id,
                  "version": inst.version, "status": inst.status, "next_due": inst.next_due, "rows": rows,
                  "events": events, "head": inst.last_hash}
    return {**stored, "show": app.show(instance_id), "history": app.history(instance_id)}


def tree(app, instance_id: int) -> list[str]:
    """The stored task tree as `depth spec-name STATE` lines, read without the engine's cache."""
    with app.db.transaction() as s:
        inst = s.get(ProcessInstance, instance_id)
        wf = serialization.load_state(inst.state, runtime.specs_of(s, s.get(ProcessDefinition, inst.definition_id)))

    def walk(task, depth=0):
        yield f"{depth} {task.task_spec.name} {TaskState.get_name(task.state)}"
        for child in task.children:
            yield from walk(child, depth + 1)

    return list(walk(wf.task_tree))


@pytest.fixture
def mig(pmo):
    """v1 deployed; then instance 'prepare' waits at prepare and 'review' at review; then v2..v4 deployed."""
    deploy(pmo, "mig_v1.bpmn")
    at_prepare = start(pmo, 2)
    at_review = start(pmo, 3)
    complete(pmo, at_review, "prepare")
    deploy(pmo, "mig_v2.bpmn", "mig_v3.bpmn", "mig_v4.bpmn")
    return {"prepare": at_prepare, "review": at_review}


# -- diff -------------------------------------------------------------------------------------------------------

def by_element(result: dict) -> dict[str, dict]:
    return {c["element"]: c for c in result["changes"]}


def test_diff_lists_added_removed_and_changed_elements(pmo, mig):
    v2 = pmo.diff("mig", 1, 2)
    assert (v2["from_version"], v2["to_version"]) == (1, 2)
    changes = by_element(v2)
    assert set(changes) == {"confirm", "review", "f4", "f4b"}
    assert changes["confirm"] == {"element": "confirm", "kind": "userTask", "change": "added", "process": "mig",
                                  "name": "Confirm the outcome",
                                  "details": ["type userTask", "name 'Confirm the outcome'"]}
    assert changes["review"]["change"] == "changed"
    assert changes["review"]["details"] == ["outgoing: approved_gw -> confirm"]
    assert changes["f4"]["details"] == ["to: approved_gw -> confirm"]
    assert (changes["f4b"]["kind"], changes["f4b"]["change"]) == ("sequenceFlow", "added")
    assert v2["summary"] == {"added": 2, "removed": 0, "changed": 2}

    v3 = by_element(pmo.diff("mig", 1, 3))
    assert (v3["review"]["change"], v3["second_review"]["change"]) == ("removed", "added")
    assert v3["prepare"]["details"] == ["outgoing: review -> second_review"]

    v4 = pmo.diff("mig", 1, 4)
    assert v4["changes"] == [{"element": "compute", "kind": "scriptTask", "change": "changed", "process": "mig",
                              "name": "Compute total",
                              "details": ["script: total = amount * 2 -> total = amount * 3"]}]
    assert pmo.diff("mig", 2, 2)["changes"] == []


def test_diff_reports_lanes_timers_forms_conditions_and_boundary_events(pmo, tmp_path):
    sla = (FIXTURES / "sla.bpmn").read_text()
    changed = (sla.replace('<bpmn:lane id="lane_qd" name="Quality Director">', '<bpmn:lane id="lane_qd" name="SQA">')
               .replace('"P2D"', '"P3D"')
               .replace('<bpmn:flowNodeRef>sla_start</bpmn:flowNodeRef>', ''))
    (tmp_path / "sla.bpmn").write_text(changed)
    pmo.deploy([tmp_path / "sla.bpmn"])
    changes = by_element(pmo.diff("sla", 1, 2))
    assert changes["lane_qd"]["kind"] == "lane"
    assert changes["lane_qd"]["details"] == ["name: Quality Director -> SQA"]
    assert changes["lane_pm"]["details"] == ["elements removed: sla_start"]
    assert changes["approve_timeout"]["details"] == ['timer expression: "P2D" -> "P3D"',
                                                    "lane: Quality Director -> SQA"]
    assert "lane: Quality Director -> SQA" in changes["approve"]["details"]
    assert changes["sla_start"]["details"] == ["lane: Project Manager -> (none)"]

    simple = (FIXTURES / "simple.bpmn").read_text()
    folder = tmp_path / "simple"
    folder.mkdir()
    (folder / "simple.bpmn").write_text(simple.replace("approved == True", "approved"))
    (folder / "simple-start.schema.json").write_text((FIXTURES / "simple-start.schema.json").read_text())
    review_form = json.loads((FIXTURES / "review.schema.json").read_text())
    review_form["properties"]["comment"]["maxLength"] = 500
    (folder / "review.schema.json").write_text(json.dumps(review_form))
    pmo.deploy([folder / "simple.bpmn"])
    changes = by_element(pmo.diff("simple", 1, 2))
    assert changes["review"]["details"] == ["form review.schema.json: content changed"]
    assert changes["approved_gw"]["details"] == ["condition to echo: approved == True -> approved"]
    assert changes["f_approved"]["details"] == ["condition: approved == True -> approved"]

    with_timer = sla.replace('<bpmn:boundaryEvent id="approve_timeout" attachedToRef="approve">',
                             '<bpmn:boundaryEvent id="prepare_reminder" attachedToRef="prepare" cancelActivity="false">'
                             '<bpmn:outgoing>s5</bpmn:outgoing><bpmn:timerEventDefinition><bpmn:timeDuration>"P1D"'
                             '</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>'
                             '<bpmn:endEvent id="reminded"><bpmn:incoming>s5</bpmn:incoming></bpmn:endEvent>'
                             '<bpmn:sequenceFlow id="s5" sourceRef="prepare_reminder" targetRef="reminded" />'
                             '<bpmn:boundaryEvent id="approve_timeout" attachedToRef="approve">')
    (tmp_path / "sla.bpmn").write_text(with_timer)
    pmo.deploy([tmp_path / "sla.bpmn"])
    changes = by_element(pmo.diff("sla", 1, 3))
    assert changes["prepare"]["details"] == ["boundary events: (none) -> prepare_reminder"]
    assert {changes[e]["change"] for e in ("prepare_reminder", "reminded", "s5")} == {"added"}


def test_diff_refuses_unknown_processes_and_versions(pmo, mig):
    with pytest.raises(NotFound, match="no process 'nope' is deployed"):
        pmo.diff("nope", 1, 2)
    with pytest.raises(NotFound, match=r"process mig has no version 9 \(deployed: 1, 2, 3, 4\)"):
        pmo.diff("mig", 1, 9)
    with pytest.raises(InvalidInput, match="not a number"):
        pmo.diff("mig", "one", 2)


# -- one instance -------------------------------------------------------------------------------------------------

def test_a_safe_migration_moves_the_instance_records_it_and_runs_on_to_the_end(pmo, mig):
    instance_id = mig["review"]
    before = snapshot(pmo, instance_id)
    result = pmo.migrate(instance_id, 2, reason="adds the confirmation")
    assert result["outcome"] == "migrated" and result["reasons"] == []
    assert (result["from_version"], result["to_version"], result["status"]) == (1, 2, "running")
    after = snapshot(pmo, instance_id)
    assert (after["version"], after["show"]["version"]) == (2, 2) and after["lock"] > before["lock"]
    assert after["rows"] == before["rows"]  # the waiting review keeps its task (same id, same inbox row)
    assert after["show"]["tasks"] == before["show"]["tasks"]
    assert after["history"][:-1] == before["history"]
    event = after["history"][-1]
    assert (event["type"], event["actor"], event["process_version"]) == ("migrated", "alice", 2)
    assert event["payload"] == {"from_version": 1, "to_version": 2, "changes": {
        "added": ["confirm", "f4b"], "removed": [], "changed": ["review", "f4"]}, "reason": "adds the confirmation",
        "before": {"version": 1}, "after": {"version": 2}}
    assert pmo.verify(instance_id)["ok"]

    complete(pmo, instance_id, "review", {"approved": True})
    complete(pmo, instance_id, "confirm")  # the step v2 added
    shown = pmo.show(instance_id)
    assert (shown["status"], shown["version"]) == ("completed", 2)
    assert shown["data"]["total"] == 6 and shown["data"]["echoed"] == {"echo": 6}


def test_a_migrated_instance_has_the_task_tree_of_one_started_on_the_new_version(pmo):
    deploy(pmo, "mig_v1.bpmn")
    migrated = start(pmo)
    complete(pmo, migrated, "prepare")
    deploy(pmo, "mig_v2.bpmn")
    pmo.migrate(migrated, 2)
    fresh = start(pmo)
    complete(pmo, fresh, "prepare")
    assert tree(pmo, migrated) == tree(pmo, fresh) == [
        "0 Start COMPLETED", "1 start_mig COMPLETED", "2 compute COMPLETED", "3 prepare COMPLETED",
        "4 review READY", "5 confirm FUTURE", "6 approved_gw FUTURE", "7 end_rejected LIKELY",
        "8 mig.EndJoin LIKELY", "7 echo MAYBE", "8 end_approved MAYBE"]


def test_an_instance_still_at_prepare_moves_to_the_version_that_replaced_the_review(pmo, mig):
    instance_id = mig["prepare"]
    assert pmo.migrate(instance_id, 3)["outcome"] == "migrated"
    complete(pmo, instance_id, "prepare")
    task = open_task(pmo, instance_id)
    assert (task["bpmn_id"], task["name"]) == ("second_review", "Review the request twice")
    pmo.complete(task["id"], {"approved": False})
    assert pmo.show(instance_id)["status"] == "completed"


def test_an_unsafe_migration_is_refused_with_every_reason_and_changes_nothing(pmo, mig):
    instance_id = mig["review"]
    before = snapshot(pmo, instance_id)
    with pytest.raises(MigrationRefused) as refused:
        pmo.migrate(instance_id, 3)
    assert refused.value.exit_code == 1
    reasons = {r["element"]: r for r in refused.value.result["reasons"]}
    assert set(reasons) == {"review", "prepare"}
    assert reasons["review"]["message"] == "review (Review the request) is ready and was removed in v3"
    assert (reasons["review"]["task_state"], reasons["review"]["problem"]) == ("ready", "removed")
    assert reasons["prepare"]["message"] == ("prepare (Prepare the package) is completed and was changed in v3: "
                                             "outgoing: review -> second_review")
    assert snapshot(pmo, instance_id) == before

    with pytest.raises(MigrationRefused) as refused:
        pmo.migrate(instance_id, 4)
    assert str(refused.value) == ("instance 2 cannot move from v1 to v4: compute (Compute total) is completed and "
                                  "was changed in v4: script: total = amount * 2 -> total = amount * 3")
    assert snapshot(pmo, instance_id) == before
    complete(pmo, instance_id, "review", {"approved": True})  # still runs on v1, from the engine's cache too
    assert pmo.show(instance_id)["status"] == "completed"


def test_a_dry_run_reports_and_changes_nothing(pmo, mig):
    before = {i: snapshot(pmo, i) for i in mig.values()}
    safe = pmo.migrate(mig["review"], 2, dry_run=True)
    assert (safe["outcome"], safe["dry_run"], safe["reasons"]) == ("would-migrate", True, [])
    assert safe["changes"]["added"] == ["confirm", "f4b"]
    unsafe = pmo.migrate(mig["review"], 4, dry_run=True)
    assert unsafe["outcome"] == "refused"
    assert [r["element"] for r in unsafe["reasons"]] == ["compute"]
    assert {i: snapshot(pmo, i) for i in mig.values()} == before


def test_finished_instances_same_versions_unknown_versions_and_unknown_users_are_refused(pmo, mig, make_pmo):
    instance_id = mig["review"]
    complete(pmo, instance_id, "review", {"approved": False})
    with pytest.raises(MigrationRefused, match="instance 2 is completed: a finished instance has nothing left"):
        pmo.migrate(instance_id, 2)
    assert pmo.migrate(instance_id, 2, dry_run=True)["outcome"] == "refused"
    with pytest.raises(InvalidInput, match="instance 1 is already on version 1 of mig"):
        pmo.migrate(mig["prepare"], 1)
    with pytest.raises(NotFound, match="process mig has no version 7"):
        pmo.migrate(mig["prepare"], 7)
    with pytest.raises(NotFound, match="no instance 99"):
        pmo.migrate(99, 2)
    with pytest.raises(PermissionDenied):
        make_pmo("mallory").migrate(mig["prepare"], 2)


def test_a_waiting_timer_keeps_its_due_time_and_still_fires_after_a_migration(pmo, tmp_path):
    instance_id = pmo.start("sla", {})["instance_id"]
    complete(pmo, instance_id, "prepare")
    sla = (FIXTURES / "sla.bpmn").read_text()
    (tmp_path / "sla.bpmn").write_text(
        sla.replace('<bpmn:sequenceFlow id="s3" sourceRef="approve" targetRef="sla_end" />',
                    '<bpmn:sequenceFlow id="s3" sourceRef="approve" targetRef="archive" />'
                    '<bpmn:sequenceFlow id="s3b" sourceRef="archive" targetRef="sla_end" />')
        .replace('<bpmn:endEvent id="sla_end"><bpmn:incoming>s3</bpmn:incoming>',
                 '<bpmn:userTask id="archive" name="Archive"><bpmn:incoming>s3</bpmn:incoming>'
                 '<bpmn:outgoing>s3b</bpmn:outgoing></bpmn:userTask>'
                 '<bpmn:endEvent id="sla_end"><bpmn:incoming>s3b</bpmn:incoming>'))
    pmo.deploy([tmp_path / "sla.bpmn"])
    before = snapshot(pmo, instance_id)
    assert before["next_due"] is not None
    assert pmo.migrate(instance_id, 2)["outcome"] == "migrated"
    after = snapshot(pmo, instance_id)
    assert (after["next_due"], after["show"]["tasks"]) == (before["next_due"], before["show"]["tasks"])
    assert "4 approve_timeout WAITING" in tree(pmo, instance_id)
    fired = pmo.acting_as("pmo.admin").run_due(clock.as_utc(after["next_due"]) + timedelta(seconds=1))
    assert fired["fired"] == [instance_id]
    shown = pmo.show(instance_id)
    assert shown["status"] == "completed" and shown["version"] == 2
    assert [t["state"] for t in shown["tasks"]] == ["completed", "cancelled"]


def test_the_added_step_after_a_task_with_a_timer_is_reached(pmo, make_pmo, tmp_path):
    instance_id = pmo.start("sla", {})["instance_id"]
    complete(pmo, instance_id, "prepare")
    sla = (FIXTURES / "sla.bpmn").read_text()
    (tmp_path / "sla.bpmn").write_text(
        sla.replace('targetRef="sla_end" />', 'targetRef="archive" /><bpmn:sequenceFlow id="s3b" '
                    'sourceRef="archive" targetRef="sla_end" />', 1)
        .replace('<bpmn:endEvent id="sla_end"><bpmn:incoming>s3</bpmn:incoming>',
                 '<bpmn:manualTask id="archive" name="Archive"><bpmn:incoming>s3</bpmn:incoming>'
                 '<bpmn:outgoing>s3b</bpmn:outgoing></bpmn:manualTask>'
                 '<bpmn:endEvent id="sla_end"><bpmn:incoming>s3b</bpmn:incoming>'))
    pmo.deploy([tmp_path / "sla.bpmn"])
    pmo.migrate(instance_id, 2)
    complete(make_pmo("carol"), instance_id, "approve")  # a Quality Director who neither started nor prepared
    complete(pmo, instance_id, "archive")
    assert pmo.show(instance_id)["status"] == "completed"


def test_an_instance_waiting_inside_a_subprocess_moves_and_runs_through_the_new_steps(pmo):
    deploy(pmo, "sub_v1.bpmn")
    instance_id = pmo.start("mig_sub", {})["instance_id"]
    deploy(pmo, "sub_v2.bpmn")
    changes = by_element(pmo.diff("mig_sub", 1, 2))
    assert changes["check_budget"]["process"] == "checks" and changes["check_budget"]["change"] == "added"
    assert pmo.migrate(instance_id, 2)["outcome"] == "migrated"
    for step in ("check_scope", "check_budget", "sign_off"):
        complete(pmo, instance_id, step)
    assert pmo.show(instance_id)["status"] == "completed"


def test_a_running_subprocess_whose_step_changed_is_refused(pmo, tmp_path):
    deploy(pmo, "sub_v1.bpmn")
    instance_id = pmo.start("mig_sub", {})["instance_id"]
    (tmp_path / "sub.bpmn").write_text((MIG / "sub_v1.bpmn").read_text().replace("Check the scope", "Scope check"))
    pmo.deploy([tmp_path / "sub.bpmn"])
    before = snapshot(pmo, instance_id)
    with pytest.raises(MigrationRefused, match=r"check_scope \(Check the scope\) is ready and was changed in v2: "
                                               r"name: Check the scope -> Scope check"):
        pmo.migrate(instance_id, 2)
    assert snapshot(pmo, instance_id) == before


# -- many instances -------------------------------------------------------------------------------------------

def test_a_bulk_migration_moves_the_safe_instances_and_reports_each_refusal(pmo):
    deploy(pmo, "mig_v1.bpmn")
    at_prepare = [start(pmo), start(pmo, 5)]
    at_review = start(pmo)
    complete(pmo, at_review, "prepare")
    finished = start(pmo)
    complete(pmo, finished, "prepare")
    complete(pmo, finished, "review", {"approved": False})
    deploy(pmo, "mig_v2.bpmn", "mig_v3.bpmn", "mig_v4.bpmn")
    on_v4 = start(pmo)
    before = {i: snapshot(pmo, i) for i in (*at_prepare, at_review, finished, on_v4)}

    calls = []
    dry = pmo.migrate_all("mig", 1, 3, dry_run=True, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]  # the finished one and the one on v4 are not selected
    assert (dry["dry_run"], dry["would_migrate"], dry["migrated"]) == (True, at_prepare, [])
    assert [r["instance_id"] for r in dry["refused"]] == [at_review]
    assert {i: snapshot(pmo, i) for i in before} == before

    result = pmo.migrate_all("mig", 1, 3)
    assert result["migrated"] == at_prepare
    assert result["refused"] == [{"instance_id": at_review, "reasons": [
        "prepare (Prepare the package) is completed and was changed in v3: outgoing: review -> second_review",
        "review (Review the request) is ready and was removed in v3"]}]
    assert [r["outcome"] for r in result["instances"]] == ["migrated", "migrated", "refused"]
    for unmoved in (at_review, finished, on_v4):
        assert snapshot(pmo, unmoved) == before[unmoved]
    for moved in at_prepare:
        assert pmo.show(moved)["version"] == 3
        assert [e["payload"]["to_version"] for e in pmo.history(moved) if e["type"] == "migrated"] == [3]
        complete(pmo, moved, "prepare")
        complete(pmo, moved, "second_review", {"approved": True})
        assert pmo.show(moved)["status"] == "completed"
    assert pmo.migrate_all("mig", 1, 3)["refused"] == result["refused"]  # run again: only the refused one is left
    with pytest.raises(InvalidInput, match="both 3"):
        pmo.migrate_all("mig", 3, 3)
    with pytest.raises(NotFound):
        pmo.migrate_all("nope", 1, 3)


def test_a_bulk_run_reports_an_instance_changed_by_someone_else_and_goes_on(pmo, mig, monkeypatch):
    from pmoflow.engine import migration

    original = migration.migrate

    def moved_meanwhile(session, instance, *args, **kwargs):
        if instance.id == mig["prepare"]:
            raise Conflict("someone else changed this instance at the same time; reload and try again")
        return original(session, instance, *args, **kwargs)

    monkeypatch.setattr(migration, "migrate", moved_meanwhile)
    result = pmo.migrate_all("mig", 1, 2)
    assert result["migrated"] == [mig["review"]]
    assert result["refused"] == [{"instance_id": mig["prepare"],
                                  "reasons": ["someone else changed this instance at the same time; reload and try "
                                              "again"]}]


# -- the command line ---------------------------------------------------------------------------------------------

@pytest.fixture
def cli_db(db_url, cli_handlers, seeds):
    """A database set up through the CLI: v1 with instance 1 at prepare and 2 at review, then v2..v4 (a copy of
    one the CLI set up so once per process: conftest's `seeds`)."""
    def build(url: str) -> None:
        assert cli(url, "init", "--org", TEST_ORG).exit_code == 0
        assert cli(url, "deploy", MIG / "mig_v1.bpmn").exit_code == 0
        for _ in range(2):
            assert cli(url, "start", "mig", "--data", '{"title": "abc", "amount": 2}').exit_code == 0
        assert cli(url, "complete", "2", "--data", "{}").exit_code == 0  # task 2: instance 2's prepare
        for version in (2, 3, 4):
            assert cli(url, "deploy", MIG / f"mig_v{version}.bpmn").exit_code == 0

    seeds.copy_into(db_url, "test_migration.cli_db", build)
    return db_url


def cli(db_url: str, *args, user: str | None = "alice"):
    for name in ("_CACHE", "_SPECS"):
        getattr(runtime, name).clear()
    argv = ["--db", db_url] + (["--user", user] if user else []) + [str(a) for a in args]
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(main, argv)


def assert_failed(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    assert "unexpected failure" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"


def test_cli_diff_prints_a_table_or_one_json_document(cli_db):
    shown = cli(cli_db, "diff", "mig", 1, 2)
    assert shown.exit_code == 0, shown.stderr
    assert "confirm" in shown.stdout and "outgoing: approved_gw -> confirm" in shown.stdout
    assert "2 added, 0 removed, 2 changed" in shown.stdout
    as_json = cli(cli_db, "diff", "mig", 1, 4, "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["changes"][0]["element"] == "compute"
    assert "no differences" in cli(cli_db, "diff", "mig", 3, 3).stdout
    assert_failed(cli(cli_db, "diff", "mig", 1, 8), 1, "error: process mig has no version 8")
    assert_failed(cli(cli_db, "diff", "nope", 1, 2), 1, "error: no process 'nope' is deployed")
    assert cli(cli_db, "diff", "mig", "one", 2).exit_code == 2


def test_cli_migrate_one_instance_exit_codes_and_json(cli_db):
    before = cli(cli_db, "show", "2", "--json").stdout
    refused = cli(cli_db, "migrate", "2", "--to-version", 3)
    assert_failed(refused, 1, "error: instance 2 cannot move from v1 to v3: 2 reasons",
                  "review (Review the request) is ready and was removed in v3")
    assert refused.stderr.startswith("error: ")
    refused = cli(cli_db, "migrate", "2", "--to-version", 4, "--json")
    assert_failed(refused, 1, "error: instance 2 cannot move from v1 to v4: compute (Compute total)")
    assert json.loads(refused.stdout)["outcome"] == "refused"
    assert cli(cli_db, "show", "2", "--json").stdout == before

    dry = cli(cli_db, "migrate", "2", "--to-version", 3, "--dry-run")
    assert dry.exit_code == 0 and "would be refused (dry run)" in dry.stdout and "was removed in v3" in dry.stdout
    dry = cli(cli_db, "migrate", "2", "--to-version", 2, "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["outcome"] == "would-migrate"
    assert cli(cli_db, "show", "2", "--json").stdout == before

    moved = cli(cli_db, "migrate", "2", "--to-version", 2, "--reason", "confirmations are required now")
    assert moved.exit_code == 0, moved.stderr
    assert moved.stdout.strip() == "instance 2: v1 -> v2: migrated (running)"
    history = json.loads(cli(cli_db, "history", "2", "--json").stdout)
    assert history[-1]["type"] == "migrated"
    assert (history[-1]["payload"]["from_version"], history[-1]["payload"]["to_version"]) == (1, 2)
    assert history[-1]["payload"]["reason"] == "confirmations are required now"
    assert json.loads(cli(cli_db, "show", "2", "--json").stdout)["version"] == 2

    assert_failed(cli(cli_db, "migrate", "2", "--to-version", 2), 1, "error: instance 2 is already on version 2")
    assert_failed(cli(cli_db, "migrate", "9", "--to-version", 2), 1, "error: no instance 9")
    assert_failed(cli(cli_db, "migrate", "1", "--to-version", 2, user=None), 4, "error: no user given")


def test_cli_bulk_migration_with_a_mix_a_progress_bar_and_usage_errors(cli_db):
    dry = cli(cli_db, "migrate", "--process", "mig", "--from-version", 1, "--to-version", 3, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "1 would migrate, 1 would be refused" in dry.stdout
    assert "migrating mig v1 -> v3" in dry.stderr  # the progress bar, on stderr
    as_json = cli(cli_db, "migrate", "--process", "mig", "--from-version", 1, "--to-version", 3, "--json")
    assert_failed(as_json, 1, "error: 1 instance(s) of mig could not move to v3 and were left as they were: 2")
    document = json.loads(as_json.stdout)
    assert (document["migrated"], [r["instance_id"] for r in document["refused"]]) == ([1], [2])
    assert "migrating" not in as_json.stderr
    again = cli(cli_db, "migrate", "--process", "mig", "--from-version", 1, "--to-version", 2)
    assert again.exit_code == 0, again.stderr
    assert "1 migrated, 0 refused" in again.stdout and "migrating" not in again.stderr  # one instance: no bar
    empty = cli(cli_db, "migrate", "--process", "mig", "--from-version", 1, "--to-version", 2)
    assert empty.exit_code == 0 and "no unfinished instances on v1" in empty.stdout
    assert_failed(cli(cli_db, "migrate", "--process", "nope", "--from-version", 1, "--to-version", 2), 1,
                  "error: no process 'nope' is deployed")
    assert_failed(cli(cli_db, "migrate", "--process", "mig", "--from-version", 5, "--to-version", 2), 1,
                  "error: process mig has no version 5")
    for usage in (["--to-version", 2], ["1", "--process", "mig", "--from-version", 1, "--to-version", 2],
                  ["--process", "mig", "--to-version", 2], ["1", "--from-version", 1, "--to-version", 2],
                  ["1"]):
        result = cli(cli_db, "migrate", *usage)
        assert result.exit_code == 2, (usage, result.stdout, result.stderr)


def test_an_instance_in_error_moves_only_when_its_failed_step_is_unchanged(pmo, tmp_path):
    instance_id = pmo.start("simple", {"title": "abc", "amount": 13})["instance_id"]  # 1 / 0 in compute
    assert pmo.show(instance_id)["status"] == "error"
    simple = (FIXTURES / "simple.bpmn").read_text()
    for form in ("simple-start.schema.json", "review.schema.json"):
        (tmp_path / form).write_text((FIXTURES / form).read_text())
    (tmp_path / "simple.bpmn").write_text(simple.replace("    total = 1 / 0", "    total = 0"))
    pmo.deploy([tmp_path / "simple.bpmn"])
    before = snapshot(pmo, instance_id)
    with pytest.raises(MigrationRefused, match=r"compute \(Compute total\) is error and was changed in v2: "
                                               r"script changed"):
        pmo.migrate(instance_id, 2)
    assert snapshot(pmo, instance_id) == before
    (tmp_path / "simple.bpmn").write_text(simple.replace('name="Echo the total"', 'name="Echo the sum"'))
    pmo.deploy([tmp_path / "simple.bpmn"])
    assert pmo.migrate(instance_id, 3)["status"] == "error"
    shown = pmo.show(instance_id)
    assert (shown["status"], shown["version"], shown["error"]) == ("error", 3, before["show"]["error"])
    hold(pmo, instance_id)  # suspended while in error: the move keeps both the hold and the error
    assert pmo.migrate(instance_id, 1)["status"] == "suspended"
    shown = pmo.show(instance_id)
    assert (shown["status"], shown["version"], shown["error"], shown["tasks"]) == (
        "suspended", 1, before["show"]["error"], [])


def hold(app, instance_id: int) -> None:
    """Suspend an instance the way an operator's hold does: only its status changes."""
    with app.db.transaction() as s:
        s.get(ProcessInstance, instance_id).status = "suspended"


def test_a_suspended_instance_moves_and_stays_suspended(pmo, mig):
    instance_id = mig["review"]
    hold(pmo, instance_id)
    before = snapshot(pmo, instance_id)
    assert pmo.migrate(instance_id, 2)["status"] == "suspended"
    after = snapshot(pmo, instance_id)
    assert (after["status"], after["version"], after["rows"]) == ("suspended", 2, before["rows"])
    assert [e["type"] for e in after["history"][len(before["history"]):]] == ["migrated"]


PROJECT_STEPS = ["intake_review", "draft_charter", "confirm_cm_plan", "assign_sqa", "approve_charter"]


@pytest.mark.parametrize("done", [0, 2, 3, 4])
def test_project_initiation_moves_at_every_step_before_the_changed_approval(demo_pmo, make_pmo, tmp_path, done):
    """The bundled process (parallel branches, a decision table, boundary timers) on a version whose charter
    approval is renamed: safe until the approval waits, and the moved instance ends as the demo does."""
    from pmoflow.workflows.demo import REQUEST, STEPS

    for name in ("project_initiation.bpmn", "charter_approval.dmn"):
        text = (BUNDLED / name).read_text().replace('name="Approve project charter"', 'name="Approve the charter"')
        (tmp_path / name).write_text(text)
    instance_id = make_pmo("sean.sponsor").start("project_initiation", REQUEST)["instance_id"]

    def work(user: str, bpmn_id: str, data: dict) -> None:
        app = make_pmo(user)
        [task] = [t for t in app.tasks() if t["bpmn_id"] == bpmn_id and t["instance_id"] == instance_id]
        app.complete(task["id"], data)

    for user, bpmn_id, data, _ in STEPS[:done]:
        work(user, bpmn_id, data)
    admin = make_pmo("pmo.admin")
    [deployed] = admin.deploy([tmp_path])
    assert deployed["version"] == 2
    assert admin.diff("project_initiation", 1, 2)["changes"] == [{
        "element": "approve_charter", "kind": "userTask", "change": "changed", "process": "project_initiation",
        "name": "Approve the charter", "details": ["name: Approve project charter -> Approve the charter"]}]
    if done == 4:
        with pytest.raises(MigrationRefused, match="approve_charter .* is ready and was changed in v2"):
            admin.migrate(instance_id, 2)
        return
    assert admin.migrate(instance_id, 2)["outcome"] == "migrated"
    for user, bpmn_id, data, _ in STEPS[done:]:
        work(user, bpmn_id, data)
    shown = demo_pmo.show(instance_id)
    assert (shown["status"], shown["version"], shown["data"]["outcome"]) == (
        "completed", 2, "Authorised-with-conditions")
    assert shown["tasks"][-1]["name"] == "Approve the charter"
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "completed"] == PROJECT_STEPS
    assert demo_pmo.verify(instance_id)["ok"]
