"""What an insider with database access does, as raw SQL on the database (no pmoflow code writes here), and how the
tests of the anchored record check that `audit verify` names what was done."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select, text

from conftest import FIXTURES
from pmoflow.engine import audit, runtime
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.cli import main
from pmoflow.engine.models import Event

GATE = FIXTURES / "audit_trail"
KEY_FILE = "PMOFLOW_AUDIT_KEY_FILE"


def sql(app: Pmoflow, statement: str, **params: Any) -> list[Any]:
    """One statement in a transaction of its own, straight on the engine."""
    with app.db.engine.begin() as conn:
        result = conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


def events_of(app: Pmoflow, stream: str) -> list[dict[str, Any]]:
    """A stream's events as plain values (read through the models only to get typed columns)."""
    with app.db.engine.connect() as conn:
        rows = conn.execute(select(Event).where(Event.stream == stream).order_by(Event.seq))
        return [dict(row._mapping) for row in rows]


def rewrite(app: Pmoflow, stream: str, change: Callable[[list[dict[str, Any]]], None] | None = None,
            keep: int | None = None) -> None:
    """Edit a stream, re-hash it with pmoflow's own `event_hash` and move the instance's head: what passed
    `audit verify` before the record was anchored. `keep` truncates the stream to its first events."""
    events = events_of(app, stream)
    gone, events = [e["id"] for e in events[keep:]] if keep is not None else [], events[:keep]
    if change:
        change(events)
    prev = ""
    for e in events:
        e["prev_hash"] = prev
        e["hash"] = prev = audit.event_hash(SimpleNamespace(**e))
    with app.db.engine.begin() as conn:
        for event_id in gone:
            conn.execute(text("DELETE FROM event_facts WHERE event_id = :i"), {"i": event_id})
            conn.execute(text("DELETE FROM events WHERE id = :i"), {"i": event_id})
        for e in events:
            conn.execute(text("UPDATE events SET at = :at, actor = :actor, payload = :payload, prev_hash = :prev, "
                              "hash = :hash WHERE id = :id"),
                         {"at": e["at"], "actor": e["actor"], "payload": json.dumps(e["payload"]),
                          "prev": e["prev_hash"], "hash": e["hash"], "id": e["id"]})
        kind, _, name = stream.partition("/")
        if kind == "instance":
            conn.execute(text("UPDATE process_instances SET last_seq = :seq, last_hash = :hash WHERE id = :i"),
                         {"seq": len(events), "hash": prev, "i": int(name)})


def delete_instance(app: Pmoflow, instance_id: int, seal: bool = False) -> None:
    """Remove an instance and everything of it, as if it never was; with `seal`, its seal too."""
    for statement in (
        "DELETE FROM event_facts WHERE event_id IN (SELECT id FROM events WHERE instance_id = :i)",
        "DELETE FROM events WHERE instance_id = :i",
        "DELETE FROM task_candidates WHERE task_id IN (SELECT id FROM human_tasks WHERE instance_id = :i)",
        "DELETE FROM notifications WHERE instance_id = :i",
        "DELETE FROM human_tasks WHERE instance_id = :i",
        "DELETE FROM message_waits WHERE instance_id = :i",
        "DELETE FROM process_instances WHERE id = :i",
    ) + (("DELETE FROM audit_seals WHERE stream = 'instance/' || :s",) if seal else ()):
        sql(app, statement, i=instance_id, s=str(instance_id))


def cli(db_url: str, *args: Any, user: str | None = "bob"):
    for cache in (runtime._CACHE, runtime._SPECS):
        cache.clear()
    who = ["--user", user] if user else []
    return CliRunner(env={"PMOFLOW_DB": None, "PMOFLOW_USER": None}).invoke(
        main, ["--db", db_url, *who, *[str(a) for a in args]])


def assert_reported(db_url: str, stream: str, words: str, *extra: Any) -> str:
    """`pmoflow audit verify` exits 1 with a line naming the stream and saying what happened."""
    result = cli(db_url, "audit", "verify", *extra)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: the audit record was changed outside pmoflow")
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert any(line.startswith(f"{stream}: ") and words in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr and "unexpected failure" not in result.stderr
    return result.stderr


def problems(app: Pmoflow, **options: Any) -> dict[str, str]:
    return {f["stream"]: f["problem"] for f in app.verify_record(**options)["findings"]}
