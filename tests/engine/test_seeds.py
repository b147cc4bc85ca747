"""The tests' seeded databases (tests/seeds.py) are what `init()` makes: a copy has the schema of a database
initialised in place, the same rows as its seed, and is a database of its own."""

from __future__ import annotations

from seeds import Seeds, schema_of
from sqlalchemy import create_engine, inspect, text

from conftest import FIXTURES, PG_URL, TEST_LIBRARY, TEST_ORG, fresh_database
from pmoflow.engine.api import Pmoflow
from pmoflow.engine.database import resolve_url
from pmoflow.engine.models import Base


def initialise(url: str) -> None:
    app = Pmoflow(url, user="alice", libraries=[TEST_LIBRARY])
    app.init(TEST_ORG)
    app.deploy([FIXTURES])
    app.close()


def shape(url: str) -> dict:
    """Every table's columns, indexes, keys and constraints, and its row count."""
    engine = create_engine(resolve_url(url))
    try:
        found = inspect(engine)
        schema = None if engine.dialect.name == "sqlite" else schema_of(url)
        with engine.connect() as conn:
            return {table: {
                "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default"))
                             .replace(f'"{schema}".', "")) for c in found.get_columns(table, schema)],
                "primary": found.get_pk_constraint(table, schema)["constrained_columns"],
                "foreign": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                                  for f in found.get_foreign_keys(table, schema)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"])
                                  for i in found.get_indexes(table, schema)),
                "unique": sorted((u["name"], tuple(u["column_names"]))
                                 for u in found.get_unique_constraints(table, schema)),
                "rows": conn.scalar(text(f"SELECT count(*) FROM {table}")),
            } for table in sorted(found.get_table_names(schema))}
    finally:
        engine.dispose()


def rows(url: str) -> dict:
    engine = create_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            return {t.name: sorted(map(repr, conn.execute(t.select()))) for t in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def test_a_seeded_copy_is_the_seed_and_has_the_shape_of_an_initialised_database(db_url, tmp_path):
    kind = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    seeds = Seeds(tmp_path / "seeds", PG_URL)
    (tmp_path / "seeds").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with fresh_database(kind, tmp_path / "a") as first, fresh_database(kind, tmp_path / "b") as second:
            seeds.copy_into(first, "initialised", initialise)
            seeds.copy_into(second, "initialised", initialise)
            initialise(db_url)  # in place, as the tests did before seeds
            assert shape(first) == shape(db_url)
            assert rows(first) == rows(second) and rows(first)["process_definitions"]

            app = Pmoflow(first, user="alice", libraries=[TEST_LIBRARY])
            app.start("simple", {"title": "abc", "amount": 2})  # its events take ids after init's: the
            app.close()                                          # sequences were copied with the rows...
            assert len(rows(first)["process_instances"]) == 1
            assert rows(second)["process_instances"] == []  # ...and the copies are databases of their own
    finally:
        seeds.close()
