"""The frozen migrations: running all of them gives exactly the tables the spec declares, and a
released migration's text never changes (old stores ran it as it was)."""

from __future__ import annotations

import hashlib
import re

import duckdb
import pytest

from runlake.store.migrations import LATEST, MIGRATIONS, Migration, migrate
from runlake.store.spec import TABLES, VIEWS, ddl

# sha256 of "\0".join(statements) of every released migration. Never change one of these:
# a store in the field ran that text. A new migration gets its digest added here.
PINNED = {
    1: "64df5026e51d2ce690f7ff0ca0a30de5b22dcaa2a17183cc26c5b8c3a6130a66",
    2: "66c11770e31a7b73aae873164feb54eb4f9f700cb4c6ddd99cfc4d9eadc50cde",
}

_LEDGER = [("version", "INTEGER", False), ("description", "VARCHAR", True),
           ("applied_at", "TIMESTAMP", True)]


def catalog(con: duckdb.DuckDBPyConnection) -> dict:
    """What a store holds: ``{"tables": {name: [(column, type, nullable)]}, "keys": {name:
    (columns)}, "views": {name: [(column, type)]}}`` of the connection's main schema."""
    db = con.execute("SELECT current_database()").fetchone()[0]
    where = f"database_name = '{db}' AND schema_name = 'main'"
    views = {v for (v,) in con.execute(
        f"SELECT view_name FROM duckdb_views() WHERE {where} AND NOT internal").fetchall()}
    tables: dict[str, list] = {}
    shapes: dict[str, list] = {}
    for table, column, typ, nullable in con.execute(
            f"SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
            f"WHERE {where} ORDER BY table_name, column_index").fetchall():
        if table in views:
            shapes.setdefault(table, []).append((column, typ))
        else:
            tables.setdefault(table, []).append((column, typ, nullable))
    keys = {t: tuple(cols) for t, cols in con.execute(
        f"SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        f"WHERE {where} AND constraint_type = 'PRIMARY KEY'").fetchall()}
    return {"tables": tables, "keys": keys, "views": shapes}


def _digest(m: Migration) -> str:
    return hashlib.sha256("\0".join(m.statements).encode()).hexdigest()


def _frozen_problems(migrations) -> list[str]:
    versions = [m.version for m in migrations]
    problems = [f"migration {m.version} ({m.description!r}) was edited: a released migration "
                f"never changes (stores ran its old text); add a migration instead"
                for m in migrations if m.version in PINNED and _digest(m) != PINNED[m.version]]
    problems += [f"migration {v} was removed: released migrations stay; add a migration instead"
                 for v in PINNED if v not in versions]
    problems += [f"migration {m.version} is not pinned: add {m.version}: \"{_digest(m)}\" to "
                 f"PINNED in tests/store/test_migrations.py" for m in migrations
                 if m.version not in PINNED]
    return problems


def _normal(sql: str) -> str:
    return " ".join(sql.split())


def _store(tmp_path=None, upto: int | None = None) -> duckdb.DuckDBPyConnection:
    """A new store (a file in ``tmp_path``, else in memory): all migrations (``migrate``),
    or the statements of migrations 1..``upto``."""
    con = duckdb.connect(str(tmp_path / "store.duckdb") if tmp_path else ":memory:")
    if upto is None:
        migrate(con)
    else:
        for m in MIGRATIONS[:upto]:
            for stmt in m.statements:
                con.execute(stmt)
    return con


def test_released_migrations_are_frozen():
    """Each released migration's statements hash to the digest pinned when it was released."""
    assert _frozen_problems(MIGRATIONS) == []


def test_editing_a_released_migration_is_caught():
    """One changed character in migration 1 (or a dropped migration) fails the frozen check
    with a message saying to add a migration instead."""
    first, *rest = MIGRATIONS
    edited = first._replace(statements=(first.statements[0].replace("name ", "title "),
                                        *first.statements[1:]))
    problems = _frozen_problems((edited, *rest))
    assert len(problems) == 1 and "add a migration instead" in problems[0]
    assert "add a migration instead" in _frozen_problems(rest)[0]


def test_versions_are_numbered_in_order():
    """Migrations are numbered 1..N without gaps, LATEST is N, each says what it does."""
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST == MIGRATIONS[-1].version == len(MIGRATIONS)
    assert all(m.description and m.statements for m in MIGRATIONS)
    assert all(isinstance(s, str) for m in MIGRATIONS for s in m.statements)


def test_all_migrations_build_exactly_the_spec(tmp_path):
    """A store made by every migration has the spec's tables, column names in order, DuckDB
    types, nullability and primary keys (state tables only), plus schema_migrations."""
    got = catalog(_store(tmp_path))
    want = {t.name: [(c.name, c.duck, c.nullable) for c in t.columns] for t in TABLES.values()}
    assert got["tables"] == {**want, "schema_migrations": _LEDGER}
    keys = {t.name: t.key for t in TABLES.values() if t.kind == "state"}
    assert got["keys"] == {**keys, "schema_migrations": ("version",)}


def test_spec_ddl_builds_the_same_store(tmp_path):
    """The spec's own DDL and views give the same catalog as the migrations (the lake and
    docs use the spec; the DuckDB file uses the migrations)."""
    migrated = catalog(_store(tmp_path))
    con = duckdb.connect()
    for name in TABLES:
        con.execute(ddl(name))
    for name, (_, select) in VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {select}")
    from_spec = catalog(con)
    migrated["tables"].pop("schema_migrations")
    migrated["keys"].pop("schema_migrations")
    assert from_spec == migrated
    assert set(migrated["views"]) == set(VIEWS)


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_views_are_the_spec_select(view):
    """The latest migration statement creating each view is the spec's SELECT."""
    creates = [s for m in MIGRATIONS for s in m.statements
               if re.match(rf"\s*CREATE (OR REPLACE )?VIEW {view}\b", s)]
    assert creates, f"no migration creates view {view}"
    assert _normal(creates[-1]) == _normal(f"CREATE OR REPLACE VIEW {view} AS {VIEWS[view][1]}")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_table_appears_in_its_since_migration(name):
    """``Table.since`` is the migration that creates the table: absent before, present after."""
    since = TABLES[name].since
    before = catalog(_store(upto=since - 1))["tables"]
    after = catalog(_store(upto=since))["tables"]
    assert name not in before and name in after


def test_migrate_runs_each_migration_once(tmp_path):
    """A second migrate() applies nothing; a store at version 1 gets exactly 2..LATEST, and
    schema_migrations records each version once."""
    con = _store(tmp_path)
    assert migrate(con) == []
    old = duckdb.connect(str(tmp_path / "v1.duckdb"))
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "description VARCHAR, applied_at TIMESTAMP)")
    for stmt in MIGRATIONS[0].statements:
        old.execute(stmt)
    old.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', now()::TIMESTAMP)")
    assert migrate(old) == list(range(2, LATEST + 1))
    assert old.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == [
        (v,) for v in range(1, LATEST + 1)]
    assert catalog(old) == catalog(con)
