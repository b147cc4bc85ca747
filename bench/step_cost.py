"""What completing one human task costs as an instance's history grows: bare SpiffWorkflow against pmoflow.

Run:  python bench/step_cost.py [--quick] [--json FILE] [--profile]
      PMOFLOW_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test python bench/step_cost.py

The process (bench/loop_task.bpmn) loops around one lane-less user task; every completion adds the same few
tasks to the SpiffWorkflow tree. For each target history size N (completed tasks in the tree, default 10, 100
and 1,000) the script picks the loop iterations whose history lies within 5% of N (or, when none does, the
closest one), and measures one step at each of them:

* bare SpiffWorkflow, in memory: deserialize_json -> run the READY user task (looked up by its id, as an
  application that stored it would) -> do_engine_steps -> serialize_json, with SPIFF_CONFIG;
* pmoflow's Python API, ``Pmoflow.complete(task_id)``, on SQLite (a temporary file) and on PostgreSQL (a
  schema of its own, when PMOFLOW_BENCH_PG_URL or PMOFLOW_TEST_PG_URL is set), both "warm" (the engine's
  in-process cache of deserialized workflows in use, like a long-running service) and "cold" (that cache
  cleared before the step, like one CLI process per command; restored specs stay cached in both).

To take many samples at one history size, several instances ("lanes") are grown to the window's first
iteration and each is stepped through the window; bare Spiff restarts its chain from a snapshot for each lane.
Bare and pmoflow steps are interleaved, warm and cold alternate. Growing a lane is not measured. Times are
wall-clock (time.perf_counter) on whatever else the machine runs: the script reports medians and p90s and
asserts nothing about them.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import io
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskIterator, TaskState

from pmoflow.engine import organisation, runtime, serialization
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import scratch_schema
from pmoflow.engine.services.installation import load_people

BPMN = Path(__file__).resolve().parent / "loop_task.bpmn"
PROCESS_ID = "bench_loop_task"
USER = "bench"
ORG_TOML = f'[[users]]\nname = "{USER}"\nroles = ["PMO Administrator"]\n'
LIMIT = 10**9  # the loop's `limit`: never reached
TOLERANCE = 0.05  # a sample counts for size N when its history is within 5% of N
DEFAULT_SIZES = (10, 100, 1000)
VARIANTS = ("warm", "cold")
PG_ENV = ("PMOFLOW_BENCH_PG_URL", "PMOFLOW_TEST_PG_URL")


def log(message: str) -> None:
    """Progress goes to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)


# -- statistics -----------------------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, Any] | None:
    """Median and p90 (nearest rank) in milliseconds, or None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1000, "p90_ms": p90 * 1000}


def completed_count(workflow: BpmnWorkflow) -> int:
    """The history size: every COMPLETED task in the SpiffWorkflow tree."""
    return len([t for t in workflow.tasks.values() if t.state == TaskState.COMPLETED])


# -- bare SpiffWorkflow ---------------------------------------------------------------------------------


def _lift_depth_limit() -> None:
    """Bare SpiffWorkflow 3.2's task iterators stop at depth 1000: without lifting that, this loop's next user
    task goes unseen at 250 iterations (~1,000 completed tasks) and the workflow reports itself completed.
    pmoflow runs its own subclasses without the limit and patches nothing; this benchmark patches the defaults
    in its own process, for the bare runs (pmoflow's workflows pass their own limit and are not affected)."""
    for iterator in (TaskIterator, BpmnTaskIterator):
        defaults = list(iterator.__init__.__defaults__)
        defaults[1] = sys.maxsize  # (end_at_spec, max_depth, ...)
        iterator.__init__.__defaults__ = tuple(defaults)


_lift_depth_limit()


class BareSpiff:
    """The process run by SpiffWorkflow alone, serialized with its stock serializer (specs included)."""

    def __init__(self) -> None:
        parser = SpiffBpmnParser()
        parser.add_bpmn_file(str(BPMN))
        self.spec = parser.get_spec(PROCESS_ID)
        self.subprocess_specs = parser.get_subprocess_specs(PROCESS_ID)
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def new_workflow(self) -> BpmnWorkflow:
        """A started instance, waiting at its first user task."""
        workflow = BpmnWorkflow(self.spec, self.subprocess_specs)
        for task in workflow.get_tasks(state=TaskState.READY):
            task.data["limit"] = LIMIT
        workflow.do_engine_steps()
        return workflow

    @staticmethod
    def ready_task_id(workflow: BpmnWorkflow) -> UUID:
        ready = workflow.get_tasks(state=TaskState.READY, manual=True)
        if len(ready) != 1:
            raise RuntimeError(f"expected one READY user task, found {len(ready)} "
                               f"(completed={workflow.is_completed()})")
        return ready[0].id

    def advance(self, workflow: BpmnWorkflow) -> None:
        """Complete the waiting user task in memory (growing a history; not measured)."""
        workflow.get_task_from_id(self.ready_task_id(workflow)).run()
        workflow.do_engine_steps()

    def lane_from(self, snapshot: tuple[str, UUID], at: int, start: int) -> BareLane:
        """A chain starting `start - at` iterations after a snapshot taken at iteration `at`."""
        if start == at:
            return BareLane(snapshot[0], snapshot[1], at)
        workflow = self.serializer.deserialize_json(snapshot[0])
        for _ in range(start - at):
            self.advance(workflow)
        return BareLane(self.serializer.serialize_json(workflow), self.ready_task_id(workflow), start)

    def timed_step(self, state: str, task_id: UUID) -> tuple[dict[str, float], BpmnWorkflow, str]:
        """One measured step on a stored state; returns the phase times, the workflow and its new state."""
        t0 = time.perf_counter()
        workflow = self.serializer.deserialize_json(state)
        t1 = time.perf_counter()
        workflow.get_task_from_id(task_id).run()
        workflow.do_engine_steps()
        t2 = time.perf_counter()
        new_state = self.serializer.serialize_json(workflow)
        t3 = time.perf_counter()
        times = {"total": t3 - t0, "deserialize": t1 - t0, "run_and_steps": t2 - t1, "serialize": t3 - t2}
        return times, workflow, new_state


@dataclass
class BareLane:
    """A chain of bare steps: each step's output state is the next step's input."""

    state: str
    task_id: UUID
    iterations: int


# -- pmoflow --------------------------------------------------------------------------------------------


@dataclass
class PmoLane:
    instance_id: int
    iterations: int = 0


class PmoflowBackend:
    """pmoflow on one database. The engine's in-process caches are keyed by database, so backends share
    them safely; a cold step forgets only this backend's cached workflows."""

    def __init__(self, label: str, url: str, org_path: Path) -> None:
        self.label = label
        self.app = Pmoflow(url, user=USER, handlers={})
        self.db_key = self.app.db.engine.url.render_as_string(hide_password=False)
        with self.own_caches():
            self.app.db.upgrade()
            with self.app.db.transaction() as session:
                load_people(session, organisation.load(org_path))
            self.app.deploy([BPMN])

    @contextmanager
    def own_caches(self) -> Iterator[None]:
        yield  # kept as a seam: nothing to swap since the caches are keyed by database

    def forget_cached_workflows(self) -> None:
        for key in [k for k in runtime._CACHE if k[0] == self.db_key]:
            del runtime._CACHE[key]

    def start_lane(self) -> PmoLane:
        with self.own_caches():
            return PmoLane(self.app.start(PROCESS_ID, {"limit": LIMIT})["instance_id"])

    def _task_id(self, lane: PmoLane) -> int:
        ids = [t["id"] for t in self.app.tasks() if t["instance_id"] == lane.instance_id]
        if len(ids) != 1:
            raise RuntimeError(f"{self.label}: instance {lane.instance_id} has {len(ids)} open tasks, expected 1")
        return ids[0]

    def step(self, lane: PmoLane, cold: bool = False, profiler: cProfile.Profile | None = None) -> float:
        """Complete the lane's open task; only `complete` is timed (finding the task id is not)."""
        with self.own_caches():
            task_id = self._task_id(lane)
            if cold:
                self.forget_cached_workflows()
            if profiler:
                profiler.enable()
            t0 = time.perf_counter()
            result = self.app.complete(task_id, {})
            elapsed = time.perf_counter() - t0
            if profiler:
                profiler.disable()
        if result["status"] != "running":
            raise RuntimeError(f"{self.label}: instance {lane.instance_id} is {result['status']}: {result['error']}")
        lane.iterations += 1
        return elapsed

    def history(self, lane: PmoLane, state_bytes: bool = False) -> tuple[int, int, int] | None:
        """(completed tasks, tree tasks, stored state bytes or 0) of the lane's cached workflow, if cached."""
        cached = runtime._CACHE.get((self.db_key, lane.instance_id))
        if cached is None:
            return None
        workflow = cached[1]
        size = len(serialization.dump_state(workflow)) if state_bytes else 0
        return completed_count(workflow), len(workflow.tasks), size

    def forget(self, lane: PmoLane) -> None:
        """Drop a finished lane's workflow from this backend's cache."""
        runtime._CACHE.pop((self.db_key, lane.instance_id), None)

    def close(self) -> None:
        self.app.close()


# -- history sizes --------------------------------------------------------------------------------------


@dataclass
class Window:
    """The loop iterations measured for one target history size."""

    target: int
    iterations: list[int]
    completed: dict[int, int]  # iteration -> completed tasks before the step
    tree: dict[int, int]  # iteration -> tasks in the tree before the step
    exact: bool  # False when no iteration lies within the tolerance and the closest one is used


def history_table(bare: BareSpiff, up_to: int) -> tuple[dict[int, int], dict[int, int]]:
    """Completed and total tree tasks after each number of completed loop iterations, until past `up_to`."""
    workflow = bare.new_workflow()
    completed, tree = {0: completed_count(workflow)}, {0: len(workflow.tasks)}
    iteration = 0
    while completed[iteration] <= up_to:
        bare.advance(workflow)
        iteration += 1
        completed[iteration], tree[iteration] = completed_count(workflow), len(workflow.tasks)
    return completed, tree


def windows_for(sizes: list[int], completed: dict[int, int], tree: dict[int, int]) -> list[Window]:
    result = []
    for target in sizes:
        near = [i for i, c in completed.items() if abs(c - target) <= TOLERANCE * target]
        exact = bool(near)
        if not near:
            near = [min(completed, key=lambda i: (abs(completed[i] - target), -i))]
        result.append(Window(target, near, {i: completed[i] for i in near}, {i: tree[i] for i in near}, exact))
    return result


# -- measuring ------------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    window: Window
    bare: dict[str, list[float]] = field(default_factory=lambda: {"total": [], "deserialize": [],
                                                                  "run_and_steps": [], "serialize": []})
    pmo: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    iterations_used: set[int] = field(default_factory=set)
    pmo_history: dict[str, set[int]] = field(default_factory=dict)  # backend -> completed counts seen
    bare_state_bytes: int = 0
    pmo_state_bytes: dict[str, int] = field(default_factory=dict)
    lanes: int = 0
    notes: list[str] = field(default_factory=list)


class OutOfTime(Exception):
    pass


def grow(backend: PmoflowBackend, lane: PmoLane, iterations: int, deadline: float) -> None:
    while lane.iterations < iterations:
        if time.monotonic() > deadline:
            raise OutOfTime
        backend.step(lane)


def measure_size(window: Window, bare: BareSpiff, snapshot: tuple[str, UUID], backends: list[PmoflowBackend],
                 reps: int, deadline: float) -> SizeResult:
    """Sample one history size: lanes of pmoflow instances stepped through the window, bare Spiff alongside."""
    res = SizeResult(window, pmo={b.label: {v: [] for v in VARIANTS} for b in backends},
                     pmo_history={b.label: set() for b in backends})
    res.bare_state_bytes = len(snapshot[0])
    first, last = window.iterations[0], window.iterations[-1]
    step_no = 0

    def enough() -> bool:
        if not backends:
            return len(res.bare["total"]) >= reps
        return all(len(s) >= reps for b in res.pmo.values() for s in b.values())

    def steps_needed() -> int:
        if not backends:
            return reps - len(res.bare["total"])
        return 2 * max(reps - len(s) for b in res.pmo.values() for s in b.values())

    try:
        while not enough():
            if time.monotonic() > deadline:
                raise OutOfTime
            # Finished lanes are dropped from the caches (the engine never evicts), and garbage is collected
            # between lanes rather than during a measured step where possible.
            gc.collect()
            # a lane that will not use the whole window uses its middle, so samples centre on the target
            start = first + max(0, (last - first + 1 - steps_needed()) // 2)
            lanes = {}
            for backend in backends:
                lanes[backend.label] = backend.start_lane()
                grow(backend, lanes[backend.label], start, deadline)
            bare_lane = bare.lane_from(snapshot, first, start)
            res.lanes += 1
            for iteration in range(start, last + 1):
                if enough():
                    break
                if time.monotonic() > deadline:
                    raise OutOfTime
                variant = VARIANTS[step_no % 2]
                order: list[PmoflowBackend | None] = [None, *backends]  # None: bare Spiff
                if step_no % 2:
                    order.reverse()  # neither side always goes first
                for backend in order:
                    if backend is None:
                        bare_sample(bare, bare_lane, res)
                    else:
                        pmo_sample(backend, lanes[backend.label], variant, res)
                res.iterations_used.add(iteration)
                step_no += 1
            for backend in backends:
                backend.forget(lanes[backend.label])
    except OutOfTime:
        res.notes.append(f"stopped by the time budget after {res.lanes} lane(s)")
    return res


def bare_sample(bare: BareSpiff, lane: BareLane, res: SizeResult) -> None:
    times, workflow, lane.state = bare.timed_step(lane.state, lane.task_id)
    lane.task_id, lane.iterations = bare.ready_task_id(workflow), lane.iterations + 1
    for phase, seconds in times.items():
        res.bare[phase].append(seconds)


def pmo_sample(backend: PmoflowBackend, lane: PmoLane, variant: str, res: SizeResult) -> None:
    first = backend.label not in res.pmo_state_bytes
    before = backend.history(lane, state_bytes=first)  # what the step starts from (cold: the same, from the row)
    res.pmo[backend.label][variant].append(backend.step(lane, cold=variant == "cold"))
    if before is not None:
        res.pmo_history[backend.label].add(before[0])
        if first:
            res.pmo_state_bytes[backend.label] = before[2]


def profile_step(backend: PmoflowBackend, window: Window, deadline: float) -> str:
    """cProfile one cold and one warm pmoflow step at the window's middle iteration."""
    iteration = window.iterations[len(window.iterations) // 2]
    lane = backend.start_lane()
    grow(backend, lane, iteration, deadline)
    out = io.StringIO()
    for variant in ("cold", "warm"):
        profiler = cProfile.Profile()
        backend.step(lane, cold=variant == "cold", profiler=profiler)
        out.write(f"\n--- {backend.label} {variant} step at {lane.iterations - 1} iterations "
                  f"({window.completed.get(iteration)} completed tasks), top 15 by cumulative time ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(15)
    return out.getvalue()


# -- reporting ------------------------------------------------------------------------------------------


def fmt(stat: dict[str, Any] | None) -> str:
    return f"{stat['median_ms']:.1f} ({stat['p90_ms']:.1f})" if stat else "-"


def span(values: list[int]) -> str:
    return f"{values[0]}-{values[-1]}" if len(values) > 1 else (str(values[0]) if values else "-")


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    return a["median_ms"] / b["median_ms"] if a and b else None


def build_report(results: list[SizeResult], backends: list[str], pg_skipped: str | None) -> dict[str, Any]:
    sizes = []
    for r in results:
        w = r.window
        used = sorted(r.iterations_used)
        sizes.append({
            "target_completed": w.target,
            "iterations": used,
            "completed_tasks": sorted({w.completed[i] for i in used}),
            "tree_tasks": sorted({w.tree[i] for i in used}),
            "within_tolerance": w.exact,
            "lanes": r.lanes,
            "bare": {phase: summary(s) for phase, s in r.bare.items()},
            "bare_state_bytes_with_specs": r.bare_state_bytes,
            "pmoflow": {label: {v: summary(s) for v, s in r.pmo[label].items()} for label in backends},
            "pmoflow_completed_tasks_seen": {label: sorted(r.pmo_history[label]) for label in backends},
            "pmoflow_state_bytes": r.pmo_state_bytes,
            "notes": r.notes,
        })
    measured = [s for s in sizes if s["bare"]["total"]]
    ratios = {}
    if len(measured) >= 2:
        small, big = measured[0], measured[-1]
        for label in backends:
            for v in VARIANTS:
                ratios[f"{label}_{v}"] = {
                    "pmoflow_big_over_small": ratio(big["pmoflow"][label][v], small["pmoflow"][label][v]),
                    "pmoflow_big_over_bare_big": ratio(big["pmoflow"][label][v], big["bare"]["total"]),
                }
        ratios["bare_big_over_small"] = ratio(big["bare"]["total"], small["bare"]["total"])
        ratios["sizes"] = [small["target_completed"], big["target_completed"]]
    return {"sizes": sizes, "ratios": ratios, "backends": backends, "postgresql_skipped": pg_skipped}


def print_report(report: dict[str, Any], columns: list[tuple[str, str]], wall: float, args) -> None:
    names = {"sqlite": "SQLite", "postgresql": "PG"}
    print()
    print("Cost of completing one human task, by history size: median ms (p90 ms)")
    print("history = completed tasks in the SpiffWorkflow tree before the step; tree = all tasks in the tree")
    head = f"{'target':>6} {'iterations':>10} {'completed':>10} {'tree':>10} {'n':>4} {'bare Spiff':>14}"
    for label, v in columns:
        head += f" {names.get(label, label) + ' ' + v:>15}"
    print(head)
    print("-" * len(head))
    for s in report["sizes"]:
        row = (f"{s['target_completed']:>6} {span(s['iterations']):>10} {span(s['completed_tasks']):>10} "
               f"{span(s['tree_tasks']):>10} {s['bare']['total']['n'] if s['bare']['total'] else 0:>4} "
               f"{fmt(s['bare']['total']):>14}")
        for label, v in columns:
            skipped = label == "postgresql" and report["postgresql_skipped"]
            row += f" {'skipped' if skipped else fmt(s['pmoflow'].get(label, {}).get(v)):>15}"
        print(row)
    if report["postgresql_skipped"]:
        print(f"PostgreSQL: skipped: {report['postgresql_skipped']}")
    print()
    for s in report["sizes"]:
        b = s["bare"]
        extra = "" if s["within_tolerance"] else f"; no iteration is within {TOLERANCE:.0%}: closest used"
        pmo_n = ", ".join(f"{names.get(k, k)} {v}: n={st['n']}" for k, d in s["pmoflow"].items()
                          for v, st in d.items() if st)
        seen = "; ".join(f"{names.get(k, k)} histories {v[0]}-{v[-1]}" for k, v in
                         s["pmoflow_completed_tasks_seen"].items() if v)
        print(f"size {s['target_completed']}: {s['lanes']} lane(s){extra}. bare phases (median ms): deserialize "
              f"{fmt(b['deserialize'])}, run+engine steps {fmt(b['run_and_steps'])}, serialize {fmt(b['serialize'])}; "
              f"bare state {s['bare_state_bytes_with_specs'] / 1024:.0f} KB with specs; pmoflow state "
              + ", ".join(f"{names.get(k, k)} {v / 1024:.0f} KB" for k, v in s["pmoflow_state_bytes"].items())
              + (f". {pmo_n}" if pmo_n else "") + (f". {seen}" if seen else "")
              + (f". NOTE: {'; '.join(s['notes'])}" if s["notes"] else ""))
    r = report["ratios"]
    print()
    if not r:
        print("ratios: not available (fewer than two sizes measured)")
    else:
        small, big = r["sizes"]
        print(f"ratios of medians{'':<34} {'target':>7}" + "".join(f" {names.get(lb, lb) + ' ' + v:>11}"
                                                                 for lb, v in columns))
        for key, label, target in (("pmoflow_big_over_small", f"pmoflow@{big} / pmoflow@{small}", "<= 2"),
                                   ("pmoflow_big_over_bare_big", f"pmoflow@{big} / bare@{big}", "<= 1")):
            row = f"{label:<51} {target:>7}"
            for lb, v in columns:
                value = r.get(f"{lb}_{v}", {}).get(key)
                row += f" {(f'{value:.2f}' if value is not None else 'skipped'):>11}"
            print(row)
        print(f"(for reference: bare@{big} / bare@{small} = {r['bare_big_over_small']:.2f})")
    print()
    print(f"reps per variant and size: {args.reps}; time budget {args.budget:.0f} s; "
          f"total wall time {wall:.1f} s")


# -- the cost of one evaluation of model code ---------------------------------------------------------------

EVALUATIONS = (  # (label, mode, code): the loop's own script and condition, and a script only the sandbox runs
    ("script `i = i + 1`", "exec", "i = i + 1"),
    ("condition `i < limit`", "eval", "i < limit"),
    ("script with a comprehension", "exec", "squares = [n * n for n in range(10)]"),
)


def evaluation_cost(reps: int) -> list[dict[str, Any]]:
    """Median ms of one evaluation of each EVALUATIONS entry by the engine's environment: as it runs (the fast
    path when the code is bounded by construction), forced into the sandbox process (PMOFLOW_FAST_PATH=0), and,
    for reference, RestrictedPython in-process without isolation or limits (what pmoflow did before bounded
    evaluation, minus its trace-function time limit)."""
    from pmoflow.engine import restricted
    from pmoflow.engine.scripting import FAST_PATH_ENV, SandboxEnvironment, bounded

    env = SandboxEnvironment({"process_initiator": lambda: USER, "task_performer": lambda bpmn_id: None})
    env.evaluate("1 + 1", {})  # start the sandbox host outside the measurement
    env.execute("x = [1 for _ in range(1)]", {})

    def timed(action) -> float:
        samples = []
        for _ in range(reps):
            began = time.perf_counter()
            action()
            samples.append((time.perf_counter() - began) * 1000)
        return statistics.median(samples)

    def engine_run(mode: str, code: str):
        context = {"i": 1, "limit": LIMIT}
        return lambda: env.execute(code, context) if mode == "exec" else env.evaluate(code, context)

    def in_process(mode: str, code: str):
        compiled = restricted.compile_script(code, mode)
        context = {"i": 1, "limit": LIMIT}
        return lambda: (exec if mode == "exec" else eval)(compiled, {**restricted.guards(),
                                                                     **restricted.STANDARD_HELPERS,
                                                                     **copy.deepcopy(context)})

    rows = []
    for label, mode, code in EVALUATIONS:
        row = {"evaluation": label, "fast_path": bounded.compile_bounded(code, mode) is not None,
               "engine_ms": timed(engine_run(mode, code))}
        os.environ[FAST_PATH_ENV] = "0"
        try:
            row["sandbox_ms"] = timed(engine_run(mode, code))
        finally:
            os.environ.pop(FAST_PATH_ENV)
        row["unbounded_in_process_ms"] = timed(in_process(mode, code))
        rows.append(row)
    return rows


def print_evaluations(rows: list[dict[str, Any]], reps: int) -> None:
    print()
    print(f"one evaluation of model code (median ms of {reps}): as the engine runs it | forced into the sandbox "
          f"| RestrictedPython in-process, unbounded (before)")
    for row in rows:
        where = "fast path" if row["fast_path"] else "sandbox"
        print(f"  {row['evaluation']:<30} {row['engine_ms']:7.3f} ({where:<9}) {row['sandbox_ms']:7.3f} "
              f"{row['unbounded_in_process_ms']:7.3f}")


# -- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: all sizes, 5 samples each")
    p.add_argument("--reps", type=int, help="samples per size and variant (default 30, or 5 with --quick)")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="target history sizes in completed tasks (default %(default)s)")
    p.add_argument("--budget", type=float, default=540.0,
                   help="seconds after which sampling stops and what is missing is reported (default %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    p.add_argument("--evaluations", type=int, default=200,
                   help="samples of one evaluation of model code per way of running it (0: skip; default %(default)s)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile one cold and one warm pmoflow SQLite step at the largest size")
    args = p.parse_args(argv)
    args.reps = args.reps or (5 if args.quick else 30)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    deadline = time.monotonic() + args.budget
    pg_base = next((os.environ[e] for e in PG_ENV if os.environ.get(e)), None)
    pg_skipped = None if pg_base else "set PMOFLOW_BENCH_PG_URL (or PMOFLOW_TEST_PG_URL)"

    bare = BareSpiff()
    log(f"mapping loop iterations to history sizes up to {max(args.sizes)} completed tasks ...")
    completed, tree = history_table(bare, max(args.sizes) * (1 + TOLERANCE))
    windows = windows_for(args.sizes, completed, tree)
    for w in windows:
        log(f"  target {w.target}: iterations {w.iterations[0]}-{w.iterations[-1]}, completed tasks "
            f"{w.completed[w.iterations[0]]}-{w.completed[w.iterations[-1]]}")

    with tempfile.TemporaryDirectory(prefix="pmoflow-bench-") as tmp, \
            (scratch_schema(pg_base, "bench") if pg_base else _none()) as pg_url:
        org_path = Path(tmp) / "org.toml"
        org_path.write_text(ORG_TOML)
        backends = [PmoflowBackend("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", org_path)]
        if pg_url:
            backends.append(PmoflowBackend("postgresql", pg_url, org_path))
        try:
            results = run_sizes(windows, bare, backends, args.reps, deadline)
            profile = ""
            if args.profile and results and results[-1].bare["total"]:
                log("profiling one pmoflow SQLite step at the largest size ...")
                try:
                    profile = profile_step(backends[0], windows[len(results) - 1], deadline + 120)
                except OutOfTime:
                    profile = "profile skipped: out of time"
        finally:
            for b in backends:
                b.close()

    labels = [b.label for b in backends]
    columns = [(label, v) for label in ["sqlite", "postgresql"] for v in VARIANTS
               if label in labels or (label == "postgresql" and pg_skipped)]
    report = build_report(results, labels, pg_skipped)
    skipped = [w.target for w in windows[len(results):]]
    if skipped:
        report["skipped_sizes"] = {"sizes": skipped, "reason": "time budget exhausted before they were reached"}
    wall = time.perf_counter() - started
    report.update(wall_time_s=wall, reps=args.reps, budget_s=args.budget, python=sys.version.split()[0],
                  notes=["bare Spiff uses SpiffWorkflow's stock serializer (specs inside the state); pmoflow "
                         "stores specs once per definition",
                         "bare Spiff runs with its task-iterator depth limit lifted by this script (_lift_depth_limit)",
                         "cold = runtime._CACHE cleared before the step; restored specs stay cached"])
    if args.evaluations:
        log("timing single evaluations of model code ...")
        report["evaluations"] = evaluation_cost(args.evaluations)
    print_report(report, columns, wall, args)
    if args.evaluations:
        print_evaluations(report["evaluations"], args.evaluations)
    if skipped:
        print(f"SKIPPED sizes {skipped}: the time budget ran out before they were reached (raise --budget)")
    if profile:
        print(profile)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


@contextmanager
def _none() -> Iterator[None]:
    yield None


def run_sizes(windows: list[Window], bare: BareSpiff, backends: list[PmoflowBackend], reps: int,
              deadline: float) -> list[SizeResult]:
    """Measure each size in ascending order; a bare workflow grows alongside to give each window's snapshot."""
    results = []
    workflow, iteration = bare.new_workflow(), 0
    for window in windows:
        if time.monotonic() > deadline:
            break
        while iteration < window.iterations[0]:
            bare.advance(workflow)
            iteration += 1
        snapshot = (bare.serializer.serialize_json(workflow), bare.ready_task_id(workflow))
        log(f"size {window.target}: measuring at iterations {window.iterations[0]}-{window.iterations[-1]} ...")
        t0 = time.perf_counter()
        results.append(measure_size(window, bare, snapshot, backends, reps, deadline))
        log(f"size {window.target}: done in {time.perf_counter() - t0:.1f} s")
    return results


if __name__ == "__main__":
    sys.exit(main())
