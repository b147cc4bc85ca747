"""Reports an auditor can read and hand on.

`instance_report` gathers one instance's summary, the verification of its record, its timeline, the time spent
in each step, its decisions with the rules that matched, the gateways taken, the segregation-of-duty checks that
ran, every administrative act (with the data before and after), and its BPMN diagram drawn from the file's
diagram interchange (BPMNDI) with the path taken, the open tasks and the element in error marked.
`process_report` gathers one process over a period: counts, cycle times, time per step, overrides, late tasks,
duty refusals, administrative acts and the findings still open.

Both are plain data (what `--format json` prints); `to_markdown` and `to_html` write them out. The HTML is one
self-contained file: inline CSS, the SVG inline, no scripts, fonts, images or links to anything outside it.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.specs.defaults import BoundaryEvent
from SpiffWorkflow.util.task import TaskState

from pmoflow.engine import audit, clock
from pmoflow.engine.diagram import render_svg

MODEL = "http://www.omg.org/spec/BPMN/20100524/MODEL"
JOINS = {"parallelGateway", "inclusiveGateway"}


# -- the path taken ----------------------------------------------------------------------------------------------

def _bpmn_id(task) -> str | None:
    return getattr(task.task_spec, "bpmn_id", None)


def _is_current(task) -> bool:
    """Where the instance stands: an open human task, a waiting event or a running subprocess (a boundary
    event waits beside its task and is not where the instance stands)."""
    if task.has_state(TaskState.READY):
        return bool(task.task_spec.manual)
    return task.has_state(TaskState.WAITING | TaskState.STARTED) and not isinstance(task.task_spec, BoundaryEvent)


def _workflows(workflow) -> list:
    return [workflow, *getattr(workflow, "subprocesses", {}).values()]


def path_state(workflow, bpmn_xml: str | None, errored: str | None = None) -> dict[str, list[str]]:
    """What the diagram marks: the BPMN ids of completed elements, the sequence flows taken, the current
    elements (open human tasks, waiting events and running subprocesses) and the element in error.

    A flow is taken when its target was reached from its source: in SpiffWorkflow's task tree a task's parent
    (looking through the hidden helper tasks, which have no BPMN id) is the element it came from, so loops and
    exclusive branches are marked exactly. A converging parallel or inclusive gateway has one parent in the
    tree, so its other incoming flows count as taken when their source completed."""
    completed, current, reached, pairs = set(), set(), set(), set()
    for wf in _workflows(workflow):
        for task in list(wf.tasks.values()):
            bpmn_id = _bpmn_id(task)
            if not bpmn_id:
                continue
            if task.has_state(TaskState.COMPLETED):
                completed.add(bpmn_id)
            elif _is_current(task):
                current.add(bpmn_id)
            elif not task.has_state(TaskState.ERROR):
                continue
            reached.add(bpmn_id)
            parent = task.parent
            while parent is not None and not _bpmn_id(parent):
                parent = parent.parent
            if parent is not None:
                pairs.add((_bpmn_id(parent), bpmn_id))
    if errored:
        reached.add(errored)
    taken = []
    for flow_id, source, target, target_kind in _flows(bpmn_xml):
        if (source, target) in pairs or (target_kind in JOINS and target in reached and source in completed):
            taken.append(flow_id)
    return {"completed": sorted(completed), "taken_flows": sorted(taken), "current": sorted(current - completed),
            "errored": [errored] if errored else []}


def _parse_xml(text: str | bytes):
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(text.encode() if isinstance(text, str) else text, parser)


def _flows(bpmn_xml: str | None) -> list[tuple[str, str, str, str]]:
    """(flow id, source id, target id, the target's element kind) of every sequence flow in the file."""
    if not bpmn_xml:
        return []
    try:
        root = _parse_xml(bpmn_xml)
    except etree.XMLSyntaxError:
        return []
    kinds = {el.get("id"): etree.QName(el).localname for el in root.iter(f"{{{MODEL}}}*") if el.get("id")}
    return [(f.get("id"), f.get("sourceRef"), f.get("targetRef"), kinds.get(f.get("targetRef"), ""))
            for f in root.iter(f"{{{MODEL}}}sequenceFlow")]


def bpmn_source(sources: dict[str, str], process_id: str) -> tuple[str | None, str | None]:
    """(file name, text) of the deployed BPMN file that defines `process_id`."""
    for name, text in sorted(sources.items()):
        if not name.endswith((".bpmn", ".bpmn20.xml")) or name.startswith("forms/"):
            continue
        try:
            root = _parse_xml(text)
        except etree.XMLSyntaxError:
            continue
        if any(p.get("id") == process_id for p in root.iter(f"{{{MODEL}}}process")):
            return name, text
    return None, None


def diagram(sources: dict[str, str], process_id: str, workflow, errored: str | None, title: str) -> dict[str, Any]:
    """The instance's diagram as inline SVG with its state marked, or a note saying why there is none."""
    name, text = bpmn_source(sources, process_id)
    state = path_state(workflow, text, errored)
    result: dict[str, Any] = {**state, "file": name, "svg": None, "note": None}
    if text is None:
        result["note"] = f"the deployed files hold no BPMN process {process_id}"
        return result
    try:
        result["svg"] = render_svg(text, process_id, completed=state["completed"], taken_flows=state["taken_flows"],
                                   current=state["current"], errored=state["errored"], title=title)
    except ValueError as exc:
        result["note"] = str(exc)
    return result


# -- one instance ------------------------------------------------------------------------------------------------

def _iso(moment: datetime | None) -> str | None:
    return clock.as_utc(moment).isoformat() if moment is not None else None


def _moment(text: str | None) -> datetime | None:
    return clock.as_db(datetime.fromisoformat(text)) if text else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start is not None and end is not None else None


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pairs(values: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={_short(v, 60)}" for k, v in (values or {}).items())


def describe(event: dict[str, Any]) -> str:
    """One line of plain words for a timeline entry."""
    p, kind = event.get("payload") or {}, event["type"]
    task = event.get("task_name") or event.get("task") or ""
    if kind == "instance_started":
        how = f" by message {p['by_message']}" if p.get("by_message") else \
            f" by timer {p['by_timer']} (due {p.get('due')})" if p.get("by_timer") else ""
        return f"started version {p.get('version')}{how} with {_pairs(p.get('data')) or 'no data'}"
    if kind in ("message_sent", "message_received"):
        values = ", ".join(f"{k}={v!r}" for k, v in (p.get("correlation") or {}).items())
        peer = f"to instance {p.get('to_instance')}" if kind == "message_sent" else \
            f"from instance {p['from_instance']}" if p.get("from_instance") else "from outside"
        return f"{kind.removeprefix('message_')} {p.get('message')}" + (f" ({values})" if values else "") + \
            f" {peer}: {_short(p.get('payload'), 80)}"
    if kind == "task_ready":
        due = f"; due {p['due']}" if p.get("due") else ""
        return f"'{task}' offered to {', '.join(p.get('candidates') or []) or 'nobody'}{due}"
    if kind == "task_completed":
        checks = "; duties: " + ", ".join(f"{c['rule']} {c['result']}" for c in p["duty_checks"]) \
            if p.get("duty_checks") else ""
        return f"completed '{task}' with {_pairs(p.get('data')) or 'no data'}{checks}"
    if kind == "task_delegated":
        return f"'{task}' handed from {p.get('from_user')} to {p.get('to_user')}"
    if kind in ("task_claimed", "task_unclaimed", "task_cancelled"):
        return f"'{task}' {kind.removeprefix('task_')}"
    if kind == "decision":
        rules = ", ".join(f"{r.get('id')} (row {r.get('row')})" for r in p.get("matched_rules") or []) or "no rule"
        return f"{p.get('decision')}: {rules} matched {_pairs(p.get('inputs'))} -> {_pairs(p.get('outputs'))}"
    if kind == "gateway":
        return f"'{task}' took the way to {', '.join(str(t) for t in p.get('taken') or [])}"
    if kind == "timer_fired":
        return f"timer '{task}' fired (due {p.get('due')})"
    if kind == "service_called":
        return f"'{task}' called {p.get('operator')}: {p.get('result_variable')}={_short(p.get('result'), 80)}"
    if kind == "notification_queued":
        to = ", ".join(r.get("user", "") for r in p.get("recipients") or []) or "nobody"
        return f"{p.get('kind')} '{_short(p.get('subject'), 80)}' queued for {to}"
    if kind == "duty_refused":
        return f"refused: {p.get('message')}"
    if kind == "error":
        return f"error at '{task}': {p.get('message')}"
    if kind in audit.ADMIN_TYPES:
        reason = f" ({p['reason']})" if p.get("reason") else ""
        return f"{kind}{reason}: before {_short(p.get('before'), 80)}, after {_short(p.get('after'), 80)}"
    if kind == "instance_completed":
        return "completed"
    return _short(p)


def steps_of(events: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Every human task the instance offered: when it was ready, claimed, completed or withdrawn, by whom,
    how long it took, its due time and whether it was (or is) late."""
    steps: dict[Any, dict[str, Any]] = {}
    for e in events:
        p, kind = e.get("payload") or {}, e["type"]
        key = p.get("task_id")
        if key is None or not kind.startswith("task_"):
            continue
        at = _moment(e["at"])
        if kind == "task_ready":
            steps[key] = {"task_id": key, "bpmn_id": e["task"], "name": e["task_name"], "lane": p.get("lane"),
                          "ready_at": e["at"], "due": p.get("due"), "claimed_by": None, "completed_by": None,
                          "ended_at": None, "state": "open", "seconds": None, "late": False}
            continue
        step = steps.get(key)
        if step is None:
            continue
        if kind == "task_claimed":
            step["claimed_by"] = e["actor"]
        elif kind == "task_delegated":
            step["claimed_by"] = p.get("to_user")
        elif kind in ("task_completed", "task_cancelled"):
            step["state"] = "completed" if kind == "task_completed" else "cancelled"
            step["completed_by"] = e["actor"] if kind == "task_completed" else None
            step["ended_at"] = e["at"]
            step["seconds"] = _seconds(_moment(step["ready_at"]), at)
            due = _moment(step["due"])
            step["late"] = kind == "task_completed" and due is not None and at is not None and at > due
    for step in steps.values():
        if step["state"] == "open":
            step["seconds"] = _seconds(_moment(step["ready_at"]), now)
            due = _moment(step["due"])
            step["late"] = due is not None and now > due
    return list(steps.values())


def _step_totals(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for s in steps:
        t = totals.setdefault(s["bpmn_id"], {"bpmn_id": s["bpmn_id"], "name": s["name"], "times": 0, "seconds": 0.0,
                                             "late": 0})
        t["times"] += 1
        t["seconds"] = round(t["seconds"] + (s["seconds"] or 0), 3)
        t["late"] += int(s["late"])
    return list(totals.values())


def instance_report(summary: dict[str, Any], events: list[dict[str, Any]], verification: dict[str, Any],
                    diagram_info: dict[str, Any], data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Assemble one instance's report from its summary, its events (as `export_view` gives them), the result
    of verifying its chain, its diagram and its current data."""
    steps = steps_of(events, now)
    ended = next((e["at"] for e in reversed(events) if e["type"] in ("instance_completed", "terminate")), None)
    summary = {**summary, "ended_at": ended,
               "duration_seconds": _seconds(_moment(summary["started_at"]), _moment(ended) if ended else now)}
    duties = []
    for e in events:
        p = e["payload"] or {}
        if e["type"] == "task_completed":
            duties += [{"seq": e["seq"], "at": e["at"], "task": e["task_name"] or e["task"], "actor": e["actor"],
                        "rule": c.get("rule"), "result": c.get("result"), "message": ""}
                       for c in p.get("duty_checks") or []]
        elif e["type"] == "duty_refused":
            duties.append({"seq": e["seq"], "at": e["at"], "task": e["task_name"] or e["task"], "actor": e["actor"],
                           "rule": p.get("rule"), "result": "refused", "message": p.get("message")})
    return {
        "kind": "instance", "generated_at": clock.as_utc(now).isoformat(), "summary": summary,
        "verification": verification,
        "timeline": [{**e, "summary": describe(e)} for e in events],
        "steps": steps, "step_totals": _step_totals(steps),
        "decisions": [{"seq": e["seq"], "at": e["at"], "task": e["task"], "task_name": e["task_name"],
                       **{k: (e["payload"] or {}).get(k) for k in ("decision", "hit_policy", "inputs", "outputs",
                                                                   "matched_rules")}}
                      for e in events if e["type"] == "decision"],
        "gateways": [{"seq": e["seq"], "at": e["at"], "task": e["task"], "task_name": e["task_name"],
                      "taken": (e["payload"] or {}).get("taken")} for e in events if e["type"] == "gateway"],
        "duties": duties,
        "admin": [{"seq": e["seq"], "at": e["at"], "actor": e["actor"], "type": e["type"], "task": e["task"],
                   **{k: (e["payload"] or {}).get(k) for k in ("reason", "before", "after")}}
                  for e in events if e["type"] in audit.ADMIN_TYPES],
        "errors": [{"seq": e["seq"], "at": e["at"], "task": e["task"], "message": (e["payload"] or {}).get("message"),
                    "line": (e["payload"] or {}).get("line")} for e in events if e["type"] == "error"],
        "data": data,
        "diagram": diagram_info,
    }


# -- one process over a period --------------------------------------------------------------------------------------

def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "min": None, "median": None, "mean": None, "max": None}
    return {"count": len(values), "min": min(values), "median": statistics.median(values),
            "mean": round(statistics.fmean(values), 3), "max": max(values)}


def process_report(process: dict[str, Any], period: dict[str, Any], instances: list[dict[str, Any]],
                   completions: dict[int, str], steps: list[dict[str, Any]], overrides: list[dict[str, Any]] | None,
                   override_rule: str | None, late: list[dict[str, Any]], refusals: list[dict[str, Any]],
                   admin: list[dict[str, Any]], findings: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Assemble one process's report for a period from what the API gathered (instances started in the period,
    the completion time of those that ended, their human steps, and the events of the period)."""
    counts: dict[str, int] = {"started": len(instances)}
    for status in ("running", "waiting", "suspended", "error", "completed", "terminated"):
        counts[status] = sum(1 for i in instances if i["status"] == status)
    cycle = [s for s in (_seconds(_moment(i["started_at"]), _moment(completions.get(i["instance_id"])))
                         for i in instances if i["status"] == "completed") if s is not None]
    per_step: dict[str, dict[str, Any]] = {}
    for s in steps:
        entry = per_step.setdefault(s["bpmn_id"], {"bpmn_id": s["bpmn_id"], "name": s["name"], "durations": [],
                                                   "late": 0, "open": 0})
        if s["state"] == "completed" and s["seconds"] is not None:
            entry["durations"].append(s["seconds"])
        entry["late"] += int(s["late"])
        entry["open"] += int(s["state"] == "open")
    step_rows = [{"bpmn_id": v["bpmn_id"], "name": v["name"], **_stats(v.pop("durations")), "late": v["late"],
                  "open": v["open"]} for v in per_step.values()]
    versions: dict[int, int] = {}
    for i in instances:
        versions[i["version"]] = versions.get(i["version"], 0) + 1
    return {
        "kind": "process", "generated_at": clock.as_utc(now).isoformat(), "process": process, "period": period,
        "counts": counts, "versions": [{"version": v, "started": n} for v, n in sorted(versions.items())],
        "cycle_times": _stats(cycle), "steps": step_rows,
        "override_rule": override_rule, "overrides": overrides, "late_tasks": late, "duty_refusals": refusals,
        "admin": admin, "open_findings": findings,
        "instances": instances,
    }


# -- writing -----------------------------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _sections(report: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[Any]], str]]:
    """(id, heading, columns, rows, note when empty) of each table, shared by Markdown and HTML."""
    if report["kind"] == "instance":
        r = report
        return [
            ("timeline", "Timeline", ["seq", "at", "actor", "event", "task", "what happened", "hash"],
             [[e["seq"], e["at"], e["actor"], e["type"], e["task_name"] or e["task"], e["summary"], e["hash"][:12]]
              for e in r["timeline"]], "No events."),
            ("steps", "Time in each step", ["task", "lane", "ready", "ended", "state", "by", "time", "due", "late"],
             [[s["name"], s["lane"], s["ready_at"], s["ended_at"], s["state"], s["completed_by"] or s["claimed_by"],
               duration(s["seconds"]), s["due"], s["late"]] for s in r["steps"]], "No human task."),
            ("decisions", "Decisions and their rules", ["seq", "at", "task", "table", "hit policy", "inputs",
                                                         "outputs", "rules matched"],
             [[d["seq"], d["at"], d["task_name"] or d["task"], d["decision"], d["hit_policy"], _pairs(d["inputs"]),
               _pairs(d["outputs"]), "; ".join(f"{m.get('id')} (row {m.get('row')}): {m.get('description') or ''}"
                                              for m in d["matched_rules"] or [])] for d in r["decisions"]],
             "No decision table ran."),
            ("gateways", "Gateways", ["seq", "at", "gateway", "took the way to"],
             [[g["seq"], g["at"], g["task_name"] or g["task"], ", ".join(map(str, g["taken"] or []))]
              for g in r["gateways"]], "No gateway was passed."),
            ("duties", "Segregation of duties", ["seq", "at", "task", "actor", "rule", "result", "message"],
             [[d["seq"], d["at"], d["task"], d["actor"], d["rule"], d["result"], d["message"]] for d in r["duties"]],
             "No segregation-of-duty check ran."),
            ("admin", "Administrative acts", ["seq", "at", "actor", "act", "reason", "before", "after"],
             [[a["seq"], a["at"], a["actor"], a["type"], a["reason"], a["before"], a["after"]] for a in r["admin"]],
             "No administrative act."),
            ("errors", "Errors", ["seq", "at", "task", "line", "message"],
             [[e["seq"], e["at"], e["task"], e["line"], e["message"]] for e in r["errors"]], "No error."),
        ]
    r = report
    overrides_note = ("No override in the period." if r["override_rule"] else
                      "Give --override SUBMITTED=RECOMMENDED (e.g. data.gateDecision=outputs.recommendation) to list "
                      "the decisions that differ from their recommendation.")
    return [
        ("instances", "Instances started in the period", ["instance", "version", "status", "business key",
                                                           "started by", "started at"],
         [[i["instance_id"], i["version"], i["status"], i["business_key"], i["started_by"], i["started_at"]]
          for i in r["instances"]], "No instance started in the period."),
        ("steps", "Time per step", ["task", "completed", "median", "mean", "max", "late", "open"],
         [[s["name"], s["count"], duration(s["median"]), duration(s["mean"]), duration(s["max"]), s["late"], s["open"]]
          for s in r["steps"]], "No human task."),
        ("overrides", f"Overrides ({r['override_rule']})" if r["override_rule"] else "Overrides",
         ["instance", "seq", "at", "actor", "task", "submitted", "recommended"],
         [[o["instance_id"], o["seq"], o["at"], o["actor"], o["task"], o["submitted"], o["recommended"]]
          for o in r["overrides"] or []], overrides_note),
        ("late", "Late tasks", ["instance", "task", "due", "completed", "by", "late by"],
         [[t["instance_id"], t["name"], t["due"], t["completed_at"] or "(open)", t["completed_by"],
           duration(t["late_seconds"])] for t in r["late_tasks"]], "No late task."),
        ("refusals", "Segregation-of-duty refusals", ["instance", "seq", "at", "actor", "task", "rule"],
         [[d["instance_id"], d["seq"], d["at"], d["actor"], d["task"], d["rule"]] for d in r["duty_refusals"]],
         "No refusal."),
        ("admin", "Administrative acts", ["instance", "seq", "at", "actor", "act", "reason", "before", "after"],
         [[a["instance_id"], a["seq"], a["at"], a["actor"], a["type"], a["reason"], a["before"], a["after"]]
          for a in r["admin"]], "No administrative act."),
        ("findings", "Open findings", ["instance", "kind", "detail"],
         [[f["instance_id"], f["kind"], f["detail"]] for f in r["open_findings"]], "No open finding."),
    ]


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    if report["kind"] == "instance":
        s = report["summary"]
        return [("Instance", s["instance_id"]), ("Process", f"{s['process_name']} ({s['process_id']})"),
                ("Version", f"{s['version']} (content hash {s['content_hash']})"),
                ("Deployed", f"{s['deployed_at']} by {s['deployed_by']}"), ("Status", s["status"]),
                ("Business key", s["business_key"]), ("Started", f"{s['started_at']} by {s['started_by']}"),
                ("Ended", s["ended_at"]), ("Duration", duration(s["duration_seconds"])),
                ("Error", s["error"] and f"{s['error'].get('bpmn_id')}: {s['error'].get('message')}")]
    p, c, t = report["process"], report["counts"], report["cycle_times"]
    return [("Process", f"{p['name']} ({p['process_id']})"), ("Period", f"{report['period']['since']} to "
                                                                         f"{report['period']['until']}"),
            ("Instances started", c["started"]),
            ("Now", ", ".join(f"{k} {v}" for k, v in c.items() if k != "started" and v) or "none"),
            ("Versions", ", ".join(f"v{v['version']}: {v['started']}" for v in report["versions"])),
            ("Cycle time of completed instances", f"{t['count']} completed; median {duration(t['median'])}, "
                                                  f"mean {duration(t['mean'])}, max {duration(t['max'])}"
             if t["count"] else "none completed"),
            ("Overrides", "not checked" if report["overrides"] is None else len(report["overrides"])),
            ("Late tasks", len(report["late_tasks"])), ("Open findings", len(report["open_findings"]))]


def _title(report: dict[str, Any]) -> str:
    if report["kind"] == "instance":
        s = report["summary"]
        return f"Audit report: instance {s['instance_id']} of {s['process_name']}"
    return f"Audit report: {report['process']['name']}, {report['period']['since']} to {report['period']['until']}"


def _verification_text(report: dict[str, Any]) -> tuple[bool, str, list[str]]:
    v = report["verification"]
    if v["ok"]:
        return True, (f"The record verifies: {v['events']} events, every hash link intact; the chain's last hash is "
                      f"{v['head_hash']}."), []
    return False, "The record does NOT verify: it was changed outside pmoflow.", \
        [f"{f['stream']} (seq {f['seq']}): {f['problem']}" for f in v["findings"]]


def _md_escape(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {_title(report)}", "", f"Generated {report['generated_at']}.", "", "## Summary", "",
             "| | |", "| --- | --- |"]
    lines += [f"| {k} | {_md_escape(v)} |" for k, v in _summary_rows(report)]
    if report["kind"] == "instance":
        ok, text, details = _verification_text(report)
        lines += ["", "## Verification", "", text] + [f"- {d}" for d in details]
        d = report["diagram"]
        lines += ["", "## Diagram", "", "The diagram is drawn in the HTML report (`--format html`)."
                  if d["svg"] else f"No diagram: {d['note']}.", "",
                  f"- Completed: {', '.join(d['completed']) or 'none'}",
                  f"- Path taken (sequence flows): {', '.join(d['taken_flows']) or 'none'}",
                  f"- Current: {', '.join(d['current']) or 'none'}",
                  f"- In error: {', '.join(d['errored']) or 'none'}"]
    for _, heading, columns, rows, empty in _sections(report):
        lines += ["", f"## {heading}", ""]
        if not rows:
            lines.append(empty)
            continue
        lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in rows]
    if report["kind"] == "instance":
        data = json.dumps(report["data"], indent=2, sort_keys=True, default=str)
        lines += ["", "## Data", "", "```json", data, "```"]
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:Arial,Helvetica,sans-serif;color:#22262b;margin:24px auto;max-width:1200px;padding:0 16px;
line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5dae1;padding-bottom:4px}
.meta{color:#5f6b7a;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0}
th,td{border:1px solid #d5dae1;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef1f5}tr:nth-child(even) td{background:#f9fafb}
table.kv th{width:220px}
td.json,pre{font-family:Consolas,Menlo,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
pre{background:#f7f8fa;border:1px solid #d5dae1;padding:8px}
.ok{color:#2e7d32;font-weight:bold}.bad{color:#c62828;font-weight:bold}
figure{margin:0;border:1px solid #d5dae1;padding:8px;overflow-x:auto}
figure svg{max-width:100%;height:auto}
.empty{color:#5f6b7a;font-style:italic}
@media print{body{max-width:none}figure{page-break-inside:avoid}}
"""


def _inline_svg(svg: str) -> str:
    """The SVG without its fixed size, so it scales with the page."""
    root = _parse_xml(svg)
    for attribute in ("width", "height"):
        root.attrib.pop(attribute, None)
    root.set("preserveAspectRatio", "xMinYMin meet")
    return etree.tostring(root, encoding="unicode")


def _html_table(columns: Iterable[str], rows: list[list[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            cls = ' class="json"' if isinstance(value, dict | list) else ""
            cells.append(f"<td{cls}>{html.escape(_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table{css}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def to_html(report: dict[str, Any]) -> str:
    """One self-contained HTML file: nothing in it is fetched from anywhere."""
    title = _title(report)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">Generated {html.escape(report["generated_at"])} by pmoflow. Times are UTC.</p>',
             '<section id="summary"><h2>Summary</h2><table class="kv"><tbody>']
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(_cell(v))}</td></tr>" for k, v in _summary_rows(report)]
    parts.append("</tbody></table></section>")
    if report["kind"] == "instance":
        ok, text, details = _verification_text(report)
        items = "".join(f"<li>{html.escape(d)}</li>" for d in details)
        parts.append(f'<section id="verification"><h2>Verification</h2><p class="{"ok" if ok else "bad"}">'
                     f'{html.escape(text)}</p>{f"<ul>{items}</ul>" if items else ""}</section>')
        d = report["diagram"]
        figure = f"<figure>{_inline_svg(d['svg'])}</figure>" if d["svg"] else \
            f'<p class="empty">No diagram: {html.escape(d["note"] or "")}.</p>'
        parts.append(f'<section id="diagram"><h2>Diagram</h2>{figure}<p class="meta">Green: completed and the path '
                     f'taken; blue: current (open); red: in error.</p></section>')
    for section_id, heading, columns, rows, empty in _sections(report):
        table = _html_table(columns, rows) if rows else f'<p class="empty">{html.escape(empty)}</p>'
        parts.append(f'<section id="{section_id}"><h2>{html.escape(heading)}</h2>{table}</section>')
    if report["kind"] == "instance":
        data = json.dumps(report["data"], indent=2, sort_keys=True, default=str)
        parts.append(f'<section id="data"><h2>Data</h2><pre>{html.escape(data)}</pre></section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, default=str) + "\n"
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        return to_html(report)
    raise ValueError(f"unknown report format {fmt!r}: html, md or json")
