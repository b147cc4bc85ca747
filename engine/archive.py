"""Archives: finished instances' history moved out of the database into a file that verifies on its own.

Normal operation never removes history. `pmoflow audit archive --before DATE --to FILE` is the one explicit way:
it writes every completed or terminated instance that ended before DATE, with all of its events, to FILE, then
removes those instances (events, tasks, rows) in the same transaction that records the act in the database's
`archive` chain (file name, archive id, digest, instances, event count). If anything fails nothing is removed.

The file is JSON Lines, UTF-8:

    {"format": "pmoflow-audit-archive", "version": 1, "archive_id": ..., "created_at": ..., "created_by": ..., ...}
    {"instance": {... the instance's row, with its chain head last_seq/last_hash ...}, "events": [{...}, ...]}
    ...
    {"end": true, "instances": N, "events": M, "digest": "<sha256 of every line above, as bytes>",
     "signature": "<HMAC of the archive id and digest under the audit key, when one is configured>"}

Each event keeps every field its hash covers, so `verify_file` re-computes each instance's chain (an altered,
removed, inserted or reordered event shows, as in the database) and the digest over the whole file (an edited
header or instance line shows). Someone who edits the file and re-computes every hash would pass those checks;
the signature catches that when the audit key is at hand (see engine/anchor.py), and so does the digest the
database recorded when it wrote the file. `check_recorded` compares a file with that record (a file this
database never wrote is reported), and `check_folder` looks for every archive the record lists in a folder
(a missing one is reported).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pmoflow.engine import anchor, audit, clock
from pmoflow.engine.errors import InvalidInput
from pmoflow.engine.models import Event, EventFact, HumanTask, ProcessDefinition, ProcessInstance

FORMAT, VERSION = "pmoflow-audit-archive", 1
FINISHED = ("completed", "terminated")
HASHED_FIELDS = ("stream", "seq", "instance_id", "process_id", "process_version", "at", "actor", "type",
                 "task_bpmn_id", "task_name", "payload", "prev_hash", "hash")


def _line(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def _event_record(e: Event) -> dict[str, Any]:
    record = {name: getattr(e, name) for name in HASHED_FIELDS}
    record["at"] = clock.as_db(e.at).isoformat(timespec="microseconds")
    return record


def _instance_record(i: ProcessInstance, definition: ProcessDefinition | None) -> dict[str, Any]:
    return {"instance_id": i.id, "process_id": i.process_id, "version": i.version, "status": i.status,
            "business_key": i.business_key, "started_by": i.started_by,
            "started_at": clock.as_utc(i.started_at).isoformat(), "ended_at": clock.as_utc(i.updated_at).isoformat(),
            "error": i.error, "last_seq": i.last_seq, "last_hash": i.last_hash,
            "content_hash": definition.content_hash if definition else None}


def candidates(session: Session, before: datetime) -> list[int]:
    """Instances that may be archived: finished (completed or terminated) before `before`."""
    return list(session.scalars(select(ProcessInstance.id).where(
        ProcessInstance.status.in_(FINISHED), ProcessInstance.updated_at < before).order_by(ProcessInstance.id)))


def write(session: Session, path: Path, before: datetime, actor: str, database: str) -> dict[str, Any]:
    """Write the archive, remove what it holds and record the act, all in the caller's transaction. The file is
    complete and synced before anything is removed; it is deleted again if the transaction fails here."""
    ids = candidates(session, before)
    if not ids:
        return {"file": None, "instances": 0, "events": 0, "instance_ids": []}
    header = {"format": FORMAT, "version": VERSION, "archive_id": str(uuid.uuid4()),
              "created_at": clock.as_utc(clock.db_now()).isoformat(), "created_by": actor, "database": database,
              "before": clock.as_utc(before).isoformat(), "statuses": list(FINISHED)}
    digest, total, heads = hashlib.sha256(), 0, []
    key = anchor.current_key(session)
    try:
        with open(path, "xb") as fh:
            for record in _records(session, header, ids):
                line = _line(record)
                digest.update(line)
                fh.write(line)
                if "instance" in record:
                    total += len(record["events"])
                    heads.append({"instance_id": record["instance"]["instance_id"],
                                  "last_seq": record["instance"]["last_seq"],
                                  "last_hash": record["instance"]["last_hash"]})
            trailer = {"end": True, "instances": len(ids), "events": total, "digest": digest.hexdigest()}
            if key is not None:
                trailer["signature"] = key.mac(FORMAT, header["archive_id"], digest.hexdigest())
            fh.write(_line(trailer))
            fh.flush()
            os.fsync(fh.fileno())
    except FileExistsError:
        raise InvalidInput(f"{path} exists already; archives are never overwritten: choose a new file") from None
    except OSError as exc:
        _remove(path)
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        task_ids = select(HumanTask.id).where(HumanTask.instance_id.in_(ids))
        event_ids = select(Event.id).where(Event.instance_id.in_(ids))
        session.execute(delete(EventFact).where(EventFact.event_id.in_(event_ids)))
        session.execute(delete(Event).where(Event.instance_id.in_(ids)))
        session.execute(delete(HumanTask).where(HumanTask.id.in_(task_ids)))
        session.execute(delete(ProcessInstance).where(ProcessInstance.id.in_(ids)))
        event = audit.add_archive_event(session, actor, file=Path(path).name, archive_id=header["archive_id"],
                                        digest=digest.hexdigest(), before=header["before"], instances=ids,
                                        events=total, heads=heads, signed=key is not None)
        anchor.seal_archived(session, heads)
        session.flush()
    except BaseException:
        _remove(path)
        raise
    return {"file": str(path), "archive_id": header["archive_id"], "digest": digest.hexdigest(),
            "instances": len(ids), "events": total, "instance_ids": ids, "recorded_as": event.seq}


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _records(session: Session, header: dict[str, Any], ids: list[int]) -> Iterator[dict[str, Any]]:
    yield header
    definitions: dict[tuple[str, int], ProcessDefinition | None] = {}
    for instance_id in ids:
        instance = session.get(ProcessInstance, instance_id)
        assert instance is not None, "ids are candidates read in this same transaction"
        key = (instance.process_id, instance.version)
        if key not in definitions:
            definitions[key] = session.scalar(select(ProcessDefinition).where(
                ProcessDefinition.process_id == key[0], ProcessDefinition.version == key[1]))
        events = audit.history(session, instance_id)
        yield {"instance": _instance_record(instance, definitions[key]), "events": [_event_record(e) for e in events]}


def _as_event(record: dict[str, Any]) -> SimpleNamespace:
    values = {name: record.get(name) for name in HASHED_FIELDS}
    values["at"] = datetime.fromisoformat(record["at"]) if isinstance(record.get("at"), str) else None
    return SimpleNamespace(**values)


def verify_file(path: str | Path, key: anchor.Key | None = None) -> dict[str, Any]:
    """Check an archive on its own: its structure, every instance's hash chain against its recorded head, the
    counts, the digest over the file and, with the audit key, its signature. Returns {ok, archive_id, digest,
    instances, events, signed, findings}."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    lines = raw.splitlines(keepends=True)
    findings: list[dict[str, Any]] = []
    if not lines:
        raise InvalidInput(f"{path} is empty: not a pmoflow archive")
    try:
        header = json.loads(lines[0])
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInput(f"{path} is not a pmoflow audit archive (its first line is not an archive header)")
    digest, instances, events, end, signed = hashlib.sha256(), 0, 0, None, False
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            findings.append({"line": number, "instance_id": None, "seq": None, "problem": "not valid JSON"})
            digest.update(line)
            continue
        if isinstance(record, dict) and record.get("end") is True:
            end = (number, record)
            break
        digest.update(line)
        if number == 1:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("instance"), dict) \
                or not isinstance(record.get("events"), list):
            findings.append({"line": number, "instance_id": None, "seq": None,
                             "problem": "not an instance record"})
            continue
        instance, chain = record["instance"], record["events"]
        instances += 1
        events += len(chain)
        try:
            head = (int(instance["last_seq"]), str(instance["last_hash"]))
            problem: tuple[int | None, str] | None = audit.check_stream([_as_event(e) for e in chain], head)
            wrong_stream = next((e for e in chain if e.get("stream") != f"instance/{instance['instance_id']}"), None)
        except (KeyError, TypeError, ValueError) as exc:
            problem, wrong_stream = (None, f"the instance record is incomplete ({type(exc).__name__}: {exc})"), None
        if problem is None and wrong_stream is not None:
            problem = (wrong_stream.get("seq"), f"event {wrong_stream.get('seq')} belongs to another instance")
        if problem:
            findings.append({"line": number, "instance_id": instance.get("instance_id"), "seq": problem[0],
                             "problem": problem[1]})
    if end is None:
        findings.append({"line": len(lines), "instance_id": None, "seq": None,
                         "problem": "the file ends without its closing line (truncated?)"})
    else:
        number, trailer = end
        if number != len(lines):
            findings.append({"line": number + 1, "instance_id": None, "seq": None,
                             "problem": "lines follow the closing line"})
        if trailer.get("digest") != digest.hexdigest():
            findings.append({"line": number, "instance_id": None, "seq": None,
                             "problem": "the file's digest does not match its content (the file was edited)"})
        if (trailer.get("instances"), trailer.get("events")) != (instances, events):
            findings.append({"line": number, "instance_id": None, "seq": None,
                             "problem": f"the closing line counts {trailer.get('instances')} instances and "
                                        f"{trailer.get('events')} events; the file holds {instances} and {events}"})
        signed = "signature" in trailer
        if signed and key is not None and not key.matches(trailer["signature"], FORMAT, header.get("archive_id"),
                                                          digest.hexdigest()):
            findings.append({"line": number, "instance_id": None, "seq": None,
                             "problem": "the archive's signature does not match its content: it was forged or "
                                        "re-hashed, or signed with another audit key"})
    return {"ok": not findings, "file": str(path), "archive_id": header.get("archive_id"),
            "created_at": header.get("created_at"), "created_by": header.get("created_by"),
            "before": header.get("before"), "digest": digest.hexdigest(), "instances": instances,
            "events": events, "signed": signed, "findings": findings}


def recorded(session: Session, archive_id: str | None) -> Event | None:
    """The database's record of writing an archive, found by its archive id."""
    if not archive_id:
        return None
    for event in session.scalars(select(Event).where(Event.stream == audit.ARCHIVE_STREAM, Event.type == "archived")
                                 .order_by(Event.seq)):
        if (event.payload or {}).get("archive_id") == archive_id:
            return event
    return None


def check_recorded(session: Session, result: dict[str, Any]) -> None:
    """Compare a checked archive (`verify_file`'s result, updated in place) with this database's record of
    writing it: a file it never wrote (foreign, or forged under a new id), a different digest, or a signature
    that went missing are findings."""
    event = recorded(session, result["archive_id"])
    if event is None:
        result["findings"].append({"line": None, "instance_id": None, "seq": None, "problem": (
            "this database has no record of writing this archive: it is foreign, or was forged under a new id")})
        return
    payload = event.payload or {}
    result["recorded"] = {"seq": event.seq, "at": clock.as_utc(event.at).isoformat(), "actor": event.actor,
                          "digest": payload.get("digest")}
    if payload.get("digest") != result["digest"]:
        result["findings"].append({"line": None, "instance_id": None, "seq": None, "problem": (
            f"the digest recorded when the archive was written (archive event {event.seq}) differs from the "
            "file's: the file was changed since")})
    elif payload.get("signed") and not result["signed"]:
        result["findings"].append({"line": None, "instance_id": None, "seq": None, "problem": (
            f"the archive was signed when it was written (archive event {event.seq}); its signature is gone")})


def check_folder(session: Session, folder: str | Path, key: anchor.Key | None) -> list[dict[str, Any]]:
    """Every archive the database's archive chain records must be in `folder`, unchanged; any other archive
    there is foreign. Findings name the archive stream and the archive event."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"--archives: {folder} is not a folder")
    findings, listed = [], set()
    for event in session.scalars(select(Event).where(Event.stream == audit.ARCHIVE_STREAM, Event.type == "archived")
                                 .order_by(Event.seq)):
        name = str((event.payload or {}).get("file"))
        listed.add(name)
        path = folder / name
        if not path.is_file():
            findings.append(audit.finding(audit.ARCHIVE_STREAM, event.seq, f"archive {name} (archive event "
                                          f"{event.seq}) is missing from {folder}"))
            continue
        try:
            result = verify_file(path, key)
        except InvalidInput as exc:
            result = {"archive_id": None, "findings": [{"problem": exc.message}]}
        if result["archive_id"] != (event.payload or {}).get("archive_id"):
            problem: str | None = "it is not the archive that was written (another archive id)"
        else:
            check_recorded(session, result)
            problem = result["findings"][0]["problem"] if result["findings"] else None
        if problem:
            findings.append(audit.finding(audit.ARCHIVE_STREAM, event.seq, f"archive {name} (archive event "
                                          f"{event.seq}) in {folder}: {problem}"))
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name not in listed and _is_archive(p)):
        findings.append(audit.finding(audit.ARCHIVE_STREAM, None, f"{path.name} in {folder} is an archive this "
                                      "database never wrote (foreign, or forged)"))
    return findings


def _is_archive(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            header = json.loads(fh.readline(65536))
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT
