"""Initialised test databases, built once per test process and copied into each test that starts from one.

`init()` runs every Alembic migration, loads an organisation, and parses and deploys every bundled process: about
half a second on SQLite and more on PostgreSQL, paid again by each of hundreds of tests. A seed is that work done
once per pytest process (so once per xdist worker) into a database of its own; each test then gets a copy, so
every test still starts from a fresh database identical to what `init()` makes, and none sees another's changes.

- SQLite: the seed is a file, with whatever `init()` put beside it (the audit key file); the test gets copies.
- PostgreSQL: the seed is a schema. A test's empty schema replays the DDL that the seed's migrations ran
  (recorded while building it, so it is Alembic's schema statement for statement), then the server copies every
  table's rows and every sequence's position from the seed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import URL, Engine, create_engine, event, make_url, text

from pmoflow.engine.database import resolve_url, scratch_schema
from pmoflow.engine.models import Base

AUDIT_KEYS = {"PMOFLOW_AUDIT_KEY", "PMOFLOW_AUDIT_KEY_FILE"}
DDL = ("CREATE", "ALTER", "DROP", "COMMENT")  # statements that shape the schema (rows are copied, not replayed)

Build = Callable[[str], None]


def schema_of(url: str | URL) -> str:
    """The schema a scratch_schema URL sets as its search_path (`options=-csearch_path=NAME`), or ''."""
    options = make_url(resolve_url(url) if isinstance(url, str) else url).query.get("options", "")
    return options.rpartition("search_path=")[2] if "search_path=" in options else ""


class Seeds:
    """One process's seeds by key. `close()` drops the PostgreSQL seed schemas."""

    def __init__(self, folder: Path, pg_url: str | None) -> None:
        self.folder, self.pg_url = folder, pg_url
        self._sqlite: dict[Hashable, Path] = {}
        self._pg: dict[Hashable, _SeedSchema] = {}
        self._exits = ExitStack()
        self._admin: Engine | None = None

    def copy_into(self, url: str, key: Hashable, build: Build) -> None:
        """Make the fresh, empty database at `url` what `build(url)` would make of it: a copy of the seed `key`,
        which `build` makes the first time. `key` must name all that makes two builds differ besides the
        PMOFLOW_* environment (part of every key). With an audit key configured, `build(url)` runs as it is: a
        seed would hold seals of a key that is not the test's, and a copy would miss the key file."""
        if AUDIT_KEYS & set(os.environ):
            build(url)
            return
        key = (key, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PMOFLOW_"))))
        if make_url(url).get_backend_name() == "sqlite":
            self._copy_sqlite(Path(make_url(url).database), key, build)
        else:
            self._copy_postgresql(schema_of(url), key, build)

    def close(self) -> None:
        self._exits.close()
        if self._admin is not None:
            self._admin.dispose()

    # -- SQLite ----------------------------------------------------------------------------------------------

    def _copy_sqlite(self, target: Path, key: Hashable, build: Build) -> None:
        seed = self._sqlite.get(key)
        if seed is None:
            seed = self.folder / f"seed-{len(self._sqlite)}" / "pmoflow.db"
            seed.parent.mkdir()
            build(f"sqlite:///{seed}")
            self._sqlite[key] = seed
        for made in seed.parent.iterdir():  # the database and its companions (`pmoflow.db.audit-key`)
            assert made.name.startswith(seed.name), f"{made} beside a seed database: copy it how?"
            copy = target.with_name(target.name + made.name.removeprefix(seed.name))
            assert not copy.exists(), f"{copy} exists: a seed is copied into a fresh database only"
            shutil.copy(made, copy)  # with its mode: the key file stays 0600

    # -- PostgreSQL ------------------------------------------------------------------------------------------

    @property
    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(resolve_url(self.pg_url))
        return self._admin

    def _copy_postgresql(self, target: str, key: Hashable, build: Build) -> None:
        seed = self._pg.get(key)
        if seed is None:
            seed = self._pg[key] = self._build_postgresql(build)
        script = [f"SET LOCAL search_path TO {target}", *seed.ddl,
                  *(f"INSERT INTO {target}.{t} SELECT * FROM {seed.schema}.{t}" for t in seed.tables),
                  *(f"SELECT setval('{target}.{s}', last_value, is_called) FROM {seed.schema}.{s}"
                    for s in seed.sequences)]
        with self.admin.begin() as conn:
            conn.exec_driver_sql(";\n".join(script))

    def _build_postgresql(self, build: Build) -> _SeedSchema:
        url = self._exits.enter_context(scratch_schema(self.pg_url, prefix="seed"))
        schema = schema_of(url)
        with recording(schema) as statements:
            build(url)
        ddl = [s for s in statements if s.lstrip().upper().startswith(DDL)]
        assert ddl and not any(schema in s for s in ddl), "the seed's DDL must name no schema, to replay elsewhere"
        with self.admin.connect() as conn:
            present = set(conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}))
            sequences = list(conn.scalars(text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s "
                                               "ORDER BY sequencename"), {"s": schema}))
        ordered = [t.name for t in Base.metadata.sorted_tables]  # parents before children: foreign keys hold
        tables = sorted(present - set(ordered)) + [t for t in ordered if t in present]
        return _SeedSchema(schema, ddl, tables, sequences)


class _SeedSchema(NamedTuple):
    schema: str
    ddl: list[str]  # in the order the migrations ran it
    tables: list[str]  # in an order the foreign keys allow
    sequences: list[str]


@contextmanager
def recording(schema: str) -> Iterator[list[str]]:
    """Every SQL statement sent to `schema` while the block runs, by any engine of this process (the build
    makes its own); statements of other threads on other databases are not the seed's."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if schema_of(conn.engine.url) == schema:
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)
