"""The `pmoflow` command as users and scripts see it: JSON shapes, exit codes, plain errors, no side effects.

Every test drives the real click command through CliRunner with `--db <db_url>`, so it runs on SQLite and,
when PMOFLOW_TEST_PG_URL is set, on PostgreSQL. The CLI builds `Pmoflow(db, user=...)` with the default
handlers; the autouse fixture swaps in the test handlers (`test.echo`, `test.fail`). Each CLI command is a
process of its own in real use, so `run` starts every command with the engine's in-process caches empty.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conftest import FIXTURES, TEST_ORG
from pmoflow.engine import runtime
from pmoflow.engine.cli import main

BAD = FIXTURES / "bad"
TASK_FIELDS = {"id", "instance_id", "process_id", "name", "bpmn_id", "lane", "candidates", "assignee", "due",
               "state"}
EVENT_FIELDS = {"seq", "at", "actor", "type"}
FINDING = re.compile(r"^\s*(?P<file>\S+?):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning): "
                     r"(?P<element>\S+): (?P<message>.+)$")
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"
ENGINE_CACHES = ("_CACHE", "_SPECS")
INSTANCE_COMMANDS = ["show {id}", "history {id}", "retry {id}"]
TASK_COMMANDS = ["task {id}", "claim {id}", "unclaim {id}", "complete {id}", "delegate {id} bob"]


pytestmark = pytest.mark.usefixtures("cli_handlers")


def cold_caches() -> None:
    """What a new `pmoflow` process starts with: no workflow or spec cached from an earlier command."""
    for name in ENGINE_CACHES:
        cache = getattr(runtime, name, None)
        if hasattr(cache, "clear"):
            cache.clear()


def run(db_url: str, *args, user: str | None = None, debug: bool = False, cold: bool = True) -> Result:
    """`pmoflow --db db_url [--user user] [--debug] args...`, with PMOFLOW_DB/PMOFLOW_USER unset."""
    if cold:
        cold_caches()
    argv = ["--db", db_url] + (["--user", user] if user else []) + (["--debug"] if debug else [])
    runner = CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None})
    return runner.invoke(main, argv + [str(a) for a in args])


def run_json(db_url: str, *args, user: str | None = None, cold: bool = True):
    """Run with --json, require success, and parse stdout as exactly one JSON document."""
    result = run(db_url, *args, "--json", user=user, cold=cold)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return json.loads(result.stdout)


def assert_error(result: Result, code: int, *fragments: str) -> None:
    """A refused command: its exit code, one plain `error: ...` on stderr, no traceback anywhere."""
    assert result.exit_code == code, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "unexpected failure" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"


def snapshot(db_url: str) -> dict:
    """Everything the CLI shows about the database, to prove that a refused command changed nothing."""
    instances = run_json(db_url, "instances")
    return {
        "processes": run_json(db_url, "processes"),
        "instances": instances,
        "tasks": run_json(db_url, "tasks", "--all"),
        "history": {i["instance_id"]: run_json(db_url, "history", i["instance_id"]) for i in instances},
        "show": {i["instance_id"]: run_json(db_url, "show", i["instance_id"]) for i in instances},
    }


def start(db_url: str, process_id: str, data: dict | None = None, user: str = "alice") -> int:
    args = ["start", process_id] + (["--data", json.dumps(data)] if data is not None else [])
    result = run_json(db_url, *args, user=user)
    return result["instance_id"]


def open_task(db_url: str, instance_id: int, bpmn_id: str) -> dict:
    [task] = [t for t in run_json(db_url, "tasks", "--all")
              if t["instance_id"] == instance_id and t["bpmn_id"] == bpmn_id]
    return task


def in_order(seen: list[str], expected: list[str]) -> bool:
    """`expected` occurs in `seen` in this order, other entries allowed in between."""
    remaining = iter(seen)
    return all(any(item == want for item in remaining) for want in expected)


def later(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.fixture
def cli_db(db_url, seeds) -> str:
    """A database set up through the CLI: schema, the test organisation and the fixture processes (a copy of
    one the CLI set up once per process: conftest's `seeds`)."""
    def build(url: str) -> None:
        assert run(url, "init", "--org", TEST_ORG).exit_code == 0
        deployed = run(url, "deploy", FIXTURES, user="alice")
        assert deployed.exit_code == 0, deployed.stderr

    seeds.copy_into(db_url, "test_cli.cli_db", build)
    return db_url


@pytest.fixture
def review(cli_db) -> tuple[int, dict]:
    """An instance of `simple` started by alice, waiting at her review task."""
    instance_id = start(cli_db, "simple", {"title": "New laptop", "amount": 21})
    return instance_id, open_task(cli_db, instance_id, "review")


@pytest.fixture
def approval(cli_db) -> tuple[int, dict]:
    """An instance of `sla` started by bob and prepared by bob, waiting for a Quality Director."""
    instance_id = start(cli_db, "sla", user="bob")
    prepare = open_task(cli_db, instance_id, "prepare")
    assert run(cli_db, "complete", prepare["id"], "--data", "{}", user="bob").exit_code == 0
    return instance_id, open_task(cli_db, instance_id, "approve")


# -- the contract's JSON shapes -----------------------------------------------------------------------------

def test_init_and_deploy_json_report_each_process_and_a_second_run_changes_nothing(db_url):
    first = run_json(db_url, "init", "--org", TEST_ORG)
    assert first["users"] == 6
    assert "project_initiation" in {p["process_id"] for p in first["processes"]}
    assert all(p["created"] for p in first["processes"])
    deployed = run_json(db_url, "deploy", FIXTURES, user="alice")
    assert {"simple", "long_loop", "sla"} <= {p["process_id"] for p in deployed}
    assert all(p["created"] for p in deployed)
    before = run_json(db_url, "processes")
    assert_error(run(db_url, "init", "--org", TEST_ORG), 4, "no user given")  # an initialised database: admins only
    again = run_json(db_url, "init", "--org", TEST_ORG, user="alice")
    assert not any(p["created"] for p in again["processes"])
    assert not any(p["created"] for p in run_json(db_url, "deploy", FIXTURES, user="alice"))
    assert run_json(db_url, "processes") == before


def test_users_json_is_a_list_of_names_and_roles(cli_db):
    users = run_json(cli_db, "users")
    assert users == [
        {"name": "alice", "roles": ["PMO Administrator", "Project Manager", "Quality Director"]},
        {"name": "bob", "roles": ["PMO Administrator", "Project Manager"]},
        {"name": "carol", "roles": ["Quality Director"]},
        {"name": "dave", "roles": ["Sponsor"]},
        {"name": "erin", "roles": ["Project Manager"]},
        {"name": "pmo.admin", "roles": ["PMO Administrator"]},
    ]


def test_processes_json_lists_each_process_at_its_newest_version(cli_db):
    processes = {p["process_id"]: p for p in run_json(cli_db, "processes")}
    assert {"project_initiation", "simple", "long_loop", "sla"} <= set(processes)
    simple = processes["simple"]
    assert (simple["version"], simple["name"], simple["start_form"]) == (1, "Simple approval",
                                                                         "simple-start.schema.json")
    assert simple["deployed_by"] == "alice"
    assert simple["files"] == ["forms/review.schema.json", "forms/simple-start.schema.json", "simple.bpmn"]


def test_start_json_is_an_object_with_the_instance_id_and_status(cli_db):
    result = run_json(cli_db, "start", "simple", "--data", '{"title": "New laptop", "amount": 21}', user="alice")
    assert isinstance(result["instance_id"], int)
    assert result["status"] == "running"
    assert result["error"] is None


def test_tasks_and_task_json_carry_the_contract_fields(cli_db, review):
    instance_id, _ = review
    [mine] = run_json(cli_db, "tasks", user="alice")
    assert set(mine) >= TASK_FIELDS
    assert mine["instance_id"] == instance_id
    assert (mine["process_id"], mine["bpmn_id"], mine["name"]) == ("simple", "review", "Review the request")
    assert (mine["lane"], mine["candidates"], mine["assignee"], mine["due"], mine["state"]) == (
        None, ["alice"], None, None, "ready")
    assert run_json(cli_db, "tasks", user="bob") == []
    assert run_json(cli_db, "tasks", "--all") == [mine]

    task = run_json(cli_db, "task", mine["id"], user="alice")
    assert {k: task[k] for k in TASK_FIELDS} == {k: mine[k] for k in TASK_FIELDS}
    assert task["data"] == {"title": "New laptop", "amount": 21, "total": 42}
    assert task["schema"]["required"] == ["approved"]
    assert task["instructions"] == "Check the total and decide."


def test_a_task_with_a_boundary_timer_shows_its_lane_role_and_due_time(cli_db, approval):
    _, approve = approval
    assert set(approve) >= TASK_FIELDS
    assert (approve["lane"], approve["candidates"]) == ("Quality Director", ["Quality Director"])
    due = datetime.fromisoformat(approve["due"])
    assert timedelta(days=1, hours=23) < due - datetime.now(UTC) <= timedelta(days=2)


def test_show_json_has_status_version_data_and_tasks(cli_db, review):
    instance_id, task = review
    shown = run_json(cli_db, "show", instance_id)
    assert (shown["instance_id"], shown["process_id"], shown["status"], shown["version"]) == (
        instance_id, "simple", "running", 1)
    assert shown["data"] == {"title": "New laptop", "amount": 21, "total": 42}
    assert [(t["id"], t["state"]) for t in shown["tasks"]] == [(task["id"], "ready")]
    assert shown["error"] is None


def test_history_json_is_a_list_of_numbered_events(cli_db, review):
    instance_id, task = review
    events = run_json(cli_db, "history", instance_id)
    assert all(set(e) >= EVENT_FIELDS for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events] == ["instance_started", "task_ready"]
    assert {e["actor"] for e in events} == {"alice"}
    assert events[0]["payload"]["data"] == {"title": "New laptop", "amount": 21}
    assert events[1]["payload"]["task_id"] == task["id"]
    datetime.fromisoformat(events[0]["at"])


def test_instances_json_lists_and_filters_by_status_and_process(cli_db, review, approval):
    simple_id, _ = review
    sla_id, _ = approval
    finished = start(cli_db, "simple", {"title": "Done soon", "amount": 1})
    done = open_task(cli_db, finished, "review")
    assert run(cli_db, "complete", done["id"], "--data", '{"approved": false}', user="alice").exit_code == 0

    everything = run_json(cli_db, "instances")
    assert [(i["instance_id"], i["process_id"], i["status"]) for i in everything] == [
        (simple_id, "simple", "running"), (sla_id, "sla", "running"), (finished, "simple", "completed")]
    assert [i["instance_id"] for i in run_json(cli_db, "instances", "--process", "simple")] == [simple_id, finished]
    assert [i["instance_id"] for i in run_json(cli_db, "instances", "--status", "completed")] == [finished]
    assert run_json(cli_db, "instances", "--status", "running", "--process", "sla")[0]["instance_id"] == sla_id
    sla = next(i for i in everything if i["instance_id"] == sla_id)
    assert sla["next_due"] is not None and sla["started_by"] == "bob"


def test_without_json_the_output_is_for_people(cli_db, review):
    instance_id, task = review
    shown = run(cli_db, "show", instance_id)
    assert shown.exit_code == 0
    assert f"instance {instance_id}: simple v1 [running] started by alice" in shown.stdout
    inbox = run(cli_db, "tasks", user="alice")
    assert inbox.exit_code == 0 and "Review the request" in inbox.stdout
    assert shown.stderr == inbox.stderr == ""


# -- a full walk of `simple` ------------------------------------------------------------------------------

def test_a_full_walk_of_simple_through_the_cli(db_url, tmp_path):
    init = run(db_url, "init", "--org", TEST_ORG)
    assert init.exit_code == 0 and "organisation: 6 users" in init.stdout
    deploy = run(db_url, "deploy", FIXTURES, user="alice")
    assert deploy.exit_code == 0 and "simple deployed as version 1" in deploy.stdout

    started = run(db_url, "start", "simple", "--data", '{"title": "New laptop", "amount": 21}', user="alice")
    assert started.exit_code == 0 and started.stdout.endswith(": running\n")
    data_file = tmp_path / "request.json"
    data_file.write_text('{"title": "Second screen", "amount": 5}')
    second = run_json(db_url, "start", "simple", "--data-file", data_file, user="alice")
    assert second["status"] == "running"
    assert run_json(db_url, "show", second["instance_id"])["data"]["total"] == 10

    instance_id = run_json(db_url, "instances", "--process", "simple")[0]["instance_id"]
    inbox = run_json(db_url, "tasks", user="alice")
    assert [t["instance_id"] for t in inbox] == [instance_id, second["instance_id"]]
    task_id = inbox[0]["id"]
    assert run_json(db_url, "task", task_id, user="alice")["data"]["total"] == 42

    assert run_json(db_url, "claim", task_id, user="alice")["assignee"] == "alice"
    assert run_json(db_url, "unclaim", task_id, user="alice")["assignee"] is None
    # the review belongs to the starter alone: nobody else may be handed it
    before = snapshot(db_url)
    assert_error(run(db_url, "delegate", task_id, "bob", user="alice"), 4, "bob", "not a candidate")
    assert snapshot(db_url) == before
    assert run_json(db_url, "delegate", task_id, "alice", user="alice")["assignee"] == "alice"  # to a candidate

    completed = run_json(db_url, "complete", task_id, "--data", '{"approved": true, "comment": "fine"}',
                         user="alice")
    assert (completed["task_id"], completed["instance_id"], completed["status"]) == (task_id, instance_id,
                                                                                     "completed")
    shown = run_json(db_url, "show", instance_id)
    assert shown["status"] == "completed"
    assert shown["data"]["echoed"] == {"echo": 42}
    assert [(t["state"], t["completed_by"]) for t in shown["tasks"]] == [("completed", "alice")]
    assert run_json(db_url, "tasks", user="alice") == [t for t in inbox if t["id"] != task_id]

    events = {e["type"]: e for e in run_json(db_url, "history", instance_id)}
    assert in_order([e for e in events], ["instance_started", "task_ready", "task_claimed", "task_unclaimed",
                                          "task_delegated", "task_completed", "service_called", "instance_completed"])
    assert events["task_completed"]["payload"]["data"] == {"approved": True, "comment": "fine"}
    assert events["service_called"]["payload"]["result"] == {"echo": 42}
    assert run(db_url, "history", instance_id).exit_code == 0


def test_a_role_task_is_delegated_to_another_candidate_who_completes_it(cli_db):
    instance_id = start(cli_db, "sla", user="alice")
    prepare = open_task(cli_db, instance_id, "prepare")
    assert prepare["candidates"] == ["Project Manager"]
    delegated = run_json(cli_db, "delegate", prepare["id"], "bob", user="alice")
    assert delegated["assignee"] == "bob"
    assert [t["id"] for t in run_json(cli_db, "tasks", user="bob")] == [prepare["id"]]
    assert prepare["id"] not in [t["id"] for t in run_json(cli_db, "tasks", user="alice")]
    assert run(cli_db, "complete", prepare["id"], "--data", "{}", user="bob").exit_code == 0
    event = [e for e in run_json(cli_db, "history", instance_id) if e["type"] == "task_delegated"][0]
    assert (event["actor"], event["payload"]["to_user"]) == ("alice", "bob")


# -- bad input: exit code, a plain message, nothing changed ------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ('{"approved": tru', "the data is not valid JSON"),
    ("", "the data is not valid JSON"),
    ('[{"approved": true}]', "the data must be a JSON object"),
    ('"approved"', "the data must be a JSON object"),
])
def test_data_that_is_not_a_json_object_is_refused_and_changes_nothing(cli_db, review, data, message):
    _, task = review
    before = snapshot(cli_db)
    assert_error(run(cli_db, "complete", task["id"], "--data", data, user="alice"), 1, message)
    assert_error(run(cli_db, "start", "simple", "--data", data, user="alice"), 1, message)
    assert snapshot(cli_db) == before


def test_an_unreadable_data_file_is_refused(cli_db, tmp_path):
    before = snapshot(cli_db)
    assert_error(run(cli_db, "start", "simple", "--data-file", tmp_path / "missing.json", user="alice"), 1,
                 "cannot read", "missing.json")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("command", INSTANCE_COMMANDS)
def test_an_unknown_instance_id_is_not_found(cli_db, review, command):
    before = snapshot(cli_db)
    assert_error(run(cli_db, *command.format(id=999).split(), user="alice"), 1, "no instance 999")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("command", INSTANCE_COMMANDS + TASK_COMMANDS)
def test_a_non_numeric_id_is_refused_in_plain_words(cli_db, review, command):
    before = snapshot(cli_db)
    assert_error(run(cli_db, *command.format(id="first").split(), user="alice"), 1, "'first'", "ids are numbers")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("command", TASK_COMMANDS)
def test_an_unknown_task_id_is_not_found(cli_db, review, command):
    before = snapshot(cli_db)
    assert_error(run(cli_db, *command.format(id=999).split(), user="alice"), 1, "no task 999")
    assert snapshot(cli_db) == before


def test_an_unknown_process_is_not_found(cli_db):
    before = snapshot(cli_db)
    assert_error(run(cli_db, "start", "no_such_process", "--data", "{}", user="alice"), 1,
                 "no process 'no_such_process'")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("user, message", [(None, "no user given"), ("zed", "unknown user 'zed'")])
def test_acting_without_a_known_user_is_denied(cli_db, review, user, message):
    _, task = review
    before = snapshot(cli_db)
    assert_error(run(cli_db, "start", "sla", user=user), 4, message)
    assert_error(run(cli_db, "complete", task["id"], "--data", '{"approved": true}', user=user), 4, message)
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("command", [["claim"], ["complete", "--data", "{}"], ["delegate", "bob"]])
def test_a_task_of_someone_elses_role_is_denied_with_exit_4(cli_db, command):
    instance_id = start(cli_db, "sla", user="alice")
    prepare = open_task(cli_db, instance_id, "prepare")
    before = snapshot(cli_db)
    args = [command[0], prepare["id"], *command[1:]]
    assert_error(run(cli_db, *args, user="dave"), 4, "dave is not one of them", "Project Manager")
    assert snapshot(cli_db) == before


def test_a_task_of_another_starter_is_denied_with_exit_4(cli_db, review):
    _, task = review
    before = snapshot(cli_db)
    assert_error(run(cli_db, "complete", task["id"], "--data", '{"approved": true}', user="bob"), 4,
                 "user alice", "bob is not one of them")
    assert snapshot(cli_db) == before


def test_completing_a_completed_task_is_a_conflict(cli_db, review):
    _, task = review
    assert run(cli_db, "complete", task["id"], "--data", '{"approved": false}', user="alice").exit_code == 0
    before = snapshot(cli_db)
    for command in (["complete", task["id"], "--data", '{"approved": true}'], ["claim", task["id"]],
                    ["unclaim", task["id"]]):
        assert_error(run(cli_db, *command, user="alice"), 3, f"task {task['id']} is already completed")
    assert snapshot(cli_db) == before


def test_a_task_claimed_by_someone_else_is_a_conflict(cli_db):
    instance_id = start(cli_db, "sla", user="alice")
    prepare = open_task(cli_db, instance_id, "prepare")
    assert run_json(cli_db, "claim", prepare["id"], user="bob")["assignee"] == "bob"
    before = snapshot(cli_db)
    assert_error(run(cli_db, "complete", prepare["id"], "--data", "{}", user="alice"), 3, "claimed by bob")
    assert_error(run(cli_db, "claim", prepare["id"], user="alice"), 3, "claimed by bob")
    assert_error(run(cli_db, "unclaim", prepare["id"], user="alice"), 3, "not claimed by alice")
    assert snapshot(cli_db) == before


def test_start_data_failing_the_form_lists_each_field_error(cli_db):
    before = snapshot(cli_db)
    result = run(cli_db, "start", "simple", "--data", '{"title": "ab", "amount": 0}', user="alice")
    assert_error(result, 1, "simple-start.schema.json", "2 error(s)")
    details = result.stderr.splitlines()[1:]
    assert sorted(line.strip().split(":")[0] for line in details) == ["amount", "title"]
    assert "amount: 0 is less than the minimum of 1" in result.stderr
    assert "title: 'ab' is too short" in result.stderr
    assert_error(run(cli_db, "start", "simple", user="alice"), 1, "'title' is a required property",
                 "'amount' is a required property")
    assert snapshot(cli_db) == before


def test_task_data_failing_the_form_lists_each_field_error(cli_db, review):
    _, task = review
    before = snapshot(cli_db)
    result = run(cli_db, "complete", task["id"], "--data", '{"approved": "yes", "comment": 5}', user="alice")
    assert_error(result, 1, "review.schema.json", "2 error(s)",
                 "approved: 'yes' is not of type 'boolean'", "comment: 5 is not of type 'string'")
    assert_error(run(cli_db, "complete", task["id"], user="alice"), 1, "approved: 'approved' is a required property")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("extra", [
    {"typename": "x"},
    {"details": {"typename": "BpmnWorkflow"}},
    {"items": [{"ok": 1}, {"nested": {"typename": 1}}]},
])
def test_a_typename_key_anywhere_in_the_data_is_refused(cli_db, review, extra):
    _, task = review
    before = snapshot(cli_db)
    start_data = json.dumps({"title": "New laptop", "amount": 2, **extra})
    assert_error(run(cli_db, "start", "simple", "--data", start_data, user="alice"), 1, "typename", "reserved")
    task_data = json.dumps({"approved": True, **extra})
    assert_error(run(cli_db, "complete", task["id"], "--data", task_data, user="alice"), 1, "typename", "reserved")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_the_data_are_refused(cli_db, value):
    instance_id = start(cli_db, "sla", user="alice")
    prepare = open_task(cli_db, instance_id, "prepare")
    before = snapshot(cli_db)
    result = run(cli_db, "complete", prepare["id"], "--data", f'{{"score": {value}}}', user="alice")
    assert_error(result, 1, "score")
    assert snapshot(cli_db) == before


@pytest.mark.parametrize("command, noun", [("show", "instance"), ("history", "instance"), ("task", "task"),
                                           ("claim", "task")])
def test_an_id_too_large_for_the_database_is_not_found(cli_db, command, noun):
    huge = "99999999999999999999"
    assert_error(run(cli_db, command, huge, user="alice"), 1, f"no {noun} {huge}")


# -- invalid BPMN and DMN ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, line, element, message", [
    ("not_well_formed.bpmn", 7, "-", "not well-formed XML"),
    ("xsd_violation.bpmn", 5, "t", "BPMN schema: Element '{http://www.omg.org/spec/BPMN/20100524/MODEL}"
                                   "userTask', attribute 'colour'"),
    ("script_syntax.bpmn", 6, "bad_script", "script: syntax error"),
    ("unquoted_timer.bpmn", 6, "timer_def", 'timer value PT1H is not quoted'),
    ("reserved_id.bpmn", 4, "Start", "the ids 'Start' and 'End' are reserved"),
    ("no_handler.bpmn", 7, None, "no handler is registered for service operator 'test.nobody'"),
    ("missing_form.bpmn", None, None, "form file 'no-such-form.schema.json' not found"),
    ("import_os.bpmn", 6, "sneaky", "imports are not allowed in scripts"),
    ("schema_error.dmn", 4, "bad_table", "DMN schema: Element '{https://www.omg.org/spec/DMN/20191111/MODEL/}"
                                         "decisionTable', attribute 'hitPolicy'"),
])
def test_invalid_files_are_refused_by_validate_and_deploy_with_located_findings(cli_db, name, line, element,
                                                                                message):
    before = run_json(cli_db, "processes")
    for command in ("validate", "deploy"):
        result = run(cli_db, command, BAD / name, user="alice")
        assert_error(result, 1, "problem(s) found")
        # validate lists every finding on stdout (a linter); deploy lists the errors under its error: line
        lines = result.stdout.splitlines() if command == "validate" else result.stderr.splitlines()[1:]
        findings = [FINDING.match(text) for text in lines]
        assert findings and all(findings), result.stdout + result.stderr
        [finding] = [f for f in findings if message in f["message"]]
        assert finding["severity"] == "error"
        assert Path(finding["file"]).name == name
        assert int(finding["line"]) == line if line is not None else int(finding["line"]) > 0
        if element is not None:
            assert finding["element"] == element
    assert run_json(cli_db, "processes") == before


def test_a_service_operator_without_handler_names_its_service_task(cli_db):
    result = run(cli_db, "validate", BAD / "no_handler.bpmn", user="alice")
    [finding] = [FINDING.match(line) for line in result.stdout.splitlines() if "no handler" in line]
    assert finding["element"] == "call_nobody"


def test_several_broken_files_are_all_reported_at_once(cli_db):
    before = run_json(cli_db, "processes")
    files = [BAD / "script_syntax.bpmn", BAD / "unquoted_timer.bpmn", BAD / "reserved_id.bpmn"]
    result = run(cli_db, "deploy", *files, user="alice")
    assert_error(result, 1, "3 problem(s) found")
    assert {Path(FINDING.match(line)["file"]).name for line in result.stderr.splitlines()[1:]} == {
        f.name for f in files}
    assert run_json(cli_db, "processes") == before


def test_deploying_a_path_that_does_not_exist_is_refused(cli_db, tmp_path):
    before = run_json(cli_db, "processes")
    assert_error(run(cli_db, "deploy", tmp_path / "nothing.bpmn", user="alice"), 1, "no such file or folder")
    assert_error(run(cli_db, "validate", tmp_path, user="alice"), 1, "no .bpmn or .dmn files")
    assert run_json(cli_db, "processes") == before


def test_validate_accepts_good_files_without_deploying_them(cli_db):
    before = run_json(cli_db, "processes")
    checked = run_json(cli_db, "validate", FIXTURES / "simple.bpmn", user="alice")
    assert [f for f in checked if f["severity"] == "error"] == []
    assert run_json(cli_db, "processes") == before


# -- scripts that fail at run time ------------------------------------------------------------------------

def assert_instance_in_error(db_url: str, result: Result, bpmn_id: str, line: int, message: str) -> int:
    """start/complete/retry reported the instance in error: exit 1, the task, line and message named."""
    assert_error(result, 1, "is in error at task", bpmn_id, f"line {line}", message, "pmoflow retry")
    [instance] = [i for i in run_json(db_url, "instances", "--status", "error")
                  if i["error"]["bpmn_id"] == bpmn_id]
    shown = run_json(db_url, "show", instance["instance_id"])
    assert shown["status"] == "error"
    assert (shown["error"]["bpmn_id"], shown["error"]["line"]) == (bpmn_id, line)
    assert message in shown["error"]["message"]
    people = run(db_url, "show", instance["instance_id"])
    assert people.exit_code == 0
    [error_line] = [line for line in people.stdout.splitlines() if line.startswith("error ")]
    assert bpmn_id in error_line and message in error_line
    assert [e["type"] for e in run_json(db_url, "history", instance["instance_id"])][-1] == "error"
    return instance["instance_id"]


def test_a_script_calling_a_forbidden_builtin_is_refused_at_deploy_with_its_line(cli_db):
    before = run_json(cli_db, "processes")
    refused = run(cli_db, "deploy", BAD / "open_file.bpmn", user="alice")
    assert_error(refused, 1, "open_file.bpmn:7:", "open() is not available in scripts and conditions")
    assert run_json(cli_db, "processes") == before


def test_a_script_that_loops_forever_is_stopped_after_the_time_limit(cli_db, monkeypatch):
    monkeypatch.delenv("PMOFLOW_SCRIPT_SECONDS")  # the real default (conftest raises it for the other tests)
    assert run(cli_db, "deploy", BAD / "forever.bpmn", user="alice").exit_code == 0
    began = datetime.now(UTC)
    result = run(cli_db, "start", "cli_forever", user="alice")
    took = (datetime.now(UTC) - began).total_seconds()
    assert 2 <= took < 10
    assert_instance_in_error(cli_db, result, "spin", 1, "time limit of 2 s")


def test_start_json_of_an_instance_in_error_is_still_one_document(cli_db):
    result = run(cli_db, "start", "simple", "--data", '{"title": "Unlucky", "amount": 13}', "--json", user="alice")
    assert result.exit_code == 1
    started = json.loads(result.stdout)
    assert (started["status"], started["error"]["bpmn_id"], started["error"]["line"]) == ("error", "compute", 3)
    assert result.stderr.startswith("error: instance ")


def test_a_failing_condition_names_the_cause_of_the_error(cli_db):
    assert run(cli_db, "deploy", BAD / "condition_error.bpmn", user="alice").exit_code == 0
    result = run(cli_db, "start", "cli_condition_error", "--data", '{"amount": 5}', user="alice")
    assert_error(result, 1, "big_enough", "amount > limit", "name 'limit' is not defined")


def test_the_error_of_an_instance_leaves_out_what_is_not_known(cli_db):
    """A condition has no line and a boundary timer no name: neither shows up as 'None'."""
    assert run(cli_db, "deploy", BAD / "condition_error.bpmn", BAD / "timer_error.bpmn", user="alice").exit_code == 0
    for process_id, data, bpmn_id in (("cli_condition_error", {"amount": 5}, "big_enough"),
                                      ("cli_timer_error", {}, "too_late")):
        result = run(cli_db, "start", process_id, "--data", json.dumps(data), user="alice")
        assert_error(result, 1, f"is in error at task {bpmn_id}")
        assert "None" not in result.stderr
        instance_id = run_json(cli_db, "instances", "--process", process_id)[0]["instance_id"]
        [error_line] = [line for line in run(cli_db, "show", instance_id).stdout.splitlines()
                        if line.startswith("error ")]
        assert bpmn_id in error_line and "None" not in error_line


@pytest.mark.parametrize("key", ["datetime", "process_initiator"])
def test_data_keys_that_clash_with_script_helpers_are_refused_up_front(cli_db, key):
    instance_id = start(cli_db, "sla", user="bob")
    prepare = open_task(cli_db, instance_id, "prepare")
    before = snapshot(cli_db)
    assert_error(run(cli_db, "complete", prepare["id"], "--data", json.dumps({key: 1}), user="bob"), 1, key)
    assert_error(run(cli_db, "start", "simple", "--data", json.dumps({"title": "abc", "amount": 2, key: 1}),
                     user="alice"), 1, key)
    assert snapshot(cli_db) == before


def test_underscore_keys_are_either_refused_or_kept(cli_db):
    result = run(cli_db, "start", "simple", "--data", '{"title": "abc", "amount": 2, "_note": "keep me"}',
                 "--json", user="alice")
    if result.exit_code == 0:
        assert run_json(cli_db, "show", json.loads(result.stdout)["instance_id"])["data"].get("_note") == "keep me"
    else:
        assert_error(result, 1, "_note")


def start_in_error(db_url: str, process_id: str, data: dict) -> int:
    result = run(db_url, "start", process_id, "--data", json.dumps(data), "--json", user="alice")
    assert result.exit_code == 1, result.stderr
    started = json.loads(result.stdout)
    assert started["status"] == "error"
    return started["instance_id"]


# -- retry ------------------------------------------------------------------------------------------------

def test_retry_with_corrected_data_lets_the_failed_instance_proceed(cli_db):
    result = run(cli_db, "start", "simple", "--data", '{"title": "Unlucky", "amount": 13}', user="alice")
    instance_id = assert_instance_in_error(cli_db, result, "compute", 3, "division by zero")
    assert "Compute total" in result.stderr
    assert run_json(cli_db, "show", instance_id)["tasks"] == []

    retried = run_json(cli_db, "retry", instance_id, "--data", '{"amount": 4}', "--reason", "mistyped", user="alice")
    assert (retried["instance_id"], retried["status"], retried["error"]) == (instance_id, "running", None)
    shown = run_json(cli_db, "show", instance_id)
    assert (shown["status"], shown["error"], shown["data"]["total"]) == ("running", None, 8)
    review = open_task(cli_db, instance_id, "review")
    types = [e["type"] for e in run_json(cli_db, "history", instance_id)]
    assert types == ["instance_started", "error", "retry", "task_ready"]
    assert run(cli_db, "complete", review["id"], "--data", '{"approved": true}', user="alice").exit_code == 0
    assert run_json(cli_db, "show", instance_id)["data"]["echoed"] == {"echo": 8}


def test_retry_without_a_fix_fails_again_and_leaves_the_instance_in_error(cli_db):
    result = run(cli_db, "start", "simple", "--data", '{"title": "Unlucky", "amount": 13}', user="alice")
    instance_id = assert_instance_in_error(cli_db, result, "compute", 3, "division by zero")
    again = run(cli_db, "retry", instance_id, user="alice")
    assert_instance_in_error(cli_db, again, "compute", 3, "division by zero")
    assert [e["type"] for e in run_json(cli_db, "history", instance_id)] == ["instance_started", "error", "retry",
                                                                             "error"]


def test_retry_with_the_missing_data_lets_a_failed_condition_proceed(cli_db):
    assert run(cli_db, "deploy", BAD / "condition_error.bpmn", user="alice").exit_code == 0
    instance_id = start_in_error(cli_db, "cli_condition_error", {"amount": 5})
    assert run_json(cli_db, "show", instance_id)["error"]["bpmn_id"] == "big_enough"
    retried = run_json(cli_db, "retry", instance_id, "--data", '{"limit": 1}', "--reason", "limit was missing",
                       user="alice")
    assert retried["status"] == "completed"
    gateway = [e for e in run_json(cli_db, "history", instance_id) if e["type"] == "gateway"]
    assert gateway[-1]["payload"]["taken"] == ["e_big"]


def test_retry_of_a_timer_that_fails_again_reports_the_instance_in_error(cli_db):
    assert run(cli_db, "deploy", BAD / "timer_error.bpmn", user="alice").exit_code == 0
    instance_id = start_in_error(cli_db, "cli_timer_error", {})
    again = run(cli_db, "retry", instance_id, user="alice")
    assert_error(again, 1, f"instance {instance_id} is in error at task too_late", "wait_for")
    assert run_json(cli_db, "show", instance_id)["status"] == "error"


def test_retry_with_corrected_data_fixes_a_failing_timer(cli_db):
    assert run(cli_db, "deploy", BAD / "timer_error.bpmn", user="alice").exit_code == 0
    instance_id = start_in_error(cli_db, "cli_timer_error", {})
    retried = run(cli_db, "retry", instance_id, "--data", '{"wait_for": "P1D"}', "--reason", "a valid duration",
                  user="alice")
    assert retried.exit_code == 0, retried.stderr
    assert open_task(cli_db, instance_id, "wait_here")["due"] is not None


def test_retry_of_an_instance_not_in_error_is_refused(cli_db, review):
    instance_id, _ = review
    before = snapshot(cli_db)
    assert_error(run(cli_db, "retry", instance_id, user="alice"), 3, "not in error")
    assert_error(run(cli_db, "retry", instance_id, "--data", "[1]", user="alice"), 1, "must be a JSON object")
    assert snapshot(cli_db) == before


# -- the timer worker -------------------------------------------------------------------------------------

def test_worker_once_fires_the_sla_timeout_when_now_is_past_due(cli_db, approval):
    instance_id, approve = approval
    assert run_json(cli_db, "worker", "--once", "--now", later(1), user="pmo.admin")["fired"] == []
    assert run_json(cli_db, "show", instance_id)["status"] == "running"

    fired = run_json(cli_db, "worker", "--once", "--now", later(3), user="pmo.admin")
    assert fired["fired"] == [instance_id] and fired["errors"] == []
    shown = run_json(cli_db, "show", instance_id)
    assert shown["status"] == "completed"
    assert {t["bpmn_id"]: t["state"] for t in shown["tasks"]} == {"prepare": "completed", "approve": "cancelled"}
    events = run_json(cli_db, "history", instance_id)
    assert {"timer_fired", "task_cancelled", "instance_completed"} <= {e["type"] for e in events}
    assert_error(run(cli_db, "complete", approve["id"], "--data", "{}", user="carol"), 3, "already cancelled")
    assert run_json(cli_db, "worker", "--once", "--now", later(4), user="pmo.admin")["fired"] == []


def test_worker_without_json_says_what_it_fired(cli_db, approval):
    instance_id, _ = approval
    result = run(cli_db, "worker", "--once", "--now", "2099-01-01T00:00:00", user="pmo.admin")
    assert result.exit_code == 0
    assert f"fired timers of 1 instance(s) [{instance_id}]" in result.stdout


@pytest.mark.parametrize("now", ["tomorrow", "2027-13-01T00:00:00", "31/01/2027"])
def test_worker_with_a_malformed_now_is_refused(cli_db, approval, now):
    before = snapshot(cli_db)
    assert_error(run(cli_db, "worker", "--once", "--now", now), 1, "--now", "is not an ISO time")
    assert snapshot(cli_db) == before


def test_worker_with_an_empty_now_is_refused(cli_db):
    assert_error(run(cli_db, "worker", "--once", "--now", ""), 1, "--now")


# -- segregation of duties --------------------------------------------------------------------------------

def test_the_starter_who_prepared_may_not_approve_and_the_refusal_is_recorded(cli_db):
    instance_id = start(cli_db, "sla", user="alice")
    prepare = open_task(cli_db, instance_id, "prepare")
    assert run(cli_db, "complete", prepare["id"], "--data", "{}", user="alice").exit_code == 0
    approve = open_task(cli_db, instance_id, "approve")  # for the Quality Director role, which alice holds

    for command in (["complete", approve["id"], "--data", "{}"], ["claim", approve["id"]]):
        result = run(cli_db, *command, user="alice")
        assert_error(result, 4, "segregation of duties", "alice", "started this instance")
        refused = run_json(cli_db, "history", instance_id)[-1]
        assert (refused["type"], refused["actor"], refused["task"]) == ("duty_refused", "alice", "approve")
        assert "segregation of duties" in refused["payload"]["message"]
    assert open_task(cli_db, instance_id, "approve")["assignee"] is None
    assert run_json(cli_db, "show", instance_id)["status"] == "running"

    done = run_json(cli_db, "complete", approve["id"], "--data", "{}", user="carol")
    assert done["status"] == "completed"
    completed = [e for e in run_json(cli_db, "history", instance_id) if e["type"] == "task_completed"][-1]
    assert completed["actor"] == "carol"
    assert [c["result"] for c in completed["payload"]["duty_checks"]] == ["passed", "passed"]


def test_who_prepared_may_not_approve_even_when_someone_else_started(cli_db):
    instance_id = start(cli_db, "sla", user="bob")
    prepare = open_task(cli_db, instance_id, "prepare")
    assert run(cli_db, "complete", prepare["id"], "--data", "{}", user="alice").exit_code == 0
    approve = open_task(cli_db, instance_id, "approve")
    assert_error(run(cli_db, "complete", approve["id"], "--data", "{}", user="alice"), 4,
                 "segregation of duties", "performed task prepare")
    assert run_json(cli_db, "history", instance_id)[-1]["type"] == "duty_refused"
    assert run_json(cli_db, "complete", approve["id"], "--data", "{}", user="carol")["status"] == "completed"


# -- the database ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["tasks", "--all"], ["processes"], ["show", "1"], ["deploy", FIXTURES],
                                     ["init", "--org", TEST_ORG]])
def test_an_unreachable_database_is_a_plain_error(command):
    result = run(UNREACHABLE, *command, user="alice")
    assert_error(result, 1, "127.0.0.1")
    assert "nobody@127.0.0.1:1/none" in result.stderr and "[SQL:" not in result.stderr


@pytest.mark.parametrize("url", ["nonsense", "mysql://someone@127.0.0.1:1/pmo"])
def test_a_malformed_or_unsupported_database_url_is_a_plain_error(url):
    assert_error(run(url, "tasks", "--all"), 1, url.split(":")[0])


@pytest.mark.parametrize("command", [["tasks"], ["processes"], ["show", "1"], ["start", "simple"],
                                     ["deploy", FIXTURES]])
def test_a_database_without_schema_says_to_run_init(db_url, command):
    assert_error(run(db_url, *command, user="alice"), 1, "no pmoflow schema", "pmoflow init")


def test_a_fresh_sqlite_file_without_schema_says_to_run_init(tmp_path):
    assert_error(run(f"sqlite:///{tmp_path / 'new.db'}", "tasks", user="alice"), 1, "run 'pmoflow init' first")


def test_a_malformed_organisation_file_leaves_the_database_alone(cli_db, tmp_path):
    org = tmp_path / "org.toml"
    org.write_text('[[users]]\nname = "eve"\nroles = "Sponsor"\n')
    assert_error(run(cli_db, "init", "--org", org), 1, "'roles' must be a list")
    org.write_text("[[users]\n")
    assert_error(run(cli_db, "init", "--org", org), 1, "not valid TOML")
    assert [u["name"] for u in run_json(cli_db, "users")] == ["alice", "bob", "carol", "dave", "erin", "pmo.admin"]


# -- usage and --debug -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["show"], ["delegate", "1"], ["start"], ["complete"], ["no-such-command"],
                                  ["tasks", "--no-such-option"], ["validate"], ["deploy"]])
def test_usage_errors_exit_2(cli_db, args):
    before = snapshot(cli_db)
    result = run(cli_db, *args, user="alice")
    assert result.exit_code == 2, result.stderr
    assert "Usage:" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(cli_db) == before


def test_data_together_with_data_file_is_a_usage_error(cli_db, review, tmp_path):
    _, task = review
    data_file = tmp_path / "data.json"
    data_file.write_text('{"approved": true}')
    before = snapshot(cli_db)
    for command in (["start", "simple"], ["complete", task["id"]]):
        result = run(cli_db, *command, "--data", '{"approved": true}', "--data-file", data_file, user="alice")
        assert result.exit_code == 2, result.stderr
        assert "--data" in result.stderr and "unexpected failure" not in result.stderr
    assert snapshot(cli_db) == before


def test_a_refused_json_command_prints_nothing_on_stdout(cli_db, review):
    _, task = review
    for args in (["show", 999], ["task", "first"], ["complete", task["id"], "--data", "{}"],
                 ["complete", task["id"], "--data", '{"approved": true}']):
        result = run(cli_db, *args, "--json", user="bob")
        assert result.exit_code in (1, 4) and result.stdout == "", result.stdout
        assert result.stderr.startswith("error: ")


def pmoflow_command() -> list[str]:
    script = Path(sys.executable).parent / "pmoflow"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from pmoflow.engine.cli import main; main()"]


def test_debug_shows_the_traceback_and_without_it_there_is_none(cli_db):
    env_free = {"PATH": "/usr/bin:/bin"}
    plain = subprocess.run([*pmoflow_command(), "--db", cli_db, "show", "999"], capture_output=True, text=True,
                           env=env_free, timeout=60)
    assert plain.returncode == 1
    assert plain.stderr == "error: no instance 999\n"
    debug = subprocess.run([*pmoflow_command(), "--db", cli_db, "--debug", "show", "999"], capture_output=True,
                           text=True, env=env_free, timeout=60)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "pmoflow.engine.errors.NotFound: no instance 999" in debug.stderr

    in_process = run(cli_db, "show", "999", debug=True)
    assert type(in_process.exception).__name__ == "NotFound"


# -- engine caches across databases -----------------------------------------------------------------------

def test_two_databases_in_one_process_do_not_share_process_specs(db_url, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    for url, bpmn in ((db_url, "simple.bpmn"), (other, "loop.bpmn")):
        assert run(url, "init", "--org", TEST_ORG).exit_code == 0
        assert run(url, "deploy", FIXTURES / bpmn, user="alice").exit_code == 0
    # the same definition and instance ids in both databases: with caches keyed by id alone, long_loop ran as
    # `simple` (found and fixed while these tests were written)
    run_json(db_url, "start", "simple", "--data", '{"title": "New laptop", "amount": 21}', user="alice")
    looped = run(other, "start", "long_loop", "--data", '{"iterations": 3}', "--json", user="alice", cold=False)
    assert looped.exit_code == 0, looped.stderr
    instance_id = json.loads(looped.stdout)["instance_id"]
    assert open_task(other, instance_id, "confirm")["process_id"] == "long_loop"


# -- two commands at once ---------------------------------------------------------------------------------

def test_two_people_completing_one_task_at_once_one_wins_and_the_other_gets_exit_3(cli_db):
    """Real processes, as in use: each `pmoflow complete` runs in its own interpreter and transaction."""
    for _ in range(3):
        instance_id = start(cli_db, "sla", user="alice")
        prepare = open_task(cli_db, instance_id, "prepare")
        racers = [subprocess.Popen([*pmoflow_command(), "--db", cli_db, "--user", user, "complete", str(prepare["id"]),
                                    "--data", "{}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={"PATH": "/usr/bin:/bin"}) for user in ("alice", "bob")]
        outcomes = sorted((p.wait(timeout=60), p.stderr.read()) for p in racers)
        for p in racers:
            p.stdout.close()
            p.stderr.close()
        assert [code for code, _ in outcomes] == [0, 3], outcomes
        assert outcomes[1][1].startswith("error: ") and "Traceback" not in outcomes[1][1]
        completed = [e for e in run_json(cli_db, "history", instance_id) if e["type"] == "task_completed"]
        assert len(completed) == 1
