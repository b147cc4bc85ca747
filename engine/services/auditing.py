"""The auditor's record: query events across instances, verify the chains, archive finished history."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pmoflow.engine import anchor, audit
from pmoflow.engine.errors import DatabaseUnavailable, InvalidInput, NotFound
from pmoflow.engine.models import ProcessInstance
from pmoflow.engine.services.context import ADMINISTRATOR, Context, authorised, instance_row, int_id


def events(ctx: Context, process: str | None = None, version: int | str | None = None,
           instance: int | str | None = None, actor: str | None = None, role: str | None = None,
           types: tuple[str, ...] | list[str] = (), task: str | None = None,
           since: str | datetime | None = None, until: str | datetime | None = None,
           period: str | None = None, where: tuple[str, ...] | list[str] = (), late: bool = False,
           by_starter: bool = False, override: str | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """Events across instances, oldest first, filtered on indexed columns and facts (see audit.query).
    `where` conditions are `payload.path=value` (or `!=`); `override` is `SUBMITTED=RECOMMENDED`;
    `period` is 2027, 2027-Q1, 2027-03 or 2027-03-31. A filter naming something the record does not
    know is refused with the valid names."""
    chosen = filters(process=process, version=version, instance=instance, actor=actor, role=role, types=types,
                     task=task, since=since, until=until, period=period, where=where, late=late,
                     by_starter=by_starter, override=override, limit=limit)
    ctx.db.check_schema()
    with ctx.tx() as session:
        return [audit.export_view(e) for e in audit.query(session, chosen)]


def filters(since=None, until=None, period=None, version=None, instance=None, types=(), where=(),
            **rest: Any) -> audit.Filters:
    """The query's filters from what a user typed: a period or a since/until pair, numbers checked."""
    start: datetime | None
    end: datetime | None
    if period is not None:
        if since is not None or until is not None:
            raise InvalidInput("give --period, or --since/--until, not both")
        start, end = audit.parse_period(period)
    else:
        start = audit.parse_moment(since, "--since") if since is not None else None
        end = audit.parse_moment(until, "--until", end=True) if until is not None else None
        if isinstance(until, str) and len(until.strip()) != 10 and end is not None:
            end = end + timedelta(microseconds=1)  # a time given to the microsecond is included
    if version is not None:
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise InvalidInput(f"--version: '{version}' is not a version number") from None
    instance = int_id(instance, "instance") if instance is not None else None
    return audit.Filters(since=start, until=end, version=version, instance=instance, types=tuple(types),
                         where=tuple(where), **rest)


def verify_instance(ctx: Context, instance_id: int | str | None = None) -> dict[str, Any]:
    """Re-compute the instance hash chains (all, or one); every altered, removed, inserted or reordered event
    shows."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        if instance_id is not None:
            instance_id = instance_row(session, instance_id).id
        findings = audit.verify(session, instance_id)
        return {"ok": not findings, "checked_events": audit.count(session, instance_id), "findings": findings}


def verify_record(ctx: Context, instance_id: int | str | None = None, checkpoint: str | Path | None = None,
                  archives: str | Path | None = None) -> dict[str, Any]:
    """Re-compute the hash chains of every instance (or one), the deployment chains of the processes
    concerned (each stored version must match its `deployed` event) and the archive chain; re-derive what the
    engine acts on from them, and check the seals when the audit key is at hand (engine/coverage.py,
    anchor.py). With `checkpoint`, every stream must extend it; with `archives`, every recorded archive must be
    in that folder, unchanged. Findings name the stream, kind, instance or process, and the first bad seq;
    `anchoring` says whether the seals were checked."""
    from pmoflow.engine import archive

    if archives is not None and instance_id is not None:
        raise InvalidInput("--archives checks the whole record: give it without an INSTANCE")
    saved = anchor.read_checkpoint(checkpoint) if checkpoint is not None else None
    ctx.db.check_schema()
    with ctx.tx() as session:
        if instance_id is not None:
            instance_id = known_instance(session, instance_id).id
        findings = audit.check(session, instance_id, checkpoint=saved)
        if archives is not None:
            findings += archive.check_folder(session, archives, anchor.find_key(ctx.db.url)[0])
        checked = audit.count(session, instance_id)
        return {"ok": not findings, "checked_events": checked, "findings": findings,
                "anchoring": anchor.status(session)}


def checkpoint(ctx: Context, path: str | Path) -> dict[str, Any]:
    """Export every stream's head, signed with the audit key, to a new file an auditor keeps; `verify_record`
    with that file then reports any stream that no longer extends it."""
    ctx.db.check_schema()
    with ctx.tx() as session:
        return anchor.write_checkpoint(session, path, ctx.db.safe_url)


def known_instance(session: Session, instance_id: int | str) -> ProcessInstance:
    """The instance, or NotFound saying which archive took it when one did."""
    try:
        return instance_row(session, instance_id)
    except NotFound:
        archived = audit.archived_message(session, int_id(instance_id, "instance"))
        if archived:
            raise NotFound(archived) from None
        raise


def verify_archive(ctx: Context, path: str | Path) -> dict[str, Any]:
    """Check an archive file on its own (structure, every chain, the digest), then against this database's
    record of writing it when the database is at hand: a file edited and re-hashed shows there."""
    from pmoflow.engine import archive

    result = archive.verify_file(path, anchor.find_key(ctx.db.url)[0])
    result["recorded"] = None
    try:
        ctx.db.check_schema()
        with ctx.tx() as session:
            archive.check_recorded(session, result)
    except DatabaseUnavailable:
        result["note"] = "no database at hand: the file was checked on its own"
    result["ok"] = not result["findings"]
    return result


def archive(ctx: Context, before: str | datetime, path: str | Path) -> dict[str, Any]:
    """Move the history of instances that finished (completed or terminated) before `before` into a new
    archive file, then remove it from the database, recording the act; see engine/archive.py. Only a PMO
    Administrator may: it takes history out of the database."""
    from pmoflow.engine import archive as archives

    moment = audit.parse_moment(before, "--before")
    target = Path(path)
    if target.exists():
        raise InvalidInput(f"{target} exists already; archives are never overwritten: choose a new file")
    if not target.parent.is_dir():
        raise InvalidInput(f"cannot write {target}: folder {target.parent} does not exist")
    ctx.db.check_schema()
    with ctx.tx() as session:
        actor = authorised(ctx, session, "archiving history", ADMINISTRATOR)
        return archives.write(session, target, moment, actor.name, ctx.db.safe_url)
