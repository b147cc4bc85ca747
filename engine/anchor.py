"""The anchor: the audit record bound to a key kept outside the database.

Hash chains (engine/audit.py) show an event changed in place, but whoever can write to the database can also
re-compute every hash with pmoflow's own function and move the stored head. The anchor closes that. An HMAC key
that lives outside the database seals the head of every stream in `audit_seals` as
HMAC(key, [stream, seq, hash, digest]), at the commit of every transaction that wrote to the stream. The digest
binds what else decides behaviour to the head: an instance's serialized state, status, definition and starter;
a process's stored specs and start forms. `anchor/register` counts the instance streams ever sealed, so an
instance deleted with its events and its seal still shows; `anchor/key` says which key and since which event.

The key, first found of: `PMOFLOW_AUDIT_KEY_FILE` (a file path), `PMOFLOW_AUDIT_KEY` (the key itself), and for a
SQLite database the file beside it, `<database>.audit-key`, which `pmoflow init` creates (mode 0600) when no key
is configured. On PostgreSQL, `init` creates the file `PMOFLOW_AUDIT_KEY_FILE` names when it does not exist yet.

A sealed record refuses writes from a process without its key, or with another key: nothing is written unsealed.
A record not sealed yet (a database from before the anchor, or one initialised without a key) is sealed by the
next `pmoflow init` that has a key: from then on its state is vouched for; what happened before can only be
checked by the hash links. Someone holding both the database and the key can still rewrite everything;
checkpoints (`pmoflow audit checkpoint`), kept by an auditor, show any stream that no longer extends them.
Neither keys nor MACs ever appear in messages.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, event, func, insert, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.orm import object_session as _object_session

from pmoflow.engine import clock
from pmoflow.engine.errors import InvalidInput, PmoflowError
from pmoflow.engine.keyfile import ensure_key_file
from pmoflow.engine.models import AuditSeal, Event, ProcessDefinition, ProcessInstance

KEY_FILE_ENV, KEY_ENV = "PMOFLOW_AUDIT_KEY_FILE", "PMOFLOW_AUDIT_KEY"
KEY_SUFFIX = ".audit-key"
MIN_KEY = 32
KEY_ROW, REGISTER_ROW = "anchor/key", "anchor/register"
ARCHIVED = "archived"  # the digest of an instance's seal once an archive took its history out
CHECKPOINT_FORMAT = "pmoflow-audit-checkpoint"
NOT_CONFIGURED = f"no audit key is configured ({KEY_FILE_ENV} or {KEY_ENV})"


class Key:
    """The audit key. Its text never leaves this object: not in repr, messages or logs."""

    __slots__ = ("_secret", "source")

    def __init__(self, secret: str, source: str) -> None:
        self._secret, self.source = secret.encode(), source

    def __repr__(self) -> str:
        return f"Key(from {self.source})"

    def mac(self, *parts: Any) -> str:
        message = json.dumps(parts, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def matches(self, mac: str | None, *parts: Any) -> bool:
        return isinstance(mac, str) and hmac.compare_digest(self.mac(*parts), mac)


# -- finding and creating the key -------------------------------------------------------------------------------

def default_key_path(url: str | URL) -> Path | None:
    """`<database file>.audit-key` for a SQLite file database; None for anything else."""
    url = make_url(url) if isinstance(url, str) else url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + KEY_SUFFIX)


def _read_key(path: Path) -> Key:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PmoflowError(f"cannot read the audit key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PmoflowError(f"the audit key file {path} is not UTF-8 text") from None
    return _checked(text, str(path))


def _checked(text: str, source: str) -> Key:
    if len(text) < MIN_KEY:
        raise PmoflowError(f"the audit key from {source} is too short: use at least {MIN_KEY} characters "
                           "(pmoflow init writes 64 random hex digits)")
    return Key(text, source)


def find_key(url: str | URL) -> tuple[Key | None, str]:
    """The audit key for the database at `url`, or (None, why there is none)."""
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            return None, f"{KEY_FILE_ENV} names {path}, which does not exist"
        return _read_key(path), ""
    if os.environ.get(KEY_ENV):
        return _checked(os.environ[KEY_ENV].strip(), KEY_ENV), ""
    default = default_key_path(url)
    if default is not None and default.is_file():
        return _read_key(default), ""
    return None, NOT_CONFIGURED


def prepare_key(url: str | URL) -> dict[str, Any]:
    """For `pmoflow init`: the key to seal with, creating its file (mode 0600, 64 random hex digits) when the
    configured file, or the file beside a SQLite database, does not exist yet. Says where it is, never what."""
    configured = os.environ.get(KEY_FILE_ENV)
    if not configured and os.environ.get(KEY_ENV):
        find_key(url)  # refuses a key that is too short
        return {"source": KEY_ENV, "created": False}
    path = Path(configured).expanduser() if configured else default_key_path(url)
    if path is None:
        return {"source": None, "created": False}
    created = ensure_key_file(path, "the audit key")
    _read_key(path)
    info: dict[str, Any] = {"source": str(path), "created": created}
    if path.stat().st_mode & 0o077:
        info["warning"] = f"{path} can be read by other users: chmod 600 it"
    return info


def _url(session: Session) -> URL:
    return session.get_bind().engine.url  # a Connection's engine, or the Engine itself


# -- sealing what a transaction wrote ---------------------------------------------------------------------------

_PENDING, _LISTENING = "pmoflow_anchor_pending", "pmoflow_anchor_listening"


def track(session: Session, stream: str | None = None, instance: ProcessInstance | None = None) -> None:
    """Note a stream (or an instance) this transaction writes to: its seal follows at commit, from the final
    values (an instance's status may change after its last event, in the same transaction)."""
    if not session.info.get(_LISTENING):
        event.listen(session, "before_commit", _seal_pending)
        session.info[_LISTENING] = True
    pending = session.info.setdefault(_PENDING, {"streams": set(), "instances": {}})
    if stream:
        pending["streams"].add(stream)
    if instance is not None:
        pending["instances"][id(instance)] = instance


def _seal_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()
    if session.get(AuditSeal, KEY_ROW) is None:
        return  # not sealed (yet): `pmoflow init` with a key seals it
    heads = []
    # In id order, so two transactions sealing the same instances lock their seals in the same order.
    for instance in sorted(pending["instances"].values(), key=lambda i: i.id or 0):
        if _object_session(instance) is session and instance.id is not None:
            heads.append((f"instance/{instance.id}", instance.last_seq, instance.last_hash,
                          instance_digest(instance)))
    for stream in sorted(pending["streams"]):
        head = session.execute(select(Event.seq, Event.hash).where(Event.stream == stream)
                               .order_by(Event.seq.desc()).limit(1)).first()
        kind, _, name = stream.partition("/")
        if head is not None:
            heads.append((stream, head.seq, head.hash, definition_digest(session, name) if kind == "definition"
                          else ""))
    changed = [h for h in heads if (seal := session.get(AuditSeal, h[0])) is None or _parts(seal) != h]
    if not changed:
        return  # a transaction that only read (show, task) needs no key
    key = writing_key(session)
    assert key is not None, "the record is sealed (its anchor row was found above)"
    new = sum(_seal(session, key, *head) for head in changed)
    if new:
        _count_instances(session, key, new)


def writing_key(session: Session) -> Key | None:
    """The key to seal this transaction's writes with; None while the record is not sealed. A sealed record
    refuses a process that has no key or another one, so nothing is ever written unsealed."""
    anchor = session.get(AuditSeal, KEY_ROW)
    if anchor is None:
        return None
    key, why = find_key(_url(session))
    if key is None:
        raise PmoflowError(f"this database's audit record is sealed with an audit key, and {why}: nothing was "
                           "changed (see 'For auditors' in the README)")
    if not key.matches(anchor.mac, *_parts(anchor)):
        raise PmoflowError(f"the audit key from {key.source} is not the key this database's audit record is "
                           "sealed with: nothing was changed")
    return key


def current_key(session: Session) -> Key | None:
    """The key to sign with now: the record's key when it is sealed (refusing any other), else whatever key is
    configured, else None."""
    return writing_key(session) or find_key(_url(session))[0]


def _parts(seal: Any) -> tuple[str, int, str, str]:
    return seal.stream, seal.seq, seal.hash, seal.digest


def _seal(session: Session, key: Key, stream: str, seq: int, hash_: str, digest: str) -> int:
    """Seal one head; 1 when it is a new instance stream (the register counts it)."""
    seal = session.get(AuditSeal, stream)
    fresh = seal is None
    if seal is None:
        seal = AuditSeal(stream=stream)
        session.add(seal)
    seal.seq, seal.hash, seal.digest, seal.mac = seq, hash_, digest, key.mac(stream, seq, hash_, digest)
    return int(fresh and stream.startswith("instance/"))


def _count_instances(session: Session, key: Key, new: int) -> None:
    """Add to the register in one UPDATE: concurrent transactions wait for each other's commit here (a row lock
    held only while committing) instead of conflicting."""
    table = cast(Table, AuditSeal.__table__)  # SQLAlchemy types a mapped class's __table__ as any FromClause
    session.execute(table.update().where(table.c.stream == REGISTER_ROW).values(seq=table.c.seq + new))
    count = session.scalar(select(table.c.seq).where(table.c.stream == REGISTER_ROW))
    session.execute(table.update().where(table.c.stream == REGISTER_ROW)
                    .values(mac=key.mac(REGISTER_ROW, count, "", "")))


def seal_archived(session: Session, heads: Iterable[dict[str, Any]]) -> None:
    """An archive took these instances' history out: their seals keep the archived head, marked archived."""
    key = writing_key(session)
    if key is None:
        return
    new = sum(_seal(session, key, f"instance/{head['instance_id']}", head["last_seq"], head["last_hash"], ARCHIVED)
              for head in heads)
    if new:
        _count_instances(session, key, new)


def instance_digest(instance: Any) -> str:
    """What of an instance decides its behaviour: definition, status, starter and the serialized state."""
    fields = [instance.definition_id, instance.process_id, instance.version, instance.status,
              instance.business_key, instance.started_by]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode() + b"\0" + (instance.state or "").encode()).hexdigest()


def spec_hash(spec: str) -> str:
    return hashlib.sha256(spec.encode()).hexdigest()


def definition_digest(session: Session, process_id: str) -> str:
    """Every stored version of a process: its content hash, the hash of its serialized spec (what runs) and
    its start form."""
    rows = session.execute(select(ProcessDefinition.version, ProcessDefinition.content_hash,
                                  ProcessDefinition.spec, ProcessDefinition.start_form)
                           .where(ProcessDefinition.process_id == process_id).order_by(ProcessDefinition.version))
    versions = [[v, content_hash, spec_hash(spec), form] for v, content_hash, spec, form in rows]
    return hashlib.sha256(json.dumps(versions, separators=(",", ":")).encode()).hexdigest()


def seal(session: Session) -> dict[str, Any] | None:
    """For `pmoflow init`: seal the record as it stands when a key is at hand and it is not sealed yet."""
    key = find_key(_url(session))[0]
    return None if key is None else seal_existing(session, key)


def seal_existing(session: Session, key: Key) -> dict[str, Any] | None:
    """Seal the record as it stands (a database from before the anchor, or initialised without a key): every
    stream's head, every instance's digest, the instances archived before, and the register. None when the
    record is sealed already: sealing again would launder whatever changed since, so it never happens."""
    if session.get(AuditSeal, KEY_ROW) is not None:
        return None
    session.flush()
    since = session.scalar(select(func.max(Event.id))) or 0
    rows = [_row(key, KEY_ROW, since, "", clock.as_utc(clock.db_now()).isoformat(timespec="seconds"))]
    instance_columns = (ProcessInstance.id, ProcessInstance.last_seq, ProcessInstance.last_hash,
                        ProcessInstance.definition_id, ProcessInstance.process_id, ProcessInstance.version,
                        ProcessInstance.status, ProcessInstance.business_key, ProcessInstance.started_by,
                        ProcessInstance.state)
    live = set()
    for row in session.execute(select(*instance_columns).execution_options(yield_per=500)):
        live.add(row.id)
        rows.append(_row(key, f"instance/{row.id}", row.last_seq, row.last_hash, instance_digest(row)))
    last = select(Event.stream, func.max(Event.seq).label("seq")).where(Event.instance_id.is_(None)) \
        .group_by(Event.stream).subquery()
    heads = session.execute(select(Event.stream, Event.seq, Event.hash)
                            .join(last, (Event.stream == last.c.stream) & (Event.seq == last.c.seq)))
    archived = {}
    for stream, seq, hash_ in heads:
        kind, _, name = stream.partition("/")
        rows.append(_row(key, stream, seq, hash_, definition_digest(session, name) if kind == "definition" else ""))
    for (payload,) in session.execute(select(Event.payload).where(Event.stream == "archive",
                                                                  Event.type == "archived")):
        for head in (payload or {}).get("heads") or []:
            if head.get("instance_id") not in live:
                archived[head["instance_id"]] = head
    for instance_id, head in archived.items():
        rows.append(_row(key, f"instance/{instance_id}", head["last_seq"], head["last_hash"], ARCHIVED))
    instances = len(live) + len(archived)
    rows.append(_row(key, REGISTER_ROW, instances, "", ""))
    for start in range(0, len(rows), 1000):
        session.execute(insert(AuditSeal), rows[start:start + 1000])
    return {"instances": instances, "streams": len(rows) - 2, "before_event": since}


def _row(key: Key, stream: str, seq: int, hash_: str, digest: str) -> dict[str, Any]:
    return {"stream": stream, "seq": seq, "hash": hash_, "digest": digest, "mac": key.mac(stream, seq, hash_, digest)}


def status(session: Session) -> dict[str, Any]:
    """Whether `audit verify` can check the seals here, in words for its output: {checked, note}."""
    anchor = session.get(AuditSeal, KEY_ROW)
    key, why = find_key(_url(session))
    if anchor is None:
        advice = "run 'pmoflow init' with this key to seal it" if key else \
            f"set {KEY_FILE_ENV} and run 'pmoflow init' to seal it"
        return {"checked": False, "note": f"anchoring NOT checked: this record is not sealed with an audit key "
                                          f"({advice})"}
    if key is None:
        return {"checked": False, "note": f"anchoring NOT checked: this record is sealed with an audit key, and "
                                          f"{why}"}
    if not key.matches(anchor.mac, *_parts(anchor)):
        return {"checked": False, "note": f"anchoring NOT checked: the audit key from {key.source} is not the "
                                          "key this record is sealed with"}
    if anchor.seq == 0:
        return {"checked": True, "note": f"sealed with the audit key since it began ({anchor.digest})"}
    return {"checked": True, "note": f"sealed with the audit key since {anchor.digest} (from event {anchor.seq + 1}; "
                                     "earlier history is vouched for as it stood then, and by its hash links)"}


# -- checking the seals ----------------------------------------------------------------------------------------

class SealCheck:
    """`audit verify`'s view of the seals, fed by the pass over the chains: each intact chain's head against its
    seal, each instance's digest, the streams sealed but gone, and the register. Problems are (stream, seq,
    problem). It checks nothing (and says so through `status`) without the record's key."""

    def __init__(self, session: Session, instance_id: int | None = None, process_id: str | None = None) -> None:
        self.session, self.whole = session, instance_id is None and process_id is None
        self.problems: list[tuple[str, int | None, str]] = []
        anchor = session.get(AuditSeal, KEY_ROW)
        self.key = find_key(_url(session))[0] if anchor is not None else None
        self.active = self.key is not None
        if self.key is not None and anchor is not None and not self.key.matches(anchor.mac, *_parts(anchor)):
            self.problems.append((KEY_ROW, None, f"the audit key from {self.key.source} is not the key this "
                                                 "record is sealed with (or the anchor's own row was changed)"))
            self.active = False
        self.seals: dict[str, AuditSeal] = {}
        if not self.active:
            return
        query = select(AuditSeal)
        if instance_id is not None:
            query = query.where(AuditSeal.stream.in_([f"instance/{instance_id}", f"definition/{process_id}"]))
        elif process_id is not None:
            ids = select(ProcessInstance.id).where(ProcessInstance.process_id == process_id)
            streams = [f"instance/{i}" for i in session.scalars(ids)] + [f"definition/{process_id}"]
            query = query.where(AuditSeal.stream.in_(streams))
        self.seals = {seal.stream: seal for seal in session.scalars(query)}
        self.instance_seals = sum(1 for s in self.seals if s.startswith("instance/"))
        self.digests: dict[str, str] = {}

    def _problem(self, stream: str, seq: int | None, problem: str) -> None:
        self.problems.append((stream, seq, problem))

    def head(self, stream: str, seq: int, hash_: str) -> None:
        """An intact chain ends at (seq, hash_): is that the head its seal vouches for?"""
        if not self.active:
            return
        assert self.key is not None, "active only with the key"
        seal = self.seals.pop(stream, None)
        if seal is None:
            return self._problem(stream, None, "it has no seal: it was written outside pmoflow (or by a process "
                                               "without the audit key)")
        if not self.key.matches(seal.mac, *_parts(seal)):
            return self._problem(stream, seal.seq, "its seal does not match its head: the seal was changed "
                                                   "without the audit key")
        if seq != seal.seq:
            return self._problem(stream, min(seq, seal.seq) + 1, f"the chain ends at event {seq} but was sealed "
                                 f"at event {seal.seq}: events were added or removed without the audit key")
        if hash_ != seal.hash:
            return self._problem(stream, seq, f"event {seq} is not the event that was sealed: the chain was "
                                              "re-written (re-hashed) without the audit key")
        kind, _, name = stream.partition("/")
        if kind == "definition" and definition_digest(self.session, name) != seal.digest:
            return self._problem(stream, None, "a stored version's serialized spec (what runs) or start form "
                                               "differs from what was sealed at its last deployment")
        self.digests[stream] = seal.digest

    def instance(self, row: Any) -> None:
        """An instance row whose chain is intact: do its state, status and definition match its seal?"""
        sealed = self.digests.get(f"instance/{row.id}")
        if self.active and sealed is not None and sealed != instance_digest(row):
            self._problem(f"instance/{row.id}", row.last_seq, "its state, status or definition was changed "
                                                             "outside pmoflow: it no longer matches its seal")

    def finish(self, archived: dict[int, tuple[int, str]], seen: set[str]) -> list[tuple[str, int | None, str]]:
        """The seals no chain claimed: archived instances (each must be in an archive event, with the same
        head), or streams deleted from the database. Then the register's count."""
        if not self.active:
            return self.problems
        assert self.key is not None, "active only with the key"
        for stream, seal in sorted(self.seals.items()):
            if stream.startswith("anchor/") or stream in seen:
                continue
            kind, _, name = stream.partition("/")
            if not self.key.matches(seal.mac, *_parts(seal)):
                self._problem(stream, seal.seq, "its seal was changed without the audit key")
            elif seal.digest == ARCHIVED and kind == "instance":
                if self.whole and archived.get(int(name)) != (seal.seq, seal.hash):
                    self._problem(stream, seal.seq, "it is sealed as archived, but no archive event records it "
                                                    "with that head")
            else:
                self._problem(stream, seal.seq, f"it was sealed at event {seal.seq}, and its events are gone: "
                                                "deleted from the database")
        register = self.seals.get(REGISTER_ROW)
        if self.whole and (register is None or not self.key.matches(register.mac, *_parts(register))):
            self._problem(REGISTER_ROW, None, "the register of instances is missing or was changed without the "
                                              "audit key")
        elif self.whole and register is not None and register.seq != self.instance_seals:
            self._problem(REGISTER_ROW, None, f"{register.seq} instances were registered, {self.instance_seals} "
                                              "have seals: instances were deleted with their seals")
        return self.problems


# -- checkpoints ---------------------------------------------------------------------------------------------

def heads(session: Session) -> dict[str, tuple[int, str]]:
    """Every stream's head (seq, hash) in the database now."""
    last = select(Event.stream, func.max(Event.seq).label("seq")).group_by(Event.stream).subquery()
    rows = session.execute(select(Event.stream, Event.seq, Event.hash)
                           .join(last, (Event.stream == last.c.stream) & (Event.seq == last.c.seq)))
    return {stream: (seq, hash_) for stream, seq, hash_ in rows}


def _signed(body: dict[str, Any]) -> list[Any]:
    return [CHECKPOINT_FORMAT, json.dumps({k: v for k, v in body.items() if k != "mac"}, sort_keys=True)]


def write_checkpoint(session: Session, path: str | Path, database: str) -> dict[str, Any]:
    """Export every stream's head, signed with the audit key, to a new file for an auditor to keep."""
    key, why = find_key(_url(session))
    if key is None:
        raise InvalidInput(f"a checkpoint is signed with the audit key, and {why}")
    now = heads(session)
    body: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": 1, "database": database,
                            "created_at": clock.as_utc(clock.db_now()).isoformat(),
                            "heads": {stream: list(head) for stream, head in sorted(now.items())}}
    body["mac"] = key.mac(*_signed(body))
    target = Path(path)
    try:
        with open(target, "x", encoding="utf-8") as fh:
            json.dump(body, fh, indent=1, sort_keys=True)
            fh.write("\n")
    except FileExistsError:
        raise InvalidInput(f"{target} exists already; checkpoints are never overwritten: choose a new file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {target}: {exc.strerror}") from None
    return {"file": str(target), "streams": len(now), "events": sum(seq for seq, _ in now.values()),
            "created_at": body["created_at"]}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file as {created_at, heads: {stream: (seq, hash)}, body}; InvalidInput when it is not one."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        body = None
    heads_ = body.get("heads") if isinstance(body, dict) and body.get("format") == CHECKPOINT_FORMAT else None
    if not isinstance(heads_, dict) or not all(
            isinstance(h, list) and len(h) == 2 and isinstance(h[0], int) and isinstance(h[1], str)
            for h in heads_.values()):
        raise InvalidInput(f"{path} is not a pmoflow audit checkpoint (made by 'pmoflow audit checkpoint --to FILE')")
    return {"created_at": body.get("created_at"), "heads": {s: (h[0], h[1]) for s, h in heads_.items()},
            "body": body}


def checkpoint_signed(session: Session, checkpoint: dict[str, Any]) -> bool | None:
    """Whether the checkpoint's signature holds under the key at hand; None without a key."""
    key = find_key(_url(session))[0]
    return None if key is None else key.matches(checkpoint["body"].get("mac"), *_signed(checkpoint["body"]))
