"""What the auditor's commands cost as the record grows: filtered `audit events` queries and `audit verify`.

Run:  python bench/audit.py [--sizes 10000,100000] [--reps 5] [--json FILE]
      PMOFLOW_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test python bench/audit.py   (PostgreSQL too)

For each size N the script writes a record of N instance events (plus a few deployment events) on a fresh
database: instances of a gate process, ten events each (started, decision, task ready, claimed, completed, a
service call, a gateway, a timer, a second service call, completed), one instance every 7 hours, so a calendar
quarter holds the same ~310 instances at every size. Events are written through the engine's own audit log
(`InstanceLog`: hash chain and facts index), 200 instances a transaction; writing is not what is measured.

Then it times, through the Python API the CLI calls (`Pmoflow.audit_events`, `Pmoflow.verify_record`):

* quarter/where:    --process gate --where data.gateDecision=Stop --period <one quarter>  (constant answer size)
* quarter/late:     --late --period <one quarter>
* quarter/override: --override data.gateDecision=outputs.recommendation --period <one quarter>
* quarter/actor:    --actor carol --type task_completed --period <one quarter>
* all/where:        --where data.gateDecision=Stop over the whole record (answer grows with N)
* verify:           audit verify over the whole record (re-computes every hash, re-derives the facts and checks
                    the seals, the record being sealed with an audit key: grows with N by nature)
* links:            the hash links alone (every event re-hashed, chain by chain): what verify did before the
                    anchor, measured in the same run to show what the rest costs

and prints the median and p90 of `--reps` runs per size, the ratio of the largest size to the smallest, and the
query plans of quarter/where and quarter/override. A query answered from indexes costs about the same at every
size when its answer does not grow (ratio near 1); a scan of payloads would grow with N (ratio near the size
ratio). Wall-clock times on whatever else the machine runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import select, text

from pmoflow.engine import anchor, audit, clock, organisation
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import scratch_schema
from pmoflow.engine.models import Event, HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate
from pmoflow.engine.services import auditing
from pmoflow.engine.services.installation import load_people

EVENTS_PER_INSTANCE = 10
BATCH = 200
START = datetime(2020, 1, 1, 8, 0)
QUARTER = "2020-Q3"
ORG = """
[[users]]
name = "alice"
roles = ["Project Manager", "Quality Director", "PMO Administrator"]
[[users]]
name = "bob"
roles = ["Project Manager"]
[[users]]
name = "carol"
roles = ["Quality Director"]
"""
QUERIES = {
    "quarter/where": {"process": "gate", "where": ["data.gateDecision=Stop"], "period": QUARTER},
    "quarter/late": {"late": True, "period": QUARTER},
    "quarter/override": {"override": "data.gateDecision=outputs.recommendation", "period": QUARTER},
    "quarter/actor": {"actor": "carol", "types": ["task_completed"], "period": QUARTER},
    "all/where": {"where": ["data.gateDecision=Stop"]},
}


def generate(app: Pmoflow, events: int, seed: int = 1) -> int:
    """Write `events` instance events (EVENTS_PER_INSTANCE per instance) through the engine's audit log."""
    rng = random.Random(seed)
    instances = events // EVENTS_PER_INSTANCE
    empty = audit.definition_content_hash({})  # a stand-in definition with no files, consistent as verify wants
    with app.db.transaction() as s:
        definition = ProcessDefinition(process_id="gate", version=1, name="Gate", content_hash=empty, sources={},
                                       spec=SPEC, deployed_by="bench", deployed_at=clock.db_now())
        s.add(definition)
        s.flush()
        definition_id = definition.id
        audit.add_definition_event(s, "gate", 1, "bench", "deployed", content_hash=empty, files=[])
    written = 0
    for first in range(1, instances + 1, BATCH):
        with app.db.transaction() as s:
            for n in range(first, min(first + BATCH, instances + 1)):
                written += _instance(s, n, definition_id, rng)
    return written


# The stand-in spec names the one human task, as verify re-derives each task row's form from the spec.
SPEC = json.dumps({"spec": {"task_specs": {"decide": {"bpmn_id": "decide", "extensions": {}}}},
                   "subprocess_specs": {}})


def _task_row(n: int, due: datetime, done: datetime, decider: str) -> HumanTask:
    """The inbox row the task's events describe (verify re-derives the inbox from them)."""
    row = HumanTask(id=n, instance_id=n, process_id="gate", spiff_task_id=f"{n:036d}", bpmn_id="decide",
                    name="Decide the gate", lane="Quality Director", form=None, due=due, state="completed",
                    created_at=due, assignee=decider, completed_by=decider, completed_at=done)
    row.candidates = [TaskCandidate(kind="role", name="Quality Director")]
    return row


def _instance(s, n: int, definition_id: int, rng: random.Random) -> int:
    starter, decider = rng.choice(["alice", "bob"]), rng.choice(["alice", "carol"])
    base = START + timedelta(hours=7 * n)
    inst = ProcessInstance(id=n, definition_id=definition_id, process_id="gate", version=1, status="completed",
                           started_by=starter, started_at=base, updated_at=base, state="{}", last_seq=0,
                           last_hash="")
    s.add(inst)
    log = audit.InstanceLog(s, inst, starter)
    recommendation, decision = rng.choice(["Go", "Hold", "Stop"]), rng.choice(["Go", "Hold", "Stop"])
    due, done = base + timedelta(days=5), base + timedelta(days=rng.choice([1, 3, 6, 9]))
    task = SimpleNamespace(bpmn_id="decide", name="Decide the gate", due=due)
    service = SimpleNamespace(bpmn_id="notify", name="Notify the sponsor")
    steps = [
        (base, starter, "instance_started", None, {"data": {"project": f"P{n}", "score": n % 20,
                                                            "budget": rng.randint(1, 10**6)}, "version": 1}),
        (base, starter, "decision", SimpleNamespace(bpmn_id="recommend", name="Recommend"),
         {"decision": "GateRecommendation", "hit_policy": "FIRST", "inputs": {"score": n % 20},
          "outputs": {"recommendation": recommendation},
          "matched_rules": [{"id": f"Rule_{recommendation}", "row": 1}]}),
        (base, starter, "task_ready", task, {"task_id": n, "lane": "Quality Director",
                                             "candidates": ["role:Quality Director"],
                                             "due": clock.as_utc(due).isoformat()}),
        (base + timedelta(hours=1), decider, "task_claimed", task, {"task_id": n}),
        (done, decider, "task_completed", task, {"task_id": n, "data": {"gateDecision": decision,
                                                                        "comment": "see the minutes"},
                                                 "duty_checks": [{"rule": "performer differs from starter",
                                                                  "result": "passed"}]}),
        (done, decider, "service_called", service, {"operator": "notify", "result_variable": "sent",
                                                    "result": {"ok": True}}),
        (done, decider, "gateway", SimpleNamespace(bpmn_id="go", name="Go?"), {"taken": [decision]}),
        (done + timedelta(days=1), "worker", "timer_fired", SimpleNamespace(bpmn_id="wait", name="A day"),
         {"due": clock.as_utc(done + timedelta(days=1)).isoformat()}),
        (done + timedelta(days=1), "worker", "service_called", service, {"operator": "archive",
                                                                       "result_variable": "archived",
                                                                       "result": {"ok": True}}),
        (done + timedelta(days=1), "worker", "instance_completed", None,
         {"data": {"gateDecision": decision, "recommendation": recommendation}}),
    ]
    s.flush()  # the instance row first: the task row refers to it
    s.add(_task_row(n, due, done, decider))
    for at, actor, type_, ref, payload in steps:
        with clock.frozen(at):
            log.add(type_, task=ref, actor=actor, **payload)
    return len(steps)


def links(app: Pmoflow) -> dict:
    """Re-hash every chain and nothing else."""
    with app.db.transaction() as s:
        rows = s.connection().execute(select(*audit._EVENT_COLUMNS).order_by(Event.stream, Event.seq)
                                      .execution_options(yield_per=5000))
        broken = [stream for stream, chain in itertools.groupby(rows, key=lambda r: r.stream)
                  if audit.check_stream(list(chain))]
    return {"ok": not broken}


def timed(fn, reps: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def plan(app: Pmoflow, filters: dict) -> list[str]:
    statement = audit.build_query(auditing.filters(**filters))
    compiled = statement.compile(app.db.engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if app.db.engine.dialect.name == "sqlite" else "EXPLAIN "
    with app.db.engine.connect() as conn:
        return [str(row[-1] if app.db.engine.dialect.name == "sqlite" else row[0])
                for row in conn.execute(text(prefix + str(compiled)))]


def databases(pg_url: str | None, folder: Path):
    """Per backend, a function giving a fresh database for a record size (a context manager yielding its URL)."""
    yield "sqlite", lambda size: nullcontext(f"sqlite:///{folder / f'audit-{size}.db'}")
    if pg_url:
        yield "postgresql", lambda size: scratch_schema(pg_url, "bench")


def measure(url: str, backend: str, size: int, reps: int, org: Path) -> dict:
    """Write a record of `size` events into the empty database at `url`, then time the queries and `verify`."""
    app = Pmoflow(url, user="alice", handlers={})
    app.db.upgrade()
    app.db.check_schema()  # checked once, now: a migration added to the tree while this runs does not stop it
    os.environ.setdefault(anchor.KEY_ENV, secrets.token_hex(32))  # verify checks seals, as in an installation
    with app.db.transaction() as s, audit.organisation_change(s, "bench", str(org)):
        load_people(s, organisation.load(org))
    start = time.perf_counter()
    written = generate(app, size)
    with app.db.transaction() as s:
        anchor.seal_existing(s, anchor.find_key(app.db.url)[0])
    if backend == "postgresql":
        with app.db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    elapsed = time.perf_counter() - start
    row = {"events": written, "write_seconds": round(elapsed, 1)}
    print(f"{backend}: {written:,} events written in {elapsed:.1f} s", file=sys.stderr)
    for name, filters in QUERIES.items():
        app.audit_events(**filters)  # warm the connection and the page cache
        times, answer = timed(lambda app=app, filters=filters: app.audit_events(**filters), reps)
        row[name] = {"median_ms": statistics.median(times) * 1000,
                     "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))] * 1000, "rows": len(answer)}
    times, verdict = timed(app.verify_record, max(1, min(reps, 3)))
    row["verify"] = {"median_ms": statistics.median(times) * 1000,
                     "p90_ms": max(times) * 1000, "rows": verdict["checked_events"],
                     "ok": verdict["ok"], "sealed": verdict["anchoring"]["checked"]}
    if not verdict["ok"] or not verdict["anchoring"]["checked"]:
        print(f"warning: verify did not pass on the generated record: {verdict['findings'][:2]} "
              f"{verdict['anchoring']['note']}", file=sys.stderr)
    times, verdict = timed(lambda: links(app), max(1, min(reps, 3)))
    row["links"] = {"median_ms": statistics.median(times) * 1000, "p90_ms": max(times) * 1000,
                    "rows": row["verify"]["rows"], "ok": verdict["ok"]}
    row["plan"] = {name: plan(app, QUERIES[name]) for name in ("quarter/where", "quarter/override")}
    app.close()
    return row


def run(sizes: list[int], reps: int, pg_url: str | None) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        org = Path(tmp) / "org.toml"
        org.write_text(ORG)
        for backend, make in databases(pg_url, Path(tmp)):
            results[backend] = {}
            for size in sizes:
                with make(size) as url:
                    results[backend][size] = measure(url, backend, size, reps, org)
    return results


def report(results: dict, sizes: list[int]) -> str:
    lines = []
    names = [*QUERIES, "verify", "links"]
    for backend, rows in results.items():
        lines.append(f"\n{backend}")
        header = f"{'measure':18}" + "".join(f"{f'{s:,} events':>26}" for s in sizes) + f"{'ratio':>9}"
        lines.append(header)
        for name in names:
            cells = []
            for size in sizes:
                m = rows[size][name]
                cells.append(f"{m['median_ms']:9.1f} ms (p90 {m['p90_ms']:7.1f}) {m['rows']:>5}")
            ratio = rows[sizes[-1]][name]["median_ms"] / max(rows[sizes[0]][name]["median_ms"], 1e-9)
            lines.append(f"{name:18}" + "".join(f"{c:>26}" for c in cells) + f"{ratio:8.2f}x")
        lines.append(f"(cells: median, p90 and rows answered; ratio: median at {sizes[-1]:,} / at {sizes[0]:,})")
        for name, steps in rows[sizes[-1]]["plan"].items():
            lines.append(f"plan of {name} at {sizes[-1]:,} events:")
            lines += [f"  {step}" for step in steps]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="record sizes in events (default 10000,100000)")
    p.add_argument("--reps", type=int, default=5, help="timed runs per query and size (default 5)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    pg_url = os.environ.get("PMOFLOW_BENCH_PG_URL") or os.environ.get("PMOFLOW_TEST_PG_URL")
    results = run(sizes, args.reps, pg_url)
    print(report(results, sizes))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
