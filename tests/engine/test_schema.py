"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pmoflow.engine.database import Database
from pmoflow.engine.errors import DatabaseUnavailable
from pmoflow.engine.models import Base


def test_migrations_match_the_models(db_url):
    db = Database(db_url)
    db.upgrade()
    db.upgrade()  # idempotent
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_a_database_without_the_schema_is_refused_with_advice(db_url):
    db = Database(db_url)
    with pytest.raises(DatabaseUnavailable, match="run 'pmoflow init' first"):
        db.check_schema()
    db.dispose()
