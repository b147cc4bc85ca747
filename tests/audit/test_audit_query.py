"""`pmoflow audit events`: queries across instances on a few thousand generated events, every filter checked
against what was generated, answered from indexes; bad filters are plain errors. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import select, text

from conftest import FIXTURES, TEST_LIBRARY, TEST_ORG, fresh_database
from pmoflow.engine import audit, clock
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.cli import main
from pmoflow.engine.errors import InvalidInput, NotFound
from pmoflow.engine.models import EventFact, ProcessDefinition, ProcessInstance

START = datetime(2027, 1, 1, 8, 0)
ROLES = {"alice": {"Project Manager", "Quality Director"}, "bob": {"Project Manager"}, "carol": {"Quality Director"},
         "dave": {"Sponsor"}}
DECISIONS = ["Go", "Hold", "Stop"]


@dataclass
class Generated:
    """What was written, to compute the expected answer of each query in plain Python."""

    events: list[dict] = field(default_factory=list)
    starters: dict[int, str] = field(default_factory=dict)

    def add(self, instance_id: int, seq: int, at: datetime, actor: str, type_: str, process: str, version: int,
            task: str | None, payload: dict) -> None:
        self.events.append({"instance_id": instance_id, "seq": seq, "at": at, "actor": actor, "type": type_,
                            "process": process, "version": version, "task": task, "payload": payload})

    def keys(self, where) -> list[tuple[int, int]]:
        """The (instance, seq) of the events matching `where`, oldest first (as the query orders them)."""
        return [(e["instance_id"], e["seq"]) for e in sorted(self.events, key=lambda e: e["at"]) if where(e)]

    @property
    def at_of(self) -> dict:
        return {(e["instance_id"], e["seq"]): e["at"] for e in self.events}


def generate(app, instances: int = 420, seed: int = 7) -> Generated:
    """Instances of two processes (gate versions 1 and 2, and `simple`) with a decision, a human task (late
    or not, by the starter or not), a gateway and an ending, written through the real InstanceLog (hashes and
    facts as the engine writes them), each event at a known time."""
    rng = random.Random(seed)
    gen = Generated()
    with app.db.transaction() as s:
        definitions = {d.process_id: d for d in s.scalars(select(ProcessDefinition))}
        for n in range(instances):
            process = "audit_gate" if n % 4 else "simple"
            version = 2 if process == "audit_gate" and n % 3 == 0 else 1
            starter = rng.choice(["alice", "bob"])
            decider = rng.choice(["alice", "carol"])
            base = START + timedelta(hours=7 * n)
            inst = ProcessInstance(definition_id=definitions[process].id, process_id=process, version=version,
                                   status="completed", started_by=starter, started_at=base, updated_at=base,
                                   state="{}")
            s.add(inst)
            s.flush()
            gen.starters[inst.id] = starter
            log = audit.InstanceLog(s, inst, starter)
            recommendation, decision = rng.choice(DECISIONS), rng.choice(DECISIONS)
            due = base + timedelta(days=5)
            done_at = base + timedelta(days=rng.choice([1, 3, 6, 9]))
            task = SimpleNamespace(bpmn_id="gate_decision", name="Decide the gate", due=due)
            steps = [
                (base, starter, "instance_started", None, {"data": {"project": f"P{n}", "score": n % 20},
                                                           "version": version}),
                (base + timedelta(minutes=1), starter, "decision", SimpleNamespace(bpmn_id="recommend", name="R"),
                 {"decision": "AuditGateRecommendation", "outputs": {"recommendation": recommendation},
                  "matched_rules": [{"id": f"Rule_{recommendation}", "row": DECISIONS.index(recommendation) + 1}]}),
                (base + timedelta(minutes=2), starter, "task_ready", task,
                 {"task_id": n, "lane": "Quality Director", "candidates": ["role:Quality Director"],
                  "due": clock.as_utc(due).isoformat()}),
                (done_at, decider, "task_completed", task, {"task_id": n, "data": {"gateDecision": decision,
                                                                                    "approved": n % 2 == 0}}),
                (done_at + timedelta(seconds=1), decider, "gateway", SimpleNamespace(bpmn_id="go_gw", name="Go?"),
                 {"taken": ["Record the go" if decision == "Go" else "Gate not passed"]}),
                (done_at + timedelta(seconds=2), decider, "instance_completed", None,
                 {"data": {"gateDecision": decision}}),
            ]
            for seq, (at, actor, type_, ref, payload) in enumerate(steps, 1):
                with clock.frozen(at):
                    log.add(type_, task=ref, actor=actor, **payload)
                gen.add(inst.id, seq, at, actor, type_, process, version, getattr(ref, "bpmn_id", None), payload)
    return gen


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request, tmp_path_factory):
    """One generated record per database for the whole module (the tests only read it)."""
    with fresh_database(request.param, tmp_path_factory.mktemp("audit_query")) as url:
        app = Pmoflow(url, user="alice", libraries=[TEST_LIBRARY])
        app.init(TEST_ORG)
        app.deploy([FIXTURES])
        app.deploy([FIXTURES / "audit_trail"])
        yield url, app, generate(app)
        app.close()


@pytest.fixture
def record(shared):
    return shared[1], shared[2]


@pytest.fixture
def record_url(shared):
    return shared[0]


def keys(events: list[dict]) -> list[tuple[int, int]]:
    return [(e["instance_id"], e["seq"]) for e in events]


def test_every_filter_answers_what_was_generated(record):
    app, gen = record
    assert len(gen.events) > 2000
    due = {e["instance_id"]: datetime.fromisoformat(e["payload"]["due"]).replace(tzinfo=None)
           for e in gen.events if e["type"] == "task_ready"}

    def late(e) -> bool:
        return e["type"] == "task_completed" and e["at"] > due[e["instance_id"]]

    everything = app.audit_events()
    assert [k for k in keys(everything) if k[0] is not None] == gen.keys(lambda e: True)  # oldest first
    assert {e["type"] for e in everything if e["instance_id"] is None} == {"deployed", "organisation_loaded"}
    q1 = (datetime(2027, 2, 1), datetime(2027, 3, 1))
    cases = [
        ({"process": "simple"}, lambda e: e["process"] == "simple"),
        ({"process": "audit_gate", "version": 2}, lambda e: e["process"] == "audit_gate" and e["version"] == 2),
        ({"process": "audit_gate", "version": "1"}, lambda e: e["process"] == "audit_gate" and e["version"] == 1),
        ({"instance": 17}, lambda e: e["instance_id"] == 17),
        ({"instance": "17", "types": ["decision", "gateway"]},
         lambda e: e["instance_id"] == 17 and e["type"] in ("decision", "gateway")),
        ({"actor": "carol"}, lambda e: e["actor"] == "carol"),
        ({"role": "Quality Director"}, lambda e: "Quality Director" in ROLES[e["actor"]]),
        ({"role": "Project Manager", "types": ["task_completed"]},
         lambda e: e["type"] == "task_completed" and "Project Manager" in ROLES[e["actor"]]),
        ({"types": ["task_completed"]}, lambda e: e["type"] == "task_completed"),
        ({"task": "go_gw"}, lambda e: e["task"] == "go_gw"),
        ({"since": "2027-02-01", "until": "2027-02-28"}, lambda e: q1[0] <= e["at"] < q1[1]),
        ({"period": "2027-02"}, lambda e: q1[0] <= e["at"] < q1[1]),
        ({"period": "2027-Q2", "types": ["task_completed"]},
         lambda e: e["type"] == "task_completed" and datetime(2027, 4, 1) <= e["at"] < datetime(2027, 7, 1)),
        ({"since": "2027-02-01T10:00:00+02:00"}, lambda e: e["at"] >= datetime(2027, 2, 1, 8)),
        ({"where": ["data.gateDecision=Stop"]}, lambda e: (e["payload"].get("data") or {}).get("gateDecision")
         == "Stop"),
        ({"where": ["payload.data.gateDecision=Stop"], "types": ["task_completed"]},
         lambda e: e["type"] == "task_completed" and e["payload"]["data"]["gateDecision"] == "Stop"),
        ({"where": ["outputs.recommendation!=Go"]},
         lambda e: e["type"] == "decision" and e["payload"]["outputs"]["recommendation"] != "Go"),
        ({"where": ["data.approved=true", "data.gateDecision=Go"]},
         lambda e: (e["payload"].get("data") or {}).get("approved") is True
         and e["payload"]["data"].get("gateDecision") == "Go"),
        ({"where": ["matched_rules.id=Rule_Hold"]},
         lambda e: e["type"] == "decision" and e["payload"]["matched_rules"][0]["id"] == "Rule_Hold"),
        ({"where": ["taken=Gate not passed"]}, lambda e: e["type"] == "gateway"
         and e["payload"]["taken"] == ["Gate not passed"]),
        ({"where": ["candidates=role:Quality Director"]}, lambda e: e["type"] == "task_ready"),
        ({"late": True}, late),
        ({"by_starter": True},
         lambda e: e["type"] == "task_completed" and e["actor"] == gen.starters[e["instance_id"]]),
        ({"late": True, "by_starter": True, "process": "audit_gate"},
         lambda e: late(e) and e["actor"] == gen.starters[e["instance_id"]] and e["process"] == "audit_gate"),
    ]
    for filters, expected in cases:
        answer = [k for k in keys(app.audit_events(**filters)) if k[0] is not None]  # not the deployments
        assert answer == gen.keys(expected), filters
        assert answer, f"{filters} should match something"


def test_overrides_compare_each_submission_with_the_latest_recommendation_before_it(record):
    app, gen = record
    recommended = {e["instance_id"]: e["payload"]["outputs"]["recommendation"] for e in gen.events
                   if e["type"] == "decision"}
    expected = gen.keys(lambda e: e["type"] == "task_completed"
                        and e["payload"]["data"]["gateDecision"] != recommended[e["instance_id"]])
    answer = app.audit_events(override="data.gateDecision=outputs.recommendation")
    assert keys(answer) == expected and len(expected) > 100
    quarter = app.audit_events(override="payload.data.gateDecision=payload.outputs.recommendation", period="2027-Q1",
                               process="audit_gate")
    process_of = {e["instance_id"]: e["process"] for e in gen.events}
    at_of = gen.at_of
    assert keys(quarter) == [k for k in expected if at_of[k] < datetime(2027, 4, 1)
                             and process_of[k[0]] == "audit_gate"]


def test_limit_gives_the_oldest_first(record):
    app, gen = record
    assert keys(app.audit_events(types=["gateway"], limit=5)) == gen.keys(lambda e: e["type"] == "gateway")[:5]


@pytest.mark.parametrize("filters, error, fragment", [
    ({"instance": 99999}, NotFound, "no instance 99999"),
    ({"instance": "abc"}, NotFound, "ids are numbers"),
    ({"process": "nope"}, NotFound, "no process 'nope' in the record (processes: audit_gate"),
    ({"process": "audit_gate", "version": 9}, NotFound, "no version 9 of audit_gate in the record"),
    ({"process": "audit_gate", "version": "two"}, InvalidInput, "not a version number"),
    ({"version": 1}, InvalidInput, "--version goes with --process"),
    ({"actor": "mallory"}, NotFound, "no user or actor 'mallory'"),
    ({"role": "Pope"}, NotFound,
     "no role 'Pope' (roles: PMO Administrator, Project Manager, Quality Director, Sponsor)"),
    ({"types": ["task_finished"]}, InvalidInput, "no event type 'task_finished' (types: archived"),
    ({"task": "nowhere"}, NotFound, "no task 'nowhere'"),
    ({"since": "2027-02-30"}, InvalidInput, "--since: '2027-02-30' is not a date"),
    ({"until": "yesterday"}, InvalidInput, "--until: 'yesterday' is not a date"),
    ({"since": "2027-03-01", "until": "2027-02-01"}, InvalidInput, "the period is empty"),
    ({"period": "2027-Q5"}, InvalidInput, "--period: '2027-Q5' is not a period"),
    ({"period": "2027", "since": "2027-01-01"}, InvalidInput, "not both"),
    ({"where": ["data.gateDecisoin=Go"]}, InvalidInput, "'data.gateDecisoin' is not a field the record can be "
                                                         "filtered on; fields: "),
    ({"where": ["@role=Sponsor"]}, InvalidInput, "is not a field"),
    ({"where": ["gateDecision"]}, InvalidInput, "is not a condition like data.gateDecision=Stop"),
    ({"override": "data.gateDecision"}, InvalidInput, "is not SUBMITTED=RECOMMENDED"),
    ({"override": "data.gateDecision=outputs.nothing"}, InvalidInput, "'outputs.nothing' is not a field"),
    ({"limit": 0}, InvalidInput, "--limit must be 1 or more"),
])
def test_bad_filters_are_plain_errors(record, filters, error, fragment):
    app, _ = record
    with pytest.raises(error) as raised:
        app.audit_events(**filters)
    assert fragment in raised.value.message


def test_unknown_field_error_lists_the_valid_fields(record):
    app, _ = record
    with pytest.raises(InvalidInput) as raised:
        app.audit_events(where=["data.nope=1"])
    message = raised.value.message
    for field_name in ("data.gateDecision", "outputs.recommendation", "matched_rules.id", "taken"):
        assert field_name in message


def test_a_filtered_query_answers_from_indexes(record):
    """SQLite's plan for payload-field, late and override filters goes through the facts index and never scans
    the events table or reads payloads."""
    app, _ = record
    if app.db.engine.dialect.name != "sqlite":
        pytest.skip("the plan check reads SQLite's EXPLAIN QUERY PLAN")
    for filters in (audit.Filters(where=("data.gateDecision=Stop",), process="audit_gate"),
                    audit.Filters(late=True, since=datetime(2027, 1, 1), until=datetime(2027, 4, 1)),
                    audit.Filters(override="data.gateDecision=outputs.recommendation"),
                    audit.Filters(role="Quality Director", types=("task_completed",))):
        statement = audit.build_query(filters).compile(app.db.engine, compile_kwargs={"literal_binds": True})
        with app.db.engine.connect() as conn:
            plan = [row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {statement}"))]
        joined = "\n".join(plan)
        assert "ix_event_facts_lookup" in joined or "sqlite_autoindex_event_facts" in joined, joined
        assert not any(step.startswith("SCAN events") or step.startswith("SCAN event_facts") for step in plan), joined


def cli(db_url: str, *args):
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(
        main, ["--db", db_url, *[str(a) for a in args]])


def test_the_command_line_prints_table_json_and_csv(record, record_url, cli_handlers, tmp_path):
    db_url = record_url
    app, gen = record
    expected = gen.keys(lambda e: e["type"] == "decision" and e["payload"]["outputs"]["recommendation"] == "Stop")
    args = ["audit", "events", "--type", "decision", "--where", "outputs.recommendation=Stop"]
    as_json = cli(db_url, *args, "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert keys(rows) == expected
    assert {"instance_id", "seq", "at", "actor", "type", "process_id", "process_version", "task", "payload", "hash",
            "prev_hash", "stream"} <= set(rows[0])
    assert json.loads(cli(db_url, *args, "--json").stdout) == rows
    as_csv = cli(db_url, *args, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(int(r["instance_id"]), int(r["seq"])) for r in parsed] == expected
    assert json.loads(parsed[0]["payload"])["outputs"] == {"recommendation": "Stop"}
    out = tmp_path / "stop.csv"
    assert cli(db_url, *args, "--format", "csv", "--output", out).exit_code == 0
    assert out.read_text() == as_csv.stdout
    as_table = cli(db_url, *args, "--limit", "3")
    assert as_table.exit_code == 0 and "3 event(s)" in as_table.stdout
    empty = cli(db_url, "audit", "events", "--actor", "dave")
    assert empty.exit_code == 0 and "no events match" in empty.stdout
    bad = cli(db_url, "audit", "events", "--where", "data.nope=1")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: 'data.nope' is not a field")
    assert "Traceback" not in bad.stderr
    assert cli(db_url, "audit", "events", "--format", "xml").exit_code == 2


def test_the_0002_migration_indexes_events_recorded_before_it(record):
    """Facts rebuilt from the payloads (as the migration does for an older record) equal those written live."""
    app, _ = record
    with app.db.transaction() as s:
        live = {tuple(row) for row in s.execute(select(EventFact.event_id, EventFact.key, EventFact.value))}
    config = app.db._alembic_config()
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
    with app.db.transaction() as s:
        rebuilt = {tuple(row) for row in s.execute(select(EventFact.event_id, EventFact.key, EventFact.value))}
    assert rebuilt == live and len(live) > 10000
