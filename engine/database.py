"""The one place the database is reached: URLs, engines, transactions and schema upgrades."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from pmoflow.engine.errors import Conflict, DatabaseUnavailable

DEFAULT_URL = "sqlite:///pmoflow.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(url: str | None = None) -> str:
    """`--db`, then `PMOFLOW_DB`, then a SQLite file in the current folder."""
    url = url or os.environ.get("PMOFLOW_DB") or DEFAULT_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


@contextmanager
def scratch_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """A fresh, empty PostgreSQL schema on the server at `url`, dropped afterwards even when the body fails;
    yields a URL whose search_path is that schema. Tests and benchmarks get their own database this way on a
    shared server, without the rights to create databases."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(resolve_url(url))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # Take the write lock at the start so two writers serialise instead of failing mid-transaction.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Owns the engine and hands out one transaction per command."""

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_url(url)
        try:
            self.engine: Engine = create_engine(self.url)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise DatabaseUnavailable(f"'{url}' is not a database URL pmoflow can use ({exc}); use "
                                      "sqlite:///FILE or postgresql://USER@HOST:PORT/DBNAME") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "connect", lambda c, r: setattr(c, "isolation_level", None))
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ok = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One command, one transaction: everything it wrote commits together or not at all."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except StaleDataError as exc:
            raise Conflict("someone else changed this instance at the same time; reload and try again") from exc
        except IntegrityError as exc:
            raise Conflict(f"a concurrent change collided with this one; try again ({exc.orig})") from exc
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) in ("40P01", "40001"):  # deadlock, serialization failure
                raise Conflict("a concurrent change to the same instances collided with this one; try again") from exc
            raise DatabaseUnavailable(f"database error at {self.safe_url}: {exc.orig}") from exc
        finally:
            session.close()

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["engine"] = self.engine
        return config

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        try:
            command.upgrade(self._alembic_config(), "head")
        except OperationalError as exc:
            raise DatabaseUnavailable(f"cannot reach the database at {self.safe_url}: {exc.orig}") from exc

    def check_schema(self) -> None:
        """Refuse to work on a database that `pmoflow init` has not brought up to date (checked once)."""
        if self._schema_ok:
            return
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if path and path != ":memory:" and not Path(path).exists():
            raise DatabaseUnavailable(f"there is no database at {self.safe_url} (no pmoflow schema); "
                                      "run 'pmoflow init' first")
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise DatabaseUnavailable(f"cannot reach the database at {self.safe_url}: {exc.orig}") from exc
        if current != head:
            state = "has no pmoflow schema" if current is None else f"is at schema {current}, not {head}"
            raise DatabaseUnavailable(f"the database at {self.safe_url} {state}; run 'pmoflow init' first")
        self._schema_ok = True

    def schema_state(self) -> str:
        """What a health check reports, asking the database each time: 'current', 'outdated' (run
        'pmoflow init'), 'missing' (no pmoflow schema) or 'unreachable'."""
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if path and path != ":memory:" and not Path(path).exists():
            return "missing"  # connecting would create an empty file
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except OperationalError:
            return "unreachable"
        return "current" if current == head else "missing" if current is None else "outdated"

    def dispose(self) -> None:
        self.engine.dispose()
