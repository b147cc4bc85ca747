"""The auditor's part of the REST API: events across instances with the CLI's filters (as JSON or a CSV or JSON
download), and verifying the record. The instance report and the process report sit with their nouns
(`/instances/{id}/report`, `/processes/{id}/report`)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from pmoflow.engine.web import api_schema as schema
from pmoflow.engine.web.answers import JSON, ok
from pmoflow.engine.web.auth import Acting

router = APIRouter(default_response_class=JSON)


@router.get("/audit/events", tags=["audit"], summary="Events across instances, filtered (`pmoflow audit events`)",
            responses={200: {"model": list[schema.AuditEvent],
                             "description": "Oldest first. With `format`, a download (Content-Disposition): "
                                            "JSON as `--format json` writes it, or CSV with the CLI's columns",
                             "content": {"text/csv": {"schema": {"type": "string"}}}},
                       **schema.errors(400, 404)})
def events(
        pmo: Acting,
        process: Annotated[str | None, Query(description="Only this process (its id).")] = None,
        version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this process version.")] = None,
        instance: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this instance.")] = None,
        actor: Annotated[str | None, Query(description="Only what this user did.")] = None,
        role: Annotated[str | None, Query(description="Only what holders of this role did (at the time).")] = None,
        type: Annotated[list[str] | None, Query(description="Only these event types (repeat the parameter): "
                                                            "task_completed, decision, gateway, retry, skip, ...")
                        ] = None,
        task: Annotated[str | None, Query(description="Only events of this task (its BPMN id).")] = None,
        since: Annotated[str | None, Query(description="From this date or time (ISO, UTC unless a zone is "
                                                       "given).")] = None,
        until: Annotated[str | None, Query(description="Up to this date (inclusive) or time.")] = None,
        period: Annotated[str | None, Query(description="A whole period instead: 2027, 2027-Q1, 2027-03 or "
                                                        "2027-03-31.")] = None,
        where: Annotated[list[str] | None, Query(description="PATH=VALUE or PATH!=VALUE on the payload (repeat): "
                                                             "data.gateDecision=Stop")] = None,
        late: Annotated[bool, Query(description="Only tasks completed after their due time.")] = False,
        by_starter: Annotated[bool, Query(description="Only tasks completed by the instance's starter.")] = False,
        override: Annotated[str | None, Query(description="SUBMITTED=RECOMMENDED: only submissions that differ "
                                                          "from the latest recommendation before them")] = None,
        limit: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="At most this many (the oldest "
                                                                            "first); default: all.")] = None,
        format: Annotated[Literal["json", "csv"] | None, Query(description="A download in this format.")] = None,
) -> Response:
    """Every filter is answered from an index, as in the CLI. Filters naming something the record does not
    know are refused (400) with the valid names."""
    found = pmo.audit_events(process=process, version=version, instance=instance, actor=actor, role=role,
                             types=type or (), task=task, since=since, until=until, period=period,
                             where=where or (), late=late, by_starter=by_starter, override=override, limit=limit)
    if format is None:
        return ok(found)
    attachment = {"Content-Disposition": f'attachment; filename="audit-events.{format}"'}
    if format == "json":
        return ok(found, headers=attachment)
    from pmoflow.engine.audit import CSV_COLUMNS, csv_row

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(e) for e in found)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=attachment)


@router.get("/audit/verify", tags=["audit"], summary="Verify the audit record (every chain, or one instance's)",
            responses=schema.answer(schema.Verification, "`pmoflow audit verify --json`: `ok` false lists each "
                                                         "stream's first problem", 200, 404))
def verify(pmo: Acting,
           instance: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this instance.")] = None,
           ) -> Response:
    """Re-computes the hash chains, re-derives what the engine acts on, and checks the seals made with the audit
    key when the server holds it (`anchoring` says). Answers 200 either way: read `ok`."""
    return ok(pmo.verify_record(instance))
