"""The designer's tools: validate, deploy, test, draw, compare and migrate process versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pmoflow.engine import audit, clock, parser, runtime, scenario, serialization
from pmoflow.engine import schedules as start_timers
from pmoflow.engine.errors import DatabaseUnavailable, NotFound, PmoflowError
from pmoflow.engine.models import ProcessDefinition, ProcessSchedule, UserRole
from pmoflow.engine.services.advance import newest_definitions
from pmoflow.engine.services.context import ADMINISTRATOR, DESIGNER, Context, authorised, definition_row


def known_roles(ctx: Context) -> set[str] | None:
    """The roles lanes may name: the organisation's in the database when one is initialised, else those of the
    installed libraries' organisation files (None: no organisation anywhere, lanes are not checked)."""
    try:
        ctx.db.check_schema()
        with ctx.tx() as session:
            roles = set(session.scalars(select(UserRole.role).distinct()))
            if roles:
                return roles
    except DatabaseUnavailable:
        pass  # no database (or not initialised): a designer's check needs none
    return set().union(*(library.roles() for library in ctx.libraries)) or None


def validate(ctx: Context, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Lint files without storing anything: every finding, errors and warnings, as a dict (file, line, column,
    severity, element_id, message, hint). Raises InvalidProcess (parser.InvalidFiles, whose `findings` hold
    them all) when any is an error."""
    findings = parser.lint(paths, handlers=set(ctx.handlers), roles=known_roles(ctx), form_dirs=ctx.form_dirs)
    parser.refuse_errors(findings)
    return [finding.as_dict() for finding in findings]


def deploy(ctx: Context, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Store each process as a new version, unless an identical version exists already. Needs the role
    Process Designer or PMO Administrator."""
    parsed = _parse(ctx, paths)
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = authorised(ctx, session, "deploying processes", DESIGNER, ADMINISTRATOR).name
        return [_deploy_one(session, process, actor) for process in parsed]


def deploy_as(ctx: Context, paths: Sequence[str | Path], actor: str) -> list[dict[str, Any]]:
    """Deploy on behalf of `actor` whose authority was checked by the caller (`init`)."""
    parsed = _parse(ctx, paths)
    with ctx.tx() as session:
        return [_deploy_one(session, process, actor) for process in parsed]


def _parse(ctx: Context, paths: Sequence[str | Path]) -> list[parser.ParsedProcess]:
    # parse() checks each JSON Schema form and each UI schema as what it is (a UI schema is no JSON Schema:
    # its keys are field names, so a field called "description" would fail the meta-schema)
    return parser.parse(paths, handlers=set(ctx.handlers), form_dirs=ctx.form_dirs)


def _deploy_one(session: Session, process: parser.ParsedProcess, actor: str) -> dict[str, Any]:
    from pmoflow.engine.views import definition_view

    digest = process.content_hash
    same = session.scalar(select(ProcessDefinition).where(
        ProcessDefinition.process_id == process.process_id, ProcessDefinition.content_hash == digest))
    if same is not None:
        return {**definition_view(same), "created": False}
    latest = session.scalar(select(func.max(ProcessDefinition.version)).where(
        ProcessDefinition.process_id == process.process_id)) or 0
    definition = ProcessDefinition(
        process_id=process.process_id, version=latest + 1, name=process.name, content_hash=digest,
        sources=process.sources, spec=serialization.dump_specs(process.spec, process.subprocess_specs),
        start_form=process.start_form, deployed_by=actor, deployed_at=clock.db_now())
    session.add(definition)
    session.flush()
    timers = [start_timers.view(s, definition.version) for s in _replace_schedules(session, definition, actor)]
    audit.add_definition_event(session, process.process_id, definition.version, actor, "deployed",
                               content_hash=digest, files=sorted(process.sources),
                               **({"schedules": timers} if timers else {}))
    return {**definition_view(definition), "created": True, "schedules": timers}


def _replace_schedules(session: Session, definition: ProcessDefinition, actor: str) -> list[ProcessSchedule]:
    """The new version's timer start events replace the process's schedules. One with the same start event
    and expression as before keeps its next due time and count, so a redeploy does not reset a yearly clock.
    The deploying user owns the schedules: the instances a timer starts belong to whoever put the schedule
    in place, who is accountable for them (and is `process_initiator()` in their scripts)."""
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    old = {(s.bpmn_id, s.expression): s for s in session.scalars(
        select(ProcessSchedule).where(ProcessSchedule.process_id == definition.process_id))}
    kept = []
    for bpmn_id, event in runtime.start_events(session, definition, TimerEventDefinition):
        previous = old.pop((bpmn_id, event.expression), None)
        if previous is not None:
            previous.definition_id, previous.owner = definition.id, actor
            kept.append(previous)
            continue
        timing = start_timers.first(definition.process_id, bpmn_id, event.expression, definition.deployed_at)
        kept.append(ProcessSchedule(process_id=definition.process_id, definition_id=definition.id,
                                    bpmn_id=bpmn_id, expression=event.expression, next_due=timing.next_due,
                                    remaining=timing.remaining, owner=actor, fired=0))
    for gone in old.values():
        session.delete(gone)
    session.add_all(kept)
    session.flush()
    return kept


def test(ctx: Context, paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Run designers' scenario files (test_<name>.json beside the BPMN) without a database."""
    return [asdict(r) for r in scenario.run_tests(paths, handlers=ctx.handlers)]


def diagram(ctx: Context, process_id: str, version: int | None = None) -> str:
    """The deployed process drawn as SVG from its diagram interchange."""
    from pmoflow.engine.diagram import render_svg

    ctx.db.check_schema()
    with ctx.tx() as session:
        definition = definition_row(session, process_id, version)
        return render_svg(bpmn_source(definition, process_id), process_id,
                          title=f"{definition.name} v{definition.version}")


def bpmn_source(definition: ProcessDefinition, process_id: str) -> str:
    """The stored BPMN file that defines the process."""
    for name, text in definition.sources.items():
        if name.endswith((".bpmn", ".bpmn20.xml")) and f'id="{process_id}"' in text:
            return text
    raise NotFound(f"the BPMN source of {process_id} v{definition.version} is not stored")


def processes(ctx: Context) -> list[dict[str, Any]]:
    """Deployed processes at their newest version."""
    from pmoflow.engine.views import definition_view

    ctx.db.check_schema()
    with ctx.tx() as session:
        return [definition_view(d) for d in newest_definitions(session)]


def versions(ctx: Context, process_id: str) -> list[dict[str, Any]]:
    """Every deployed version of one process, oldest first (NotFound when none is)."""
    from pmoflow.engine.views import definition_view

    ctx.db.check_schema()
    with ctx.tx() as session:
        rows = session.scalars(select(ProcessDefinition).where(ProcessDefinition.process_id == process_id)
                               .order_by(ProcessDefinition.version)).all()
        if not rows:
            definition_row(session, process_id)  # raises NotFound, worded as everywhere
        return [definition_view(d) for d in rows]


def diff(ctx: Context, process_id: str, from_version: int | str, to_version: int | str) -> dict[str, Any]:
    """What changed between two deployed versions of a process: added, removed and changed elements."""
    from pmoflow.engine import migration

    ctx.db.check_schema()
    with ctx.tx() as session:
        return migration.diff(session, process_id, from_version, to_version)


def migrate(ctx: Context, instance_id: int | str, to_version: int | str, dry_run: bool = False,
            reason: str | None = None) -> dict[str, Any]:
    """Move a running instance to another deployed version of its process when it is safe, recorded as a
    `migrated` event; raises MigrationRefused (exit 1) with every reason when it is not. A dry run
    reports the outcome (`would-migrate` or `refused` with reasons) and changes nothing."""
    from pmoflow.engine import migration
    from pmoflow.engine.services.context import instance_row

    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = "dry-run" if dry_run else authorised(ctx, session, "migrating instances", ADMINISTRATOR).name
        instance = instance_row(session, instance_id)
        return migration.migrate(session, instance, to_version, actor, ctx.handlers, dry_run=dry_run,
                                 reason=reason)


def migrate_all(ctx: Context, process_id: str, from_version: int | str, to_version: int | str,
                dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
                reason: str | None = None) -> dict[str, Any]:
    """Move every unfinished instance of one version, each in its own transaction: the safe ones move, each
    refusal is reported with its reasons. `progress(done, total)` is called before and after each one."""
    from pmoflow.engine import migration

    ctx.db.check_schema()
    with ctx.tx() as session:
        if not dry_run:
            authorised(ctx, session, "migrating instances", ADMINISTRATOR)
        ids = migration.instances_on(session, process_id, from_version, to_version)
    results = []
    if progress is not None:
        progress(0, len(ids))
    for done, instance_id in enumerate(ids, 1):
        results.append(_migrate_one(ctx, instance_id, int(from_version), int(to_version), dry_run, reason))
        if progress is not None:
            progress(done, len(ids))
    return migration.bulk_result(process_id, from_version, to_version, dry_run, results)


def _migrate_one(ctx: Context, instance_id: int, from_version: int, to_version: int, dry_run: bool,
                 reason: str | None) -> dict[str, Any]:
    from pmoflow.engine import migration
    from pmoflow.engine.services.context import instance_row

    try:
        with ctx.tx() as session:
            actor = "dry-run" if dry_run else authorised(ctx, session, "migrating instances", ADMINISTRATOR).name
            instance = instance_row(session, instance_id)
            return migration.migrate(session, instance, to_version, actor, ctx.handlers, dry_run=dry_run,
                                     from_version=from_version, reason=reason)
    except migration.MigrationRefused as refused:
        return refused.result
    except PmoflowError as exc:  # a concurrent update, an instance gone: this one is reported, the rest go on
        return migration.refusal(instance_id, from_version, to_version, exc.message, dry_run)
