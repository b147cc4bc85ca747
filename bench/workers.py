"""Due timers fired per second by one and by two worker processes on PostgreSQL, and whether each fired once.

Run:  PMOFLOW_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python bench/workers.py
      [--timers 300] [--repeat 3] [--quiet-wait SECONDS] [--quick] [--no-cli] [--json FILE]
      PMOFLOW_BENCH_PG_URL=... make bench-workers     (the figures in docs/performance.md)
      (PMOFLOW_TEST_PG_URL is read too; the script needs PostgreSQL: SQLite serialises writers.)

Each measurement gets a fresh PostgreSQL schema (dropped afterwards): `Pmoflow.init` with a one-user
organisation, the process below deployed, and --timers instances started, each waiting on a one-day timer.
The workers then run as of two days later (`--now`), so every timer is due. Setting up is not timed.

Two ways of running the workers, each with one and with two worker OS processes:

* **pass** (the headline figure): each worker is this script in `--child` mode. It imports pmoflow, opens the
  API object, runs the schema check (which opens the first connection), says it is ready, and waits. When
  every worker is ready the parent says go; each runs one `Pmoflow.run_due(now)` pass (what
  `pmoflow worker --once` runs) and reports. Timed: from go until the last worker has reported. Interpreter
  start-up, imports and connecting are *not* in it: this is a long-running worker's throughput.
* **cli**: `pmoflow --db URL worker --once --now T --json` processes, started together. Timed: from starting
  the first until the last has exited, so interpreter start-up, imports and connecting *are* in it. Its
  start-up alone is measured too: the same command when nothing is due.

One `run_due` pass drains everything even with two workers: each lists the due instances and fires them one
per transaction after `SELECT ... FOR UPDATE SKIP LOCKED`, skipping an instance another worker holds or has
already fired. After each measurement the script counts `timer_fired` audit events per instance: the share
fired exactly once must be 100%; a timer fired twice, or not at all, is printed with its instance and the
exit code is 1. It also checks that every instance completed, that no worker reported an error, and that the
audit hash chains verify, and shows how the firings split between the workers. In pass mode each worker also
counts its lock attempts that found the instance taken or already fired by the other (both walk the same list).

The machine is shared: for each measurement the script records how busy all its CPUs were (every process
counted, from /proc/stat) in the second before the timed section and during it, so that a run on a machine
already saturated by other jobs shows as such.

For comparison, **bare SpiffWorkflow** in memory fires the same timer: deserialize_json -> refresh_timers ->
do_engine_steps -> serialize_json (SPIFF_CONFIG serializer). The process is parsed by SpiffWorkflow's own
parser; pmoflow's clock is used only to start that workflow two days back, so that its timer is due.

Repetitions of the four configurations are interleaved; the script prints medians and ratios and asserts
nothing about the times. PMOFLOW_CHECK_STATE (the tests' full-dump guard on every save) is switched off,
so the workers run as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from sqlalchemy import func, select, text

from pmoflow.engine import api, clock
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import scratch_schema
from pmoflow.engine.models import Event, ProcessInstance

PROCESS_ID = "bench_wait_a_day"
# The process of tests/fixtures/workers/wait_a_day.bpmn: wait one day, run a one-line script, end.
BPMN = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="bench_wait_defs"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="{PROCESS_ID}" name="Wait a day, then count" isExecutable="true">
    <bpmn:startEvent id="wait_start"><bpmn:outgoing>w1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="one_day" name="One day later">
      <bpmn:incoming>w1</bpmn:incoming><bpmn:outgoing>w2</bpmn:outgoing>
      <bpmn:timerEventDefinition><bpmn:timeDuration>"P1D"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:scriptTask id="count" name="Count the firing"><bpmn:incoming>w2</bpmn:incoming>
      <bpmn:outgoing>w3</bpmn:outgoing><bpmn:script>fired = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="wait_end"><bpmn:incoming>w3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="w1" sourceRef="wait_start" targetRef="one_day" />
    <bpmn:sequenceFlow id="w2" sourceRef="one_day" targetRef="count" />
    <bpmn:sequenceFlow id="w3" sourceRef="count" targetRef="wait_end" />
  </bpmn:process>
</bpmn:definitions>
"""
USER = "bench"
ORG_TOML = f'[[users]]\nname = "{USER}"\nroles = ["PMO Administrator"]\n'
PG_ENV = ("PMOFLOW_BENCH_PG_URL", "PMOFLOW_TEST_PG_URL")
PMOFLOW = Path(sys.executable).parent / "pmoflow"
MODES = ("pass", "cli")
WORKER_COUNTS = (1, 2)
QUIET = 0.2  # a machine less busy than this (all CPUs, every process) counts as idle
WORKER_TIMEOUT = 900.0  # seconds; a worker still running then is killed and the run reported as failed


def log(message: str) -> None:
    """Progress goes to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, every process counted; None off Linux. The machine is
    shared: this shows whether the cores were free for the workers or taken by something else."""
    try:
        # user nice system idle iowait irq softirq steal (guest time is counted in user already)
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def background_busy(seconds: float = 1.0) -> float | None:
    """How busy the machine is without the workers working: sampled just before the timed section."""
    before = cpu_ticks()
    time.sleep(seconds)
    return busy_share(before, cpu_ticks())


# -- the worker child -----------------------------------------------------------------------------------


def child(url: str, now_text: str) -> int:
    """One worker: get everything but the firing out of the way, then fire on the parent's word."""
    app = Pmoflow(url)
    app.db.check_schema()  # opens the first connection and checks the schema version, as any command would
    now = datetime.fromisoformat(now_text)
    attempts = Counter()
    fire = getattr(app, "_fire", None)
    if fire is not None:  # count the instances this worker tried and found taken or already fired (private seam)
        def counted(instance_id: int, cutoff: datetime) -> str | None:
            result = fire(instance_id, cutoff)
            attempts["fired" if result is not None else "lost"] += 1
            return result

        app._fire = counted
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    wall, cpu = time.perf_counter(), time.process_time()
    result = app.run_due(now)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"fired": result["fired"], "errors": result["errors"], "seconds": wall, "cpu_seconds": cpu,
                      "lost": attempts["lost"] if fire is not None else None,
                      "process": f"{socket.gethostname()}:{os.getpid()}"}), flush=True)
    app.close()
    return 0


# -- set-up and checks ----------------------------------------------------------------------------------


def prepare(url: str, folder: Path, timers: int) -> datetime:
    """Initialise the schema, deploy the process and start `timers` instances; returns a time all are due."""
    app = Pmoflow(url, user=USER)
    try:
        app.init(folder / "org.toml")
        app.deploy([folder / "wait_a_day.bpmn"])
        for _ in range(timers):
            app.start(PROCESS_ID, {})
        with app.db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # planner statistics now, rather than autovacuum mid-measurement
    finally:
        app.close()
    return datetime.now(UTC) + timedelta(days=2)


@dataclass
class Outcome:
    """What one measurement did: its time and everything needed to judge exactly-once."""

    mode: str
    workers: int
    timers: int
    seconds: float
    worker_seconds: list[float] = field(default_factory=list)
    worker_cpu_seconds: list[float] = field(default_factory=list)
    lost: int | None = None  # lock attempts that found the instance taken or already fired by another worker
    machine_busy: float | None = None  # share of all the machine's CPU time busy during the timed section
    background: float | None = None  # the same share in the second before it, the workers idle
    load_before: float | None = None  # 1-minute load average when the measurement started
    fired_once: int = 0
    problems: list[str] = field(default_factory=list)
    split: dict[str, int] = field(default_factory=dict)  # firing process -> timers it fired
    rep: int = 0

    @property
    def per_second(self) -> float:
        return self.timers / self.seconds


def check(url: str, outcome: Outcome, reported: list[dict[str, Any]]) -> None:
    """Count timer_fired events per instance in the database and compare with what the workers said."""
    app = Pmoflow(url, user=USER)
    try:
        with app.db.engine.connect() as conn:
            ids = list(conn.scalars(select(ProcessInstance.id).where(ProcessInstance.process_id == PROCESS_ID)))
            status = Counter(conn.scalars(select(ProcessInstance.status)
                                          .where(ProcessInstance.process_id == PROCESS_ID)))
            fired = dict(conn.execute(select(Event.instance_id, func.count()).where(Event.type == "timer_fired")
                                      .group_by(Event.instance_id)).all())
            by_process = Counter(p["process"] for p in conn.scalars(select(Event.payload)
                                                                   .where(Event.type == "timer_fired")))
        verified = app.verify()
    finally:
        app.close()
    outcome.split = dict(by_process)
    outcome.fired_once = sum(1 for i in ids if fired.get(i) == 1)
    if len(ids) != outcome.timers:
        outcome.problems.append(f"{len(ids)} instances of {PROCESS_ID}, expected {outcome.timers}")
    missed = sorted(i for i in ids if i not in fired)
    twice = {i: n for i, n in fired.items() if n != 1}
    if missed:
        outcome.problems.append(f"{len(missed)} timer(s) never fired: instances {missed}")
    if twice:
        outcome.problems.append(f"{len(twice)} timer(s) fired more than once (instance: times): {twice}")
    if status != Counter({"completed": len(ids)}):
        outcome.problems.append(f"instance statuses {dict(status)}, expected all completed")
    said = Counter(i for r in reported for i in r.get("fired", []))
    errors = [i for r in reported for i in r.get("errors", [])]
    if errors:
        outcome.problems.append(f"workers reported instances in error: {errors}")
    if said and (set(said) != set(ids) or max(said.values()) != 1):
        outcome.problems.append(f"workers reported firing {sum(said.values())} times for {len(said)} instances")
    if not verified["ok"]:
        outcome.problems.append(f"audit verify failed: {verified}")


# -- running the workers --------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PMOFLOW_CHECK_STATE", None)
    return env


def run_pass(url: str, now: datetime, workers: int, timers: int) -> tuple[Outcome, list[dict[str, Any]]]:
    """Worker children that are ready before the clock starts; timed from go to the last report."""
    script = str(Path(__file__).resolve())
    procs = [subprocess.Popen([sys.executable, script, "--child", url, now.isoformat()], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for _ in range(workers)]
    try:
        for proc in procs:
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"worker did not start: {line!r} {proc.stderr.read()}")
        background = background_busy()
        ticks, start = cpu_ticks(), time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reported = []
        for proc in procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker died: {proc.stderr.read()}")
            reported.append(json.loads(line))
        elapsed, busy = time.perf_counter() - start, busy_share(ticks, cpu_ticks())
        for proc in procs:
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"worker exited with {proc.returncode}: {proc.stderr.read()}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lost = [r.get("lost") for r in reported]
    outcome = Outcome("pass", workers, timers, elapsed, [r["seconds"] for r in reported],
                      [r["cpu_seconds"] for r in reported], None if None in lost else sum(lost), busy, background)
    return outcome, reported


def run_cli(url: str, now: datetime, workers: int, timers: int) -> tuple[Outcome, list[dict[str, Any]]]:
    """`pmoflow worker --once` processes started together; timed from the first start to the last exit."""
    command = [str(PMOFLOW), "--db", url, "worker", "--once", "--now", now.isoformat(), "--json"]
    background = background_busy()
    ticks, start = cpu_ticks(), time.perf_counter()
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for _ in range(workers)]
    try:
        outputs = [proc.communicate(timeout=WORKER_TIMEOUT) for proc in procs]
        elapsed, busy = time.perf_counter() - start, busy_share(ticks, cpu_ticks())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reported = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"pmoflow worker exited with {proc.returncode}: {out} {err}")
        reported.append(json.loads(out))
    return Outcome("cli", workers, timers, elapsed, machine_busy=busy, background=background), reported


def cli_startup(url: str, now: datetime) -> float:
    """`pmoflow worker --once` when nothing is due: interpreter start-up, imports, connecting, one empty pass."""
    earlier = (now - timedelta(days=3)).isoformat()
    start = time.perf_counter()
    done = subprocess.run([str(PMOFLOW), "--db", url, "worker", "--once", "--now", earlier, "--json"],
                          capture_output=True, text=True, env=child_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"pmoflow worker exited with {done.returncode}: {done.stdout} {done.stderr}")
    return elapsed


def wait_for_quiet(max_wait: float) -> None:
    """On a shared machine, give other jobs up to `max_wait` seconds to leave the CPUs idle."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        busy = background_busy()
        if busy is None or busy < QUIET:
            return
    log(f"  the machine stayed busy for {max_wait:.0f} s: measuring anyway")


def measure(base_url: str, folder: Path, mode: str, workers: int, timers: int,
            quiet_wait: float) -> tuple[Outcome, float | None]:
    """One measurement on a schema of its own; the start-up probe runs on it afterwards (cli mode only)."""
    with scratch_schema(base_url, "bench") as url:
        t0 = time.perf_counter()
        now = prepare(url, folder, timers)
        log(f"  set up {timers} due timers in {time.perf_counter() - t0:.1f} s")
        if quiet_wait > 0:
            wait_for_quiet(quiet_wait)
        runner = run_pass if mode == "pass" else run_cli
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        outcome, reported = runner(url, now, workers, timers)
        outcome.load_before = load
        check(url, outcome, reported)
        startup = cli_startup(url, now) if mode == "cli" else None
    return outcome, startup


# -- bare SpiffWorkflow ---------------------------------------------------------------------------------


def bare_spiff(folder: Path, samples: int) -> dict[str, float]:
    """Median seconds of firing one due timer with SpiffWorkflow alone, in memory, by phase."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(folder / "wait_a_day.bpmn"))
    spec, subprocess_specs = parser.get_spec(PROCESS_ID), parser.get_subprocess_specs(PROCESS_ID)
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
    with clock.timers_at(datetime.now(UTC) - timedelta(days=2)):  # started two days ago: its timer is due
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.do_engine_steps()
    if workflow.is_completed():
        raise RuntimeError("the bare workflow did not wait at its timer")
    state = serializer.serialize_json(workflow)
    phases: dict[str, list[float]] = {"total": [], "deserialize": [], "fire": [], "serialize": []}
    for _ in range(samples):
        t0 = time.perf_counter()
        workflow = serializer.deserialize_json(state)
        t1 = time.perf_counter()
        workflow.refresh_timers()
        workflow.do_engine_steps()
        t2 = time.perf_counter()
        serializer.serialize_json(workflow)
        t3 = time.perf_counter()
        if not workflow.is_completed():
            raise RuntimeError("the bare timer did not fire")
        for name, value in (("total", t3 - t0), ("deserialize", t1 - t0), ("fire", t2 - t1), ("serialize", t3 - t2)):
            phases[name].append(value)
    return {name: statistics.median(values) for name, values in phases.items()}


# -- report ---------------------------------------------------------------------------------------------


def percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def table(outcomes: list[Outcome]) -> tuple[list[str], dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """One row per mode and worker count, then the two-vs-one ratios; also returns the medians."""
    lines = [f"{'mode':6}{'workers':>8}{'runs':>5}{'timers/s median':>17}{'min-max':>15}{'ms/timer':>10}"
             f"{'worker CPU ms/timer':>21}{'busy before/during':>20}{'exactly once':>14}"]
    medians: dict[tuple[str, int], float] = {}
    cpu_medians: dict[tuple[str, int], float] = {}
    for mode in MODES:
        for workers in WORKER_COUNTS:
            runs = [o for o in outcomes if o.mode == mode and o.workers == workers]
            if not runs:
                continue
            rates = [o.per_second for o in runs]
            medians[mode, workers] = rate = statistics.median(rates)
            cpu = [sum(o.worker_cpu_seconds) / o.timers * 1000 for o in runs if o.worker_cpu_seconds]
            if cpu:
                cpu_medians[mode, workers] = statistics.median(cpu)
            cpu_text = f"{cpu_medians[mode, workers]:.1f}" if cpu else "-"
            busy_text = (f"{percent(median_of([o.background for o in runs]))}/"
                         f"{percent(median_of([o.machine_busy for o in runs]))}")
            once = sum(o.fired_once for o in runs) / sum(o.timers for o in runs)
            lines.append(f"{mode:6}{workers:>8}{len(runs):>5}{rate:>17.1f}{f'{min(rates):.1f}-{max(rates):.1f}':>15}"
                         f"{1000 / rate:>10.1f}{cpu_text:>21}{busy_text:>20}{once:>14.2%}")
    for mode in MODES:
        if (mode, 1) in medians and (mode, 2) in medians:
            pairs = [(a, b) for a in outcomes for b in outcomes if a.mode == b.mode == mode and a.rep == b.rep
                     and (a.workers, b.workers) == (1, 2)]
            paired = f"; {statistics.median(b.per_second / a.per_second for a, b in pairs):.2f}x (median of the " \
                     f"ratios within each of {len(pairs)} repetitions)" if pairs else ""
            lines.append(f"{mode}: two workers / one worker = {medians[mode, 2] / medians[mode, 1]:.2f}x "
                         f"(ratio of the medians){paired}")
    return lines, medians, cpu_medians


def report(outcomes: list[Outcome], startups: list[float], bare: dict[str, float], timers: int, repeat: int) -> str:
    lines = [f"{timers} due timers per measurement, {repeat} repetition(s) of each configuration; "
             f"{os.cpu_count()} CPUs; PostgreSQL on the same machine; engine {Path(api.__file__).parent}", "",
             "all runs:"]
    rows, medians, cpu_medians = table(outcomes)
    lines += rows
    basis = ""
    idle = [o for o in outcomes if o.background is not None and o.background < QUIET]
    if idle and len(idle) < len(outcomes):
        lines += ["", f"only the runs that started on an idle machine (under {QUIET:.0%} busy in the second before):"]
        rows, idle_medians, idle_cpu = table(idle)
        lines += rows
        if ("pass", 1) in idle_medians:  # the per-timer cost below, from runs that had a core to themselves
            medians, cpu_medians, basis = idle_medians, idle_cpu, " (idle runs)"
    lines += ["(busy: median share of the machine's CPU time busy, every process counted, other jobs included: in "
              "the second before the timed section, and during it)", ""]
    if startups:
        lines.append(f"cli: start-up of `pmoflow worker --once` with nothing due: median "
                     f"{statistics.median(startups):.2f} s over {len(startups)} runs (included in the cli times)")
    lines.append(f"bare SpiffWorkflow, one timer in memory: {bare['total'] * 1000:.2f} ms median "
                 f"(deserialize {bare['deserialize'] * 1000:.2f}, refresh_timers + do_engine_steps "
                 f"{bare['fire'] * 1000:.2f}, serialize {bare['serialize'] * 1000:.2f})")
    if ("pass", 1) in medians:
        per_timer = 1 / medians["pass", 1]
        cpu = cpu_medians.get(("pass", 1))
        cpu_text = f"; its own CPU {cpu:.1f} ms = {cpu / 1000 / bare['total']:.1f}x" if cpu else ""
        lines.append(f"pass, one worker, per timer{basis}: {per_timer * 1000:.1f} ms wall = "
                     f"{per_timer / bare['total']:.1f}x bare SpiffWorkflow{cpu_text} (on top of bare: reading and "
                     f"locking the row, audit events, the timer index, writing the state, commit)")
    lost = [o.lost for o in outcomes if o.mode == "pass" and o.workers == 2 and o.lost is not None]
    if lost:
        lines.append(f"pass, two workers: lock attempts that found the instance taken or already fired by the other "
                     f"worker: median {statistics.median(lost):.0f} per {timers} timers (each one a transaction)")
    splits = [o for o in outcomes if o.workers == 2]
    if splits:
        shares = [f"{min(o.split.values(), default=0)}/{o.timers}" for o in splits]
        lines.append(f"two workers, timers fired by the less busy one: {', '.join(shares)}")
    problems = [(o, p) for o in outcomes for p in o.problems]
    lines.append("")
    if problems:
        lines.append("PROBLEMS (exactly-once or completion violated):")
        lines += [f"  {o.mode}, {o.workers} worker(s): {p}" for o, p in problems]
    else:
        lines.append(f"exactly once: every timer of every measurement fired exactly once "
                     f"({sum(o.fired_once for o in outcomes)}/{sum(o.timers for o in outcomes)}); all instances "
                     f"completed; no worker errors; audit chains verify")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timers", type=int, default=300, help="due timers per measurement (default 300)")
    p.add_argument("--repeat", type=int, default=3, help="measurements per configuration (default 3)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 60 timers, one repetition")
    p.add_argument("--no-cli", action="store_true", help="skip the `pmoflow worker --once` measurements")
    p.add_argument("--bare-samples", type=int, default=300, help="bare SpiffWorkflow samples (default 300)")
    p.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                   help=f"before each measurement, wait up to this long for the machine to be under {QUIET:.0%} "
                        f"busy (default 0: do not wait)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.timers, args.repeat, args.bare_samples = 60, 1, 50
    base_url = next((os.environ[k] for k in PG_ENV if os.environ.get(k)), None)
    if not base_url:
        p.error(f"set {' or '.join(PG_ENV)} to a PostgreSQL URL, e.g. postgresql://postgres@127.0.0.1:5432/test")
    if os.environ.pop("PMOFLOW_CHECK_STATE", None):
        log("PMOFLOW_CHECK_STATE unset for this run: workers save as in production")
    modes = ("pass",) if args.no_cli else MODES
    outcomes: list[Outcome] = []
    startups: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "org.toml").write_text(ORG_TOML)
        (folder / "wait_a_day.bpmn").write_text(BPMN)
        bare = bare_spiff(folder, args.bare_samples)
        for rep in range(args.repeat):
            for mode in modes:
                for workers in WORKER_COUNTS:
                    log(f"repetition {rep + 1}/{args.repeat}: {mode}, {workers} worker(s)")
                    outcome, startup = measure(base_url, folder, mode, workers, args.timers, args.quiet_wait)
                    outcome.rep = rep
                    log(f"  {outcome.per_second:.1f} timers/s ({outcome.seconds:.2f} s); machine busy "
                        f"{percent(outcome.background)} before, {percent(outcome.machine_busy)} during; "
                        f"load before {outcome.load_before or 0:.2f}; "
                        f"fired once: {outcome.fired_once}/{outcome.timers}; split {outcome.split}"
                        + (f"; PROBLEMS: {outcome.problems}" if outcome.problems else ""))
                    outcomes.append(outcome)
                    if startup is not None:
                        startups.append(startup)
    print(report(outcomes, startups, bare, args.timers, args.repeat))
    if args.json:
        Path(args.json).write_text(json.dumps({"outcomes": [asdict(o) | {"per_second": o.per_second}
                                                            for o in outcomes],
                                               "cli_startup_seconds": startups, "bare_seconds": bare}, indent=2))
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
