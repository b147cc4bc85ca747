"""The auditor's pages: event search with the CLI's filters (`pmoflow audit events`), its CSV and JSON
downloads, verification of the record (`audit verify`), the instance report and the process report over a
period (`pmoflow report`, the same HTML, Markdown or JSON).

Reports are served as the CLI writes them: one self-contained HTML file whose only style is inline, so it goes
out with a policy of its own that allows inline style and nothing else (no script, no fetch, no form).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pmoflow.engine import audit
from pmoflow.engine import report as reporting
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.errors import InvalidInput, PmoflowError
from pmoflow.engine.web.auth import Acting
from pmoflow.engine.web.problems import classify
from pmoflow.engine.web.workspace import problem_of, redirect, render

router = APIRouter(include_in_schema=False)
SHOWN = 200  # events drawn on the page; the downloads carry them all
REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                 "form-action 'none'; frame-ancestors 'none'")
FORMATS = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8",
           "json": "application/json"}
BASIC_FILTERS = {"process", "instance", "actor", "period"}  # shown; the others fold under "More filters"
TEXT_FILTERS = ("process", "version", "instance", "actor", "role", "task", "since", "until", "period",
                "override", "limit")


def event_filters(request: Request) -> dict[str, Any]:
    """The filters of the query string, named and shaped as `Pmoflow.audit_events` takes them (empty ones
    left out; `type` and `where` may repeat, and `where` may hold one condition per line)."""
    query = request.query_params
    chosen: dict[str, Any] = {}
    for name in TEXT_FILTERS:
        value = (query.get(name) or "").strip()
        if value:
            chosen[name] = value
    types = [t.strip() for value in query.getlist("type") for t in value.split(",") if t.strip()]
    where = [w.strip() for value in query.getlist("where") for w in value.splitlines() if w.strip()]
    if types:
        chosen["types"] = types
    if where:
        chosen["where"] = where
    for flag in ("late", "by_starter"):
        if query.get(flag):
            chosen[flag] = True
    if "limit" in chosen:
        if not chosen["limit"].isdigit() or not 0 < int(chosen["limit"]) < 2**31:
            raise InvalidInput(f"limit: '{chosen['limit']:.20}' is not a count from 1")
        chosen["limit"] = int(chosen["limit"])
    return chosen


@router.get("/audit")
def audit_page(request: Request, pmo: Acting) -> Response:
    """The search form, and the events it finds (the first SHOWN of them)."""
    filters, events, problem, more = {}, None, None, False
    searched = "search" in request.query_params
    try:
        filters = event_filters(request)
        if searched:
            wanted = filters.get("limit")
            found = pmo.audit_events(**{**filters, "limit": min(wanted or SHOWN + 1, SHOWN + 1)})
            more, events = len(found) > SHOWN, found[:SHOWN]
    except PmoflowError as exc:
        problem = problem_of(exc)
    return _audit(request, pmo, filters, events, more, problem, 200 if problem is None else problem["status"])


def _audit(request: Request, pmo: Pmoflow, filters: dict[str, Any], events: list[dict[str, Any]] | None,
           more: bool, problem: dict[str, Any] | None, status: int, **extra: Any) -> Response:
    query = str(request.url.query)
    downloads = "&".join(p for p in query.split("&") if p and not p.startswith("search="))
    rows = [{**e, "text": _short(reporting.describe(e) if e.get("instance_id") is not None else
                                 json.dumps(e["payload"], default=str))} for e in events or []]
    return render(request, pmo, "audit.html", {
        "section": "audit", "filters": filters, "events": rows, "searched": events is not None, "more": more,
        "shown": SHOWN, "downloads": downloads, "problem": problem, "types": sorted(audit.EVENT_TYPES),
        "processes": {p["process_id"]: p["name"] for p in pmo.processes()},
        "query": request.query_params, "advanced": bool(set(filters) - BASIC_FILTERS), **extra},
        status_code=status)


def _short(text: str, limit: int = 180) -> str:
    """A table cell's worth of an event's description (the downloads carry all of it)."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


@router.get("/audit/events.csv")
def events_csv(request: Request, pmo: Acting) -> Response:
    """Every event the filters find, as `pmoflow audit events --format csv` writes them."""
    events = pmo.audit_events(**event_filters(request))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(audit.CSV_COLUMNS)
    writer.writerows(audit.csv_row(e) for e in events)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="pmoflow-events.csv"'})


@router.get("/audit/events.json")
def events_json(request: Request, pmo: Acting) -> Response:
    """Every event the filters find, as `pmoflow audit events --format json` writes them."""
    events = pmo.audit_events(**event_filters(request))
    return Response(json.dumps(events, indent=2, default=str) + "\n", media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="pmoflow-events.json"'})


@router.get("/audit/verify")
def verify(request: Request, pmo: Acting, instance: str | None = None) -> Response:
    """Re-compute the hash chains and re-derive what the engine acts on (`pmoflow audit verify [INSTANCE]`)."""
    try:
        result = pmo.verify_record(instance.strip() if instance and instance.strip() else None)
    except PmoflowError as exc:
        return _audit(request, pmo, {}, None, False, problem_of(exc), classify(exc)[0])
    return _audit(request, pmo, {}, None, False, None, 200, verification=result,
                  verified_instance=instance or None)


def report_response(report: dict[str, Any], fmt: str, name: str, download: bool) -> Response:
    """A report in one of the CLI's formats; HTML under its own policy (inline style only)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format: '{fmt:.20}' is not one of {', '.join(FORMATS)}")
    headers = {"Content-Security-Policy": REPORT_POLICY} if fmt == "html" else {}
    if download or fmt != "html":
        headers["Content-Disposition"] = f'{"attachment" if download else "inline"}; filename="{name}.{fmt}"'
    return Response(reporting.render(report, fmt), media_type=FORMATS[fmt], headers=headers)


@router.get("/audit/report")
def report_of(instance: int, format: str = "html", download: bool = False) -> Response:
    """Where the report form (an instance number) leads."""
    return redirect(f"/audit/report/{instance}", format=format, download=1 if download else None)


@router.get("/audit/report/{instance_id}")
def instance_report(instance_id: int, pmo: Acting, format: str = "html", download: bool = False) -> Response:
    """One instance's audit report, as `pmoflow report INSTANCE --format html|md|json` writes it."""
    return report_response(pmo.report(instance_id), format, f"instance-{instance_id}-report", download)


@router.get("/audit/process-report")
def process_report(request: Request, pmo: Acting, process: str = "", period: str = "", since: str = "",
                   until: str = "", override: str = "", format: str = "html", download: bool = False) -> Response:
    """One process over a period (`pmoflow report --process P --period Q`); refusals show on the audit page."""
    try:
        report = pmo.process_report(process.strip(), since.strip() or None, until.strip() or None,
                                    period.strip() or None, override.strip() or None)
        return report_response(report, format, f"{process.strip() or 'process'}-report", download)
    except PmoflowError as exc:
        return _audit(request, pmo, {}, None, False, problem_of(exc), classify(exc)[0])
