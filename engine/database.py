"""The one place the database is reached: URLs, engines, transactions and schema upgrades."""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
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


class TransientDatabaseError(DatabaseUnavailable):
    """A failure that waiting may cure: a dropped or refused connection, a server shutting down or starting up,
    a serialization failure or deadlock, a lock held too long. Nothing was committed; the same work may be
    tried again (the worker does, with a backoff)."""


# SQLSTATEs of failures that pass: serialization failure, deadlock, lock not available, server shutting
# down or starting, too many connections, out of memory; class 08 is any connection exception.
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "53200"}


def is_transient(exc: DBAPIError) -> bool:
    """Whether a database error is one that trying again later may cure (see TransientDatabaseError)."""
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if state:
        return state in TRANSIENT_SQLSTATES or state.startswith("08")
    text = str(exc.orig).lower()
    if "locked" in text:  # SQLite: "database is locked", "database table is locked"
        return True
    # psycopg gives no SQLSTATE when the connection itself failed (refused, reset, closed): the server is
    # away, not the statement wrong. SQLite's other OperationalErrors (no such table, disk I/O) are not transient.
    return isinstance(exc, OperationalError) and type(exc.orig).__module__.startswith("psycopg")


class Turnstile:
    """A queue for the writers of one SQLite file, across processes.

    SQLite's lock has no queue: a writer that finds it taken sleeps and polls (busy_timeout), while the
    holder, committing and beginning its next transaction within microseconds, takes it again before the
    sleeper looks. A worker firing hundreds of instances back to back so starves every other writer (a second
    worker, a user's command) past the busy timeout, and they fail with "database is locked", sooner the
    busier the machine. Two file locks (flock, released by the kernel when a process dies) make a turnstile:
    a waiter holds the gate while it waits for the write lock, so the writer that just committed must queue
    at the gate behind it and cannot take the lock again first. Waiters are woken by the kernel, not by polling.

    One per file and process, shared by its Database objects and closed with the last of them; transactions
    nested in one process (threads, or a command inside another's transaction) do not queue again, and meet
    SQLite's own busy wait as before."""

    _open: weakref.WeakValueDictionary[str, Turnstile] = weakref.WeakValueDictionary()
    _opening = threading.Lock()

    def __init__(self, path: str) -> None:
        self.gate = os.open(f"{path}-gate", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self.lock = os.open(f"{path}-write", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            os.close(self.gate)
            raise
        self._guard = threading.Lock()
        self._holders = 0

    def __del__(self) -> None:
        for fd in (getattr(self, "gate", None), getattr(self, "lock", None)):
            if fd is not None:
                os.close(fd)

    @classmethod
    def for_file(cls, path: str | None) -> Turnstile | None:
        """The turnstile of a SQLite database file (None for memory databases or a folder pmoflow cannot write)."""
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        key = os.path.abspath(path)
        with cls._opening:
            turnstile = cls._open.get(key)
            if turnstile is None:
                try:
                    turnstile = cls._open[key] = cls(key)
                except OSError:
                    return None
            return turnstile

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._guard:
            if self._holders == 0:
                fcntl.flock(self.gate, fcntl.LOCK_EX)
                try:
                    fcntl.flock(self.lock, fcntl.LOCK_EX)
                finally:
                    fcntl.flock(self.gate, fcntl.LOCK_UN)
            self._holders += 1
        try:
            yield
        finally:
            with self._guard:
                self._holders -= 1
                if self._holders == 0:
                    fcntl.flock(self.lock, fcntl.LOCK_UN)


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
        sqlite_file = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        self._turnstile = Turnstile.for_file(sqlite_file)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ok = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One command, one transaction: everything it wrote commits together or not at all. On SQLite,
        writers take turns (Turnstile) instead of racing for the lock."""
        session = self._sessions()
        try:
            with self._turn(), session.begin():
                yield session
        except StaleDataError as exc:
            raise Conflict("someone else changed this instance at the same time; reload and try again") from exc
        except IntegrityError as exc:
            raise Conflict(f"a concurrent change collided with this one; try again ({exc.orig})") from exc
        except (OperationalError, InterfaceError) as exc:
            if getattr(exc.orig, "sqlstate", None) in ("40P01", "40001"):  # deadlock, serialization failure
                raise Conflict("a concurrent change to the same instances collided with this one; try again") from exc
            kind = TransientDatabaseError if is_transient(exc) else DatabaseUnavailable
            raise kind(f"database error at {self.safe_url}: {_first_line(exc.orig)}") from exc
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            raise TransientDatabaseError(f"database error at {self.safe_url}: {_first_line(exc.orig)}") from exc
        finally:
            session.close()

    def _turn(self):
        """Wait for this process's turn to write a SQLite file (nothing to wait for on PostgreSQL)."""
        return self._turnstile.turn() if self._turnstile else nullcontext()

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
            with self._turn():
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
            with self._turn(), self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except (OperationalError, InterfaceError) as exc:
            kind = TransientDatabaseError if is_transient(exc) else DatabaseUnavailable
            raise kind(f"cannot reach the database at {self.safe_url}: {_first_line(exc.orig)}") from exc
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


def _first_line(error: BaseException | None) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
