"""The REST API under load: a real Uvicorn on PostgreSQL, simulated staff working their inboxes through it.

Run:  PMOFLOW_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test python bench/web_load.py
      python bench/web_load.py --seconds 10 --samples 20 --quick-inbox      # a smoke run
      make bench-web

Everything runs in a PostgreSQL schema of its own (dropped after). The server is Uvicorn serving
`pmoflow.engine.web.app:app_from_env` (what `pmoflow serve --workers N` runs) in its own OS processes, without
an access log; clients authenticate with personal API tokens. Three measurements, printed in one run:

1. **complete, API over Python API.** One client at a time, nothing else running: `POST /tasks/{id}/complete`
   (with the If-Match read by an untimed `GET /tasks/{id}`) against `Pmoflow.complete(task_id)` called in this
   process, on two sets of instances of the same looping process, interleaved; the first round of each is a
   warm-up (it fills each process's cache of deserialized workflows) and is not counted. Ratio of medians.
2. **load.** `--staff` simulated staff (asyncio tasks sharing one httpx client) loop for `--seconds`:
   inbox (`GET /tasks?limit=50`) -> open a task picked at random (`GET /tasks/{id}`, its ETag) -> complete it
   (`POST .../complete` with If-Match). Staff share the role whose tasks they take, so two of them sometimes pick
   the same task: the loser gets 409 (taken) or 412 (the instance moved on since it was opened); both are the
   API saying "someone else was first", counted apart from errors. Throughput is completed tasks per second.
3. **inbox at 1,000 and 100,000 open tasks.** Open tasks are generated with bulk SQL (instances, tasks and
   candidates rows made by `INSERT ... SELECT generate_series`, no workflow state: an inbox reads the task
   projection only), 80% of them offered to the role Staff and 20% to the role Reviewer. Median of `GET /tasks`
   (its first page: 100 tasks, a full page at both sizes) for a staff member (whose inbox holds most open tasks)
   and a reviewer (a fifth of them, spread among the rest), and the same call through the Python API.

Times are wall-clock on a shared machine; the script reports medians and p95s and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from pmoflow.engine import organisation
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import scratch_schema
from pmoflow.engine.services.installation import load_people

BPMN = Path(__file__).resolve().parent / "web_load.bpmn"
PROCESS_ID = "bench_web_staff"
ADMIN = "bench.admin"
REVIEWER = "bench.reviewer"
LIMIT = 10**9  # the loop's `limit`: never reached
PG_ENV = ("PMOFLOW_BENCH_PG_URL", "PMOFLOW_TEST_PG_URL")
SECRET = "bench-web-load-secret-" + "k" * 32


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ms(samples: list[float]) -> dict[str, Any]:
    """n, median and p95 (nearest rank) in milliseconds."""
    if not samples:
        return {"n": 0, "median_ms": None, "p95_ms": None}
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"n": len(ordered), "median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(p95 * 1000, 2)}


def staff_names(count: int) -> list[str]:
    return [f"staff{n:02d}" for n in range(1, count + 1)]


def organisation_file(folder: Path, staff: list[str]) -> Path:
    people = [(ADMIN, ["PMO Administrator", "Staff"]), (REVIEWER, ["Reviewer"])] + [(s, ["Staff"]) for s in staff]
    path = folder / "org.toml"
    path.write_text("".join(f'[[users]]\nname = "{name}"\nroles = {json.dumps(roles)}\n\n' for name, roles in people))
    return path


# -- set-up ---------------------------------------------------------------------------------------------------

def prepare(url: str, staff: list[str], instances: int, folder: Path) -> tuple[Pmoflow, dict[str, str], list[int]]:
    """Schema, organisation, the looping process deployed, `instances` started (each waits at its task), and an
    API token per user. Not timed."""
    pmo = Pmoflow(url, user=ADMIN, handlers={})
    pmo.db.upgrade()
    with pmo.db.transaction() as session:
        load_people(session, organisation.load(organisation_file(folder, staff)))
    pmo.deploy([BPMN])
    started = [pmo.start(PROCESS_ID, {"limit": LIMIT})["instance_id"] for _ in range(instances)]
    tokens = {user: pmo.acting_as(user).create_token("bench")["token"] for user in [ADMIN, REVIEWER, *staff]}
    return pmo, tokens, started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def uvicorn_server(url: str, workers: int):
    """Uvicorn serving the app on a free port of 127.0.0.1 in `workers` processes; yields the base URL."""
    port = free_port()
    env = {**os.environ, "PMOFLOW_DB": url, "PMOFLOW_SECRET_KEY": SECRET}
    command = [sys.executable, "-m", "uvicorn", "pmoflow.engine.web.app:app_from_env", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
               "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server stopped: {process.stderr.read()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up in 180 s")
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def open_task_of(pmo: Pmoflow, instance_id: int) -> int:
    [task] = [t["id"] for t in pmo.tasks(all_tasks=True, process=PROCESS_ID, limit=1000)
              if t["instance_id"] == instance_id]
    return task


# -- 1. complete: the API against the Python API --------------------------------------------------------------

def complete_ratio(base: str, pmo: Pmoflow, token: str, python_set: list[int], api_set: list[int],
                   samples: int) -> dict[str, Any]:
    me = pmo.acting_as(staff_names(1)[0])
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    timed: dict[str, list[float]] = {"api": [], "python": []}
    rounds = math.ceil(samples / len(python_set)) + 1
    try:
        for round_number in range(rounds):
            for python_id, api_id in zip(python_set, api_set, strict=True):
                task_id = open_task_of(pmo, python_id)
                t0 = time.perf_counter()
                me.complete(task_id, {})
                python_s = time.perf_counter() - t0

                task_id = open_task_of(pmo, api_id)
                etag = client.get(f"/api/v1/tasks/{task_id}").headers["etag"]
                t0 = time.perf_counter()
                answer = client.post(f"/api/v1/tasks/{task_id}/complete", json={"data": {}},
                                     headers={"If-Match": etag})
                api_s = time.perf_counter() - t0
                if answer.status_code != 200:
                    raise RuntimeError(f"API complete: {answer.status_code} {answer.text}")
                if round_number:  # the first round fills each process's workflow cache
                    timed["python"].append(python_s)
                    timed["api"].append(api_s)
    finally:
        client.close()
    python, api = ms(timed["python"]), ms(timed["api"])
    return {"python": python, "api": api, "ratio": round(api["median_ms"] / python["median_ms"], 2)}


# -- 2. load --------------------------------------------------------------------------------------------------

async def one_member(client: httpx.AsyncClient, token: str, deadline: float, times: dict[str, list[float]],
                     statuses: dict[str, Counter], rng: random.Random) -> None:
    headers = {"Authorization": f"Bearer {token}"}

    async def call(kind: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        t0 = time.perf_counter()
        response = await client.request(method, path, headers={**headers, **kwargs.pop("extra", {})}, **kwargs)
        times[kind].append(time.perf_counter() - t0)
        statuses[kind][response.status_code] += 1
        return response

    while time.monotonic() < deadline:
        inbox = await call("inbox", "GET", "/api/v1/tasks", params={"limit": 50})
        tasks = inbox.json() if inbox.status_code == 200 else []
        if not tasks:
            await asyncio.sleep(0.05)
            continue
        task_id = rng.choice(tasks)["id"]
        opened = await call("open", "GET", f"/api/v1/tasks/{task_id}")
        if opened.status_code != 200:
            continue
        await call("complete", "POST", f"/api/v1/tasks/{task_id}/complete", json={"data": {}},
                   extra={"If-Match": opened.headers["etag"]})


def completed_in_database(pmo: Pmoflow) -> int:
    with pmo.db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM human_tasks WHERE state = 'completed'")).scalar_one()


async def load(base: str, tokens: list[str], seconds: float) -> dict[str, Any]:
    times: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter] = defaultdict(Counter)
    limits = httpx.Limits(max_connections=len(tokens) + 4, max_keepalive_connections=len(tokens) + 4)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(one_member(client, token, deadline, times, statuses, random.Random(n))
                               for n, token in enumerate(tokens)))
        elapsed = time.monotonic() - started
    completed = statuses["complete"][200]
    everything = [t for kind in times for t in times[kind]]
    lost = {code: sum(statuses[kind][code] for kind in statuses) for code in (409, 412)}
    errors = {f"{kind} {code}": n for kind in statuses for code, n in statuses[kind].items()
              if code not in (200, 409, 412)}
    return {"staff": len(tokens), "seconds": round(elapsed, 1), "completed": completed,
            "completed_per_s": round(completed / elapsed, 2),
            "requests_per_s": round(len(everything) / elapsed, 2),
            "latency": {"all": ms(everything), **{kind: ms(times[kind]) for kind in ("inbox", "open", "complete")}},
            "conflicts_409": lost[409], "stale_412": lost[412], "errors_other": errors,
            "statuses": {kind: dict(counter) for kind, counter in statuses.items()}}


# -- 3. the inbox at 1,000 and 100,000 open tasks -------------------------------------------------------------

def fill_to(pmo: Pmoflow, open_tasks: int) -> int:
    """Bulk-insert instances, tasks and candidates until `open_tasks` tasks are open; returns how many were
    added. 1 in 5 is offered to the role Reviewer, the rest to Staff."""
    with pmo.db.engine.begin() as conn:
        now_open = conn.execute(text("SELECT count(*) FROM human_tasks WHERE state = 'ready'")).scalar_one()
        missing = open_tasks - now_open
        if missing <= 0:
            return 0
        definition = conn.execute(text("SELECT id FROM process_definitions WHERE process_id = :p"),
                                  {"p": PROCESS_ID}).scalar_one()
        last_instance = conn.execute(text("SELECT coalesce(max(id), 0) FROM process_instances")).scalar_one()
        last_task = conn.execute(text("SELECT coalesce(max(id), 0) FROM human_tasks")).scalar_one()
        conn.execute(text(
            "INSERT INTO process_instances (definition_id, process_id, version, status, started_by, started_at, "
            "updated_at, state, last_seq, last_hash, lock_version) "
            "SELECT :d, :p, 1, 'running', :u, now(), now(), '{}', 0, '', 1 FROM generate_series(1, :n)"),
            {"d": definition, "p": PROCESS_ID, "u": ADMIN, "n": missing})
        conn.execute(text(
            "INSERT INTO human_tasks (instance_id, process_id, spiff_task_id, bpmn_id, name, lane, instructions, "
            "state, created_at) SELECT id, :p, md5(id::text)::uuid::text, 'work', 'Do the work', 'Staff', '', "
            "'ready', now() FROM process_instances WHERE id > :last ORDER BY id"),
            {"p": PROCESS_ID, "last": last_instance})
        conn.execute(text(
            "INSERT INTO task_candidates (task_id, kind, name) SELECT id, 'role', "
            "CASE WHEN id % 5 = 0 THEN 'Reviewer' ELSE 'Staff' END FROM human_tasks WHERE id > :last"),
            {"last": last_task})
    with pmo.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("process_instances", "human_tasks", "task_candidates"):
            conn.execute(text(f"ANALYZE {table}"))
    return missing


def inbox_times(base: str, pmo: Pmoflow, tokens: dict[str, str], users: dict[str, str],
                samples: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for label, user in users.items():
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens[user]}"}, timeout=60) as client:
            over_http, in_process, size = [], [], 0
            view = pmo.acting_as(user)
            for n in range(samples + 2):
                t0 = time.perf_counter()
                answer = client.get("/api/v1/tasks")
                http_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                page = view.tasks(limit=100)
                python_s = time.perf_counter() - t0
                if answer.status_code != 200:
                    raise RuntimeError(f"inbox: {answer.status_code} {answer.text}")
                size = len(answer.json())
                if n >= 2:  # warm-up
                    over_http.append(http_s)
                    in_process.append(python_s)
            result[label] = {"page": size, "api": ms(over_http), "python": ms(in_process), "python_page": len(page)}
    return result


def inbox_scaling(base: str, pmo: Pmoflow, tokens: dict[str, str], sizes: tuple[int, int],
                  samples: int) -> dict[str, Any]:
    users = {"staff": staff_names(1)[0], "reviewer": REVIEWER}
    found = {}
    for size in sizes:
        t0 = time.perf_counter()
        added = fill_to(pmo, size)
        log(f"inbox: {added} open tasks added in {time.perf_counter() - t0:.1f} s ({size} open)")
        found[size] = inbox_times(base, pmo, tokens, users, samples)
    small, large = sizes
    ratios = {label: {way: round(found[large][label][way]["median_ms"] / found[small][label][way]["median_ms"], 2)
                      for way in ("api", "python")} for label in users}
    return {"sizes": found, "ratios": ratios}


# -- the run --------------------------------------------------------------------------------------------------

def print_report(result: dict[str, Any]) -> None:
    ratio, loaded, inbox = result["complete"], result["load"], result["inbox"]
    print(f"\n## bench/web_load.py on PostgreSQL, {result['workers']} server process(es), {result['when']}")
    print("\ncomplete, one client, nothing else running (median / p95 ms):")
    print(f"  Python API Pmoflow.complete  {ratio['python']['median_ms']:8.1f} / {ratio['python']['p95_ms']:.1f}"
          f"  (n={ratio['python']['n']})")
    print(f"  REST API POST .../complete   {ratio['api']['median_ms']:8.1f} / {ratio['api']['p95_ms']:.1f}"
          f"  (n={ratio['api']['n']})")
    print(f"  ratio of medians API / Python: {ratio['ratio']}  (target <= 1.5)")
    print(f"\nload: {loaded['staff']} staff for {loaded['seconds']} s: {loaded['completed']} tasks completed = "
          f"{loaded['completed_per_s']}/s, {loaded['requests_per_s']} requests/s")
    for kind, figures in loaded["latency"].items():
        print(f"  {kind:9} p50 {figures['median_ms']} ms  p95 {figures['p95_ms']} ms  (n={figures['n']})")
    print(f"  lost races: 409 {loaded['conflicts_409']}, 412 {loaded['stale_412']}; "
          f"other errors: {loaded['errors_other'] or 0}  (target 0)")
    print(f"  tasks the database holds completed meanwhile: {loaded['completed_in_database']} "
          f"(answered 200: {loaded['completed']})")
    small, large = sorted(inbox["sizes"])
    print(f"\ninbox, first page of GET /tasks (median ms) at {small:,} and {large:,} open tasks:")
    for label in inbox["ratios"]:
        a, b = inbox["sizes"][small][label], inbox["sizes"][large][label]
        print(f"  {label:8} API {a['api']['median_ms']} -> {b['api']['median_ms']} "
              f"(x{inbox['ratios'][label]['api']}); Python API {a['python']['median_ms']} -> "
              f"{b['python']['median_ms']} (x{inbox['ratios'][label]['python']}); page {a['page']} -> {b['page']}")
    print("  target: x <= 1.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--staff", type=int, default=20, help="simulated staff (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load (default 30)")
    parser.add_argument("--instances", type=int, default=200, help="looping instances the staff work on")
    parser.add_argument("--samples", type=int, default=60, help="timed completes of each kind (default 60)")
    parser.add_argument("--inbox-samples", type=int, default=30, help="timed inbox calls per size (default 30)")
    parser.add_argument("--workers", type=int, default=1, help="Uvicorn worker processes (default 1)")
    parser.add_argument("--quick-inbox", action="store_true", help="1,000 and 10,000 open tasks instead")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    url = next((os.environ[name] for name in PG_ENV if os.environ.get(name)), None)
    if url is None:
        sys.exit("set PMOFLOW_BENCH_PG_URL (or PMOFLOW_TEST_PG_URL) to a PostgreSQL server, e.g. "
                 "postgresql://postgres@127.0.0.1:5432/test")
    staff = staff_names(args.staff)
    sizes = (1000, 10_000) if args.quick_inbox else (1000, 100_000)
    with tempfile.TemporaryDirectory() as folder, scratch_schema(url, "bench_web") as schema_url:
        log("setting up: schema, organisation, process, instances, tokens")
        pmo, tokens, started = prepare(schema_url, staff, args.instances + 16, Path(folder))
        try:
            with uvicorn_server(schema_url, args.workers) as base:
                log(f"server up at {base}; complete: API against Python API")
                ratio = complete_ratio(base, pmo, tokens[staff[0]], started[:8], started[8:16], args.samples)
                log(f"load: {args.staff} staff for {args.seconds} s")
                before = completed_in_database(pmo)
                loaded = asyncio.run(load(base, [tokens[s] for s in staff], args.seconds))
                loaded["completed_in_database"] = completed_in_database(pmo) - before
                log("inbox at two sizes")
                inbox = inbox_scaling(base, pmo, tokens, sizes, args.inbox_samples)
        finally:
            pmo.close()
    result = {"when": time.strftime("%Y-%m-%d %H:%M"), "workers": args.workers, "complete": ratio, "load": loaded,
              "inbox": inbox}
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
