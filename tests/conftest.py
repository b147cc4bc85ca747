"""Shared fixtures: every database test runs on SQLite and, when PMOFLOW_TEST_PG_URL is set, on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pmoflow.engine.api import Pmoflow, default_handlers
from pmoflow.engine.database import scratch_schema

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
TEST_ORG = HERE / "org.toml"
PG_URL = os.environ.get("PMOFLOW_TEST_PG_URL")
TEST_HANDLERS = {
    "test.echo": lambda value: {"echo": value},
    "test.fail": lambda reason: (_ for _ in ()).throw(RuntimeError(reason)),
}


def all_handlers() -> dict:
    return {**default_handlers(), **TEST_HANDLERS}


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
    """Commands run through the CLI find the test handlers too (the CLI builds its API with the defaults)."""
    monkeypatch.setattr("pmoflow.engine.api.default_handlers", all_handlers)


@pytest.fixture
def make_pmo(db_url) -> Iterator[Callable[..., Pmoflow]]:
    """`make_pmo(user)` gives an API object acting as `user` on the test database."""
    made: list[Pmoflow] = []

    def make(user: str | None = None) -> Pmoflow:
        app = Pmoflow(db_url, user=user, handlers=all_handlers())
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def pmo(make_pmo) -> Pmoflow:
    """An initialised database with the test organisation and the fixture processes deployed."""
    app = make_pmo("alice")
    app.init(TEST_ORG)
    app.deploy([FIXTURES])
    return app


@pytest.fixture
def demo_pmo(make_pmo) -> Pmoflow:
    """An initialised database with the bundled demo organisation and process library."""
    app = make_pmo("sara.spm")
    app.init()
    return app


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
