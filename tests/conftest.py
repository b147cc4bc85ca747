"""Shared fixtures: every database test runs on SQLite and, when PMOFLOW_TEST_PG_URL is set, on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from seeds import Seeds
from sqlalchemy import create_engine

from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import resolve_url, scratch_schema
from pmoflow.engine.handlers import notify
from pmoflow.engine.library import Library, installed

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
TEST_ORG = HERE / "org.toml"
PG_URL = os.environ.get("PMOFLOW_TEST_PG_URL")
TEST_HANDLERS = {
    "test.echo": lambda value: {"echo": value},
    "test.fail": lambda reason: (_ for _ in ()).throw(RuntimeError(reason)),
    "test.notify": notify,
}


# The engine's tests run this small library of their own; the PMO library's tests find the PMO library through the
# entry point, the door any third-party library uses (`installed()`).
TEST_LIBRARY = Library(name="tests", handlers=TEST_HANDLERS, form_dirs=(FIXTURES,))


def all_handlers() -> dict:
    """The test library's handlers (the operators the engine's fixture processes call)."""
    return dict(TEST_LIBRARY.handlers)


def pmo_library() -> Library:
    """The PMO library, as installed (its entry point `pmoflow.libraries: pmo`)."""
    [library] = [lib for lib in installed() if lib.name == "pmo"]
    return library


def pytest_configure(config) -> None:
    """In CI (CI=true) every database test must also run on PostgreSQL: no server is an error, not a skip."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") or hasattr(config, "workerinput"):
        return
    if not PG_URL:
        raise pytest.UsageError("CI=true and PMOFLOW_TEST_PG_URL is not set: CI runs every database test on "
                                "PostgreSQL too (see .ci/run)")
    engine = create_engine(resolve_url(PG_URL))
    try:
        engine.connect().close()
    except Exception as exc:
        why = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise pytest.UsageError(f"CI=true and PostgreSQL at {PG_URL} is unreachable: {why}") from None
    finally:
        engine.dispose()


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in `folder`, or a PostgreSQL schema of its own (dropped after).
    The PostgreSQL kind skips the test, saying why, when PMOFLOW_TEST_PG_URL is not set."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'pmoflow.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests run when PMOFLOW_TEST_PG_URL is set "
                    "(e.g. postgresql://postgres@127.0.0.1:5432/test)")
    with scratch_schema(PG_URL) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def cli_handlers(monkeypatch) -> None:
    """Commands run through the CLI (in this process or a child) find the PMO library and the test library,
    named the way an installation names a library under development (PMOFLOW_LIBRARY)."""
    monkeypatch.setenv("PMOFLOW_LIBRARY", "pmoflow.workflows:library,conftest:TEST_LIBRARY")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))


def fixture_libraries(request) -> list[Library] | None:
    return None if "demo_pmo" in request.fixturenames else [TEST_LIBRARY]


@pytest.fixture
def make_pmo(db_url, request) -> Iterator[Callable[..., Pmoflow]]:
    """`make_pmo(user)` gives an API object acting as `user` on the test database: with the installed PMO library
    in tests of the PMO's processes (those using `demo_pmo`), else with the engine's own test library."""
    made: list[Pmoflow] = []
    libraries = fixture_libraries(request)

    def make(user: str | None = None, libraries: list[Library] | None = libraries) -> Pmoflow:
        app = Pmoflow(db_url, user=user, libraries=libraries)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> Iterator[Seeds]:
    """Initialised databases built once per process and copied into each test that starts from one (seeds.py)."""
    made = Seeds(tmp_path_factory.mktemp("seeds"), PG_URL)
    yield made
    made.close()


@pytest.fixture
def initialised(seeds, db_url, make_pmo, request) -> Callable[..., Pmoflow]:
    """`initialised(user, org, *folders)`: `make_pmo(user)` on a database where `init(org)` and `deploy(folders)`
    ran: a copy of a seed that made those calls once per process."""
    libraries = fixture_libraries(request)

    def init(user: str, org: Path | None = None, *folders: Path) -> Pmoflow:
        def build(url: str) -> None:
            app = Pmoflow(url, user=user, libraries=libraries)
            app.init(org)
            if folders:
                app.deploy(list(folders))
            app.close()

        seeds.copy_into(db_url, (user, org, folders, tuple(lib.name for lib in libraries or installed())), build)
        return make_pmo(user)

    return init


@pytest.fixture
def pmo(initialised) -> Pmoflow:
    """An initialised database with the test organisation and the fixture processes deployed."""
    return initialised("alice", TEST_ORG, FIXTURES)


@pytest.fixture
def demo_pmo(initialised) -> Pmoflow:
    """An initialised database with the bundled demo organisation and process library."""
    return initialised("sara.spm")


People = Callable[[str], Pmoflow]


def people_getter(make_pmo: Callable[..., Pmoflow], *known: Pmoflow) -> People:
    """`get(user)`: one API object per user, made on first use and reused after, so that a scenario's steps
    by the same person share one object (and its connections); `known` objects are reused for their users."""
    made = {app.user: app for app in known}

    def get(user: str) -> Pmoflow:
        if user not in made:
            made[user] = make_pmo(user)
        return made[user]

    return get


@pytest.fixture
def people(demo_pmo, make_pmo) -> People:
    """`people("pete.pm")`: an API object acting as that demo user, on the demo database."""
    return people_getter(make_pmo, demo_pmo)

# Every save in the tests also makes a full serialization and compares: the incremental dump must match it.
os.environ.setdefault("PMOFLOW_CHECK_STATE", "1")
# Model code's wall-clock limit (2 s by default) stops runaway scripts. On a loaded machine (xdist workers beside
# PostgreSQL and other work) a trivial expression's sandbox child can wait that long for a CPU, and an instance
# went into error at random (issue 12). The tests of the limit set their own (or delete this for the default).
os.environ.setdefault("PMOFLOW_SCRIPT_SECONDS", "30")
