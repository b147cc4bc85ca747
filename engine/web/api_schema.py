"""What the REST API's requests and answers look like, for its OpenAPI document: request bodies (checked, so a
malformed one is a 400 naming each field), answer shapes (the dicts the Python API returns and `--json` prints;
documented, not re-validated on every answer), and the problem details every error comes as.

Answer models allow extra keys: a new key in a service's answer is not a breaking change. The API's tests check
that every key an answer carries is documented here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Json = dict[str, Any]


class Body(BaseModel):
    """A request body: unknown keys are refused (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# -- request bodies ------------------------------------------------------------------------------------------

class StartBody(Body):
    process_id: str = Field(description="The process to start (its newest version).")
    data: Json = Field(default_factory=dict, description="The start form's data.")
    business_key: str | None = Field(None, description="Your own reference for the instance.")


class DataBody(Body):
    data: Json = Field(default_factory=dict, description="The form's data, as a JSON object.")


class DelegateBody(Body):
    to: str = Field(description="Who gets the task: a user who may take it too.")


class ReasonBody(Body):
    reason: str | None = Field(None, description="Why: recorded with the act.")


class RepairBody(ReasonBody):
    data: Json | None = Field(None, description="Corrected data for the failed task (retry needs a reason "
                                               "with it), or the skipped task's result.")


class DataEditBody(ReasonBody):
    set: Json = Field(description="The fields to change, as a JSON object.")


class MigrateBody(ReasonBody):
    to_version: int = Field(ge=1, le=2**31 - 1, description="The deployed version to move to.")
    dry_run: bool = Field(False, description="Only say what would happen; change nothing.")


class BulkMigrateBody(MigrateBody):
    from_version: int = Field(ge=1, le=2**31 - 1, description="The version whose unfinished instances move.")


class MessageBody(Body):
    name: str = Field(description="The message name, as the BPMN names it.")
    data: Json = Field(default_factory=dict, description="The message's payload.")
    correlate: Json = Field(default_factory=dict,
                            description="Correlation values (KEY=VALUE of the CLI's --correlate).")


# -- answers -------------------------------------------------------------------------------------------------

class User(Answer):
    name: str
    roles: list[str]
    full_name: str | None = None
    department: str | None = None


class Me(User):
    email: str | None = None


class Definition(Answer):
    process_id: str
    version: int
    name: str
    content_hash: str
    deployed_by: str
    deployed_at: str | None
    start_form: str | None
    files: list[str]


class Schedule(Answer):
    process_id: str
    version: int
    start_event: str
    expression: str
    next_due: str | None
    remaining: int | None
    fired: int
    owner: str | None


class Deployed(Definition):
    created: bool = Field(description="False when an identical version was deployed already.")
    schedules: list[Schedule] | None = None


class Finding(Answer):
    file: str = Field(description="The file's name as uploaded (a path inside a zip).")
    line: int
    column: int
    severity: Literal["error", "warning"]
    element_id: str | None
    message: str
    hint: str | None


class Validation(Answer):
    findings: list[Finding] = Field(description="Every finding; errors block a deploy.")
    files: list[str] = Field(description="The files checked.")
    ignored: list[str] = Field(description="Files of a zip that are not BPMN, DMN or JSON, left out.")


class Deployment(Validation):
    deployed: list[Deployed] = Field(description="What `pmoflow deploy --json` prints.")


class Diff(Answer):
    process_id: str
    from_version: int
    to_version: int
    changes: list[Json]
    summary: dict[str, int]


class Instance(Answer):
    instance_id: int
    process_id: str
    version: int
    status: Literal["running", "waiting", "completed", "error", "suspended", "terminated"]
    business_key: str | None
    started_by: str
    started_at: str | None
    updated_at: str | None
    next_due: str | None
    error: Json | None


class Task(Answer):
    id: int
    instance_id: int
    process_id: str
    name: str
    bpmn_id: str
    lane: str | None
    candidates: list[str]
    candidate_kind: str | None
    excluded: list[str]
    assignee: str | None
    due: str | None
    state: str
    form: str | None
    instructions: str
    created_at: str | None
    completed_by: str | None
    completed_at: str | None


class TaskDetail(Task):
    instance_lock_version: int = Field(description="Its instance's lock version: the task's ETag.")
    data: Json | None = Field(None, description="The task's data, while it is open.")
    form_schema: Json | None = Field(None, alias="schema", description="The form's JSON Schema, while it is open.")
    ui_schema: Json | None = Field(None, description="The modeler's UI schema (formUiSchemaFilename), if any.")


class InstanceDetail(Instance):
    data: Json
    tasks: list[Task]
    calls: list[Json]
    lock_version: int = Field(description="Bumped by every change: the instance's ETag.")


class Event(Answer):
    seq: int
    at: str
    actor: str
    type: str
    instance_id: int | None
    process_id: str | None
    process_version: int | None
    task: str | None
    task_name: str | None
    payload: Json | None
    hash: str


class AuditEvent(Event):
    stream: str
    prev_hash: str


class Run(Answer):
    instance_id: int
    status: str
    error: Json | None


class Started(Run):
    process_id: str
    version: int


class Completed(Run):
    task_id: int


class DataEdit(Answer):
    instance_id: int
    status: str
    tasks: list[str]
    before: Json
    after: Json


class Migration(Answer):
    instance_id: int
    from_version: int
    to_version: int
    dry_run: bool
    outcome: Literal["migrated", "would-migrate", "refused"]
    reasons: list[Json]
    process_id: str | None = None
    status: str | None = None
    changes: Json | None = Field(None, description="What the move changed (added, removed, changed elements).")


class BulkMigration(Answer):
    process_id: str
    from_version: int
    to_version: int
    dry_run: bool
    instances: list[Migration]
    migrated: list[int]
    would_migrate: list[int]
    refused: list[Json]


class MessageSent(Answer):
    message: str
    correlation: Json
    delivered_to: list[int]


class MessageWait(Answer):
    message: str
    instance_id: int
    process_id: str
    status: str
    waiting_at: str
    expects: Json


class Notification(Answer):
    id: int
    notification_id: str | None
    instance_id: int | None
    process_id: str | None
    kind: str
    subject: str
    channel: str | None
    recipient: str
    via_role: str | None
    task: str | None
    task_name: str | None
    human_task_id: int | None
    created_at: str
    delivered_at: str | None
    new: bool = Field(description="Delivered by this very listing.")


class Verification(Answer):
    ok: bool
    checked_events: int
    findings: list[Json]
    anchoring: Json


class InstanceReport(Answer):
    kind: Literal["instance"]
    generated_at: str
    summary: Json
    verification: Json
    timeline: list[Json]
    steps: list[Json]
    step_totals: Any
    decisions: list[Json]
    gateways: list[Json]
    duties: list[Json]
    admin: list[Json]
    errors: list[Json]
    data: Json
    diagram: Any


class ProcessReport(Answer):
    kind: Literal["process"]
    generated_at: str
    process: Any
    period: Any
    counts: dict[str, int]
    versions: list[Json]
    cycle_times: Json
    steps: list[Json]
    override_rule: Any
    overrides: list[Json] | None
    late_tasks: list[Json]
    duty_refusals: list[Json]
    admin: list[Json]
    open_findings: list[Json]
    instances: list[Json]


# -- problems ------------------------------------------------------------------------------------------------

# In the OpenAPI document's components (app.openapi_document puts it there): every error response refers to it.
PROBLEM_SCHEMA: Json = {
    "type": "object", "title": "Problem",
    "description": "RFC 9457 problem details; `detail` is the CLI's message and `exit_code` the CLI's exit code.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:pmoflow:problem:<kind>"},
        "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
        "exit_code": {"type": "integer"},
        "details": {"type": "array", "items": {"type": "string"}},
        "errors": {"type": "array", "description": "422 (and 400): every field's error",
                   "items": {"type": "object", "properties": {"field": {"type": "string"},
                                                              "message": {"type": "string"}}}},
        "rule": {"type": "string", "description": "403 for a segregation-of-duties refusal: the rule"},
        "findings": {"type": "array", "items": {"type": "object"},
                     "description": "A refused upload: every finding, with file and line"},
        "result": {"type": "object", "description": "A refused migration: each reason"},
    },
}

_MEANINGS = {
    400: "Usage: a malformed parameter or body, or input the service refuses",
    401: "Not signed in: no session or bearer token, or a revoked or unknown one",
    403: "A role or a duty forbids it (a segregation-of-duties refusal names its `rule` and is recorded), or "
         "a session request without its CSRF token",
    404: "No such instance, task, process or user",
    409: "Conflict: taken by someone else, changed concurrently, or in a state that does not allow it",
    412: "If-Match names a version the instance is no longer at: nothing was changed",
    413: "The request body is over the size limit",
    422: "Data that does not fit the form (every field's error), or files that do not validate",
}


_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def errors(*statuses: int) -> dict[int | str, Json]:
    """OpenAPI `responses` entries for these error statuses (401 always), and `default`: any other error is a
    problem too (a parameter that does not parse is a 400, never FastAPI's 422 validation error)."""
    return {**{status: {"description": _MEANINGS[status], "content": _PROBLEM} for status in sorted({401, *statuses})},
            "default": {"description": "Any other error (413, 429, 500, 503): problem details", "content": _PROBLEM}}


def report(model: type[BaseModel] | Any, description: str) -> dict[int | str, Json]:
    """`responses` for a report route: the model as JSON inline, or HTML or Markdown (as a download)."""
    return {200: {"model": model, "description": description,
                  "content": {"text/html": {"schema": {"type": "string"}},
                              "text/markdown": {"schema": {"type": "string"}}}},
            **errors(400, 404)}


def answer(model: type[BaseModel] | Any, description: str = "OK", status: int = 200,
           *more: int) -> dict[int | str, Json]:
    """`responses` for a route answering `model` (as JSON) with `status`, and the errors `more`."""
    return {status: {"model": model, "description": description}, **errors(*more)}


def media(media_type: str, description: str, *more: int) -> dict[int | str, Json]:
    """`responses` for a route answering a document of `media_type` (an SVG, a CSV, a report)."""
    return {200: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}},
            **errors(*more)}
