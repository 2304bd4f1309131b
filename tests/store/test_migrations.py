"""The frozen migrations: running all of them gives exactly the tables the spec declares, and a
released migration's text never changes (old stores ran it as it was)."""

from __future__ import annotations

import hashlib
import re
import shutil

import duckdb
import pytest

from runlake.store.migrations import LATEST, MIGRATIONS, Migration, migrate
from runlake.store.spec import TABLES, VIEWS, ddl

# sha256 of "\0".join(statements) of every released migration. Never change one of these:
# a store in the field ran that text. A new migration gets its digest added here.
PINNED = {
    1: "64df5026e51d2ce690f7ff0ca0a30de5b22dcaa2a17183cc26c5b8c3a6130a66",
    2: "66c11770e31a7b73aae873164feb54eb4f9f700cb4c6ddd99cfc4d9eadc50cde",
    3: "4bfe948c9e871c79ae961ba743917b70b7a244dc50a172fe2e45185152eb783b",
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


# -- a store made by runlake v0.1 -----------------------------------------------------------
# The v0.1 schema exactly as v0.1 created it (its migration 1, before migration 2 existed),
# frozen here on purpose: not imported from runlake, so no change to runlake can alter it.
V01_SCHEMA = (
    """CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR,
       applied_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS runs (
            run_id        VARCHAR PRIMARY KEY,
            project       VARCHAR NOT NULL,
            name          VARCHAR,
            group_name    VARCHAR,
            status        VARCHAR NOT NULL,      -- running | finished | failed | killed | crashed
            started_at    TIMESTAMP,
            ended_at      TIMESTAMP,
            last_seen_at  TIMESTAMP,
            config        JSON,
            tags          VARCHAR[],
            git_commit    VARCHAR,
            git_branch    VARCHAR,
            git_dirty     BOOLEAN,
            host          JSON,
            argv          JSON,
            world_size    INTEGER,
            attempts      INTEGER,              -- number of attempts (resumes + 1)
            last_step     BIGINT,
            total_steps   BIGINT,
            eta_s         DOUBLE,
            heartbeat_s   DOUBLE,               -- expected heartbeat interval
            exit_reason   VARCHAR,
            traceback     VARCHAR,
            summary       JSON,
            dropped       BIGINT                -- events the emitter counted as dropped
        )""",
    """CREATE TABLE IF NOT EXISTS writers (
            run_id        VARCHAR NOT NULL,
            writer        VARCHAR NOT NULL,
            rank          INTEGER,
            attempt       INTEGER,
            hostname      VARCHAR,
            pid           INTEGER,
            status        VARCHAR NOT NULL,      -- running | finished | failed | killed | crashed
            started_at    TIMESTAMP,
            ended_at      TIMESTAMP,
            last_seen_at  TIMESTAMP,
            last_step     BIGINT,
            total_steps   BIGINT,
            eta_s         DOUBLE,
            heartbeat_s   DOUBLE,
            events        BIGINT,
            dropped       JSON,
            exit_reason   VARCHAR,
            PRIMARY KEY (run_id, writer)
        )""",
    """CREATE TABLE IF NOT EXISTS metrics (
            run_id  VARCHAR NOT NULL,
            rank    INTEGER NOT NULL,
            step    BIGINT,
            epoch   INTEGER,
            ts      TIMESTAMP NOT NULL,
            key     VARCHAR NOT NULL,
            value   DOUBLE                        -- NaN and +/-Inf kept
        )""",
    """CREATE TABLE IF NOT EXISTS data_items (
            run_id     VARCHAR NOT NULL,
            rank       INTEGER NOT NULL,
            step       BIGINT,
            epoch      INTEGER,
            split      VARCHAR,
            item_id    VARCHAR NOT NULL,
            source     VARCHAR,
            dataset    VARCHAR,
            augment    JSON,
            cache_hit  BOOLEAN,
            load_ms    DOUBLE,
            ts         TIMESTAMP NOT NULL
        )""",
    """CREATE TABLE IF NOT EXISTS datasets (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            ts       TIMESTAMP NOT NULL,
            step     BIGINT,
            name     VARCHAR NOT NULL,
            version  VARCHAR,
            digest   VARCHAR,
            items    BIGINT,
            source   VARCHAR,
            split    VARCHAR,
            meta     JSON
        )""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            ts       TIMESTAMP NOT NULL,
            step     BIGINT,
            uri      VARCHAR NOT NULL,
            bytes    BIGINT,
            sha256   VARCHAR,
            metrics  JSON,
            tags     VARCHAR[]
        )""",
    """CREATE TABLE IF NOT EXISTS samples (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            ts       TIMESTAMP NOT NULL,
            step     BIGINT,
            name     VARCHAR NOT NULL,
            uri      VARCHAR,
            split    VARCHAR,
            item_id  VARCHAR,
            key      VARCHAR NOT NULL,            -- one row per quality score
            value    DOUBLE,
            meta     JSON
        )""",
    """CREATE TABLE IF NOT EXISTS logs (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            ts       TIMESTAMP NOT NULL,
            step     BIGINT,
            level    VARCHAR NOT NULL,
            levelno  INTEGER,
            logger   VARCHAR,
            message  VARCHAR
        )""",
    """CREATE TABLE IF NOT EXISTS alerts (
            run_id      VARCHAR NOT NULL,
            rank        INTEGER NOT NULL,
            ts          TIMESTAMP NOT NULL,
            step        BIGINT,
            alert       VARCHAR,                 -- nonfinite | exploding | user | ...
            severity    VARCHAR,
            key         VARCHAR,
            value       DOUBLE,
            message     VARCHAR,
            suggestion  VARCHAR,
            source      VARCHAR
        )""",
    """CREATE TABLE IF NOT EXISTS anomalies (
            run_id       VARCHAR NOT NULL,
            kind         VARCHAR NOT NULL,
            severity     VARCHAR NOT NULL,       -- info | warning | critical
            key          VARCHAR,
            step_start   BIGINT,
            step_end     BIGINT,
            value        DOUBLE,
            message      VARCHAR NOT NULL,
            suggestion   VARCHAR,
            detector     VARCHAR NOT NULL,
            detected_at  TIMESTAMP NOT NULL
        )""",
    """CREATE TABLE IF NOT EXISTS ingest_ledger (
            segment     VARCHAR PRIMARY KEY,     -- sealed path relative to the root
            project     VARCHAR,
            run_id      VARCHAR,
            writer      VARCHAR,
            bytes       BIGINT NOT NULL,         -- bytes consumed (whole frames only)
            frames      BIGINT NOT NULL,
            events      BIGINT NOT NULL,
            sealed      BOOLEAN NOT NULL,
            status      VARCHAR NOT NULL,        -- live | done | damaged
            error       VARCHAR,
            updated_at  TIMESTAMP NOT NULL
        )""",
    """CREATE TABLE IF NOT EXISTS quarantine (
            segment      VARCHAR NOT NULL,
            byte_offset  BIGINT NOT NULL,
            byte_length  BIGINT,
            line_no      INTEGER,                -- line within the frame, for bad lines
            reason       VARCHAR NOT NULL,
            excerpt      VARCHAR,
            detected_at  TIMESTAMP NOT NULL
        )""",
    """CREATE OR REPLACE VIEW metric_summary AS
        SELECT run_id, key,
               count(*)                          AS points,
               min(step)                         AS first_step,
               max(step)                         AS last_step,
               arg_max(value, step)              AS last,
               min(value) FILTER (WHERE isfinite(value)) AS min,
               max(value) FILTER (WHERE isfinite(value)) AS max,
               count(*) FILTER (WHERE NOT isfinite(value)) AS nonfinite
        FROM metrics GROUP BY run_id, key""",
    "INSERT INTO schema_migrations VALUES (1, 'initial schema', TIMESTAMP '2026-01-05 10:00:00')",
)
_T0 = "TIMESTAMP '2026-01-05 09:00:00'"
_OLD_SEG = "old/run-v01/r0000-a000-old/000000.jsonl.zst"
# A few rows in every v0.1 table, as v0.1 would have written them (one finished run).
V01_ROWS = {
    "runs": f"""('run-v01', 'old', 'baseline', NULL, 'finished', {_T0}, {_T0}, {_T0},
               '{{"lr": 0.1}}', ['best'], 'abc123', 'main', false, '{{"hostname": "h"}}',
               '["train.py"]', 1, 1, 2, 2, NULL, 30.0, NULL, NULL, '{{"acc": 0.9}}', 0)""",
    "writers": f"""('run-v01', 'r0000-a000-old', 0, 0, 'h', 4242, 'finished', {_T0}, {_T0},
                  {_T0}, 2, 2, NULL, 30.0, 7, '{{}}', NULL)""",
    "metrics": f"""('run-v01', 0, 1, NULL, {_T0}, 'loss', 0.5),
                  ('run-v01', 0, 2, NULL, {_T0}, 'loss', 'NaN'::DOUBLE)""",
    "data_items": f"('run-v01', 0, 1, 0, 'train', 'img-1', 's3://b', 'cifar', NULL, true, "
                  f"1.5, {_T0})",
    "datasets": f"('run-v01', 0, {_T0}, 0, 'cifar', 'v1', 'sha:1', 50000, 's3://b', 'train', "
                f"'{{}}')",
    "checkpoints": f"('run-v01', 0, {_T0}, 2, '/ckpt/2.pt', 10, 'ab', '{{\"loss\": 0.5}}', "
                   f"['latest'])",
    "samples": f"('run-v01', 0, {_T0}, 2, 'gen-1', NULL, 'val', NULL, 'bleu', 0.3, NULL)",
    "logs": f"('run-v01', 0, {_T0}, 1, 'INFO', 20, 'train', 'epoch 0')",
    "alerts": f"('run-v01', 0, {_T0}, 2, 'nonfinite', 'critical', 'loss', 'NaN'::DOUBLE, "
              f"'loss is NaN', 'lower the lr', 'online')",
    "anomalies": f"('run-v01', 'nonfinite', 'critical', 'loss', 2, 2, 'NaN'::DOUBLE, "
                 f"'loss became NaN', 'lower the lr', 'nonfinite', {_T0})",
    "ingest_ledger": f"('{_OLD_SEG}', 'old', 'run-v01', 'r0000-a000-old', 900, 2, 7, true, "
                     f"'done', NULL, {_T0})",
    "quarantine": f"('{_OLD_SEG}', 800, 100, 3, 'not JSON', '{{oops', {_T0})",
}


def _v01_store(path) -> dict[str, list]:
    """A v0.1 store file at ``path`` holding :data:`V01_ROWS`; returns its rows per table
    (v0.1 columns), as they must stay."""
    con = duckdb.connect(str(path))
    try:
        for stmt in V01_SCHEMA:
            con.execute(stmt)
        for table, values in V01_ROWS.items():
            con.execute(f"INSERT INTO {table} VALUES {values}")
        return _old_rows(con)
    finally:
        con.close()


def _old_rows(con) -> dict[str, list]:
    out = {}
    for table in V01_ROWS:
        cols = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
            "AND column_name NOT IN ('seq_lo', 'seq_hi') ORDER BY column_index",
            [table]).fetchall()]
        by = "segment" if table in ("ingest_ledger", "quarantine") else "run_id"
        rows = con.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {by} LIKE "
                           f"'%run-v01%' ORDER BY ALL").fetchall()
        out[table] = [tuple("NaN" if v != v else v for v in r) for r in rows]  # NaN != NaN
    return out


def _log_new_run(root) -> None:
    """One finished run written by the emitter: metrics, a dataset, a checkpoint, an alert."""
    import runlake

    run = runlake.init("new", "fresh", root=root, run_id="run-new", console=False,
                       system_interval=0, capture_logging=False, online_checks=False)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
    run.log_dataset("mnist", version="v2", items=60000)
    run.log_checkpoint("/ckpt/new.pt", step=4, bytes=3, sha256="cd")
    run.alert("slow", severity="info", key="loss", value=1.0)
    run.finish()


def test_v01_store_upgrades_in_place(tmp_path):
    """A store written by v0.1 (schema frozen in this test, rows in every table), ingested by
    today's code with new segments: the same tables, columns and types as a fresh store, the
    old rows intact, the new rows loaded, and schema_migrations at LATEST."""
    from runlake.ingest import ingest

    old_root, fresh_root = tmp_path / "old", tmp_path / "fresh"
    _log_new_run(old_root)
    shutil.copytree(old_root, fresh_root)  # the same segments, no store yet
    before = _v01_store(old_root / "runlake.duckdb")
    assert all(before.values())  # every table holds rows

    for root in (old_root, fresh_root):
        report = ingest(root)
        assert report.points == 10 and not report.problems

    old = duckdb.connect(str(old_root / "runlake.duckdb"), read_only=True)
    fresh = duckdb.connect(str(fresh_root / "runlake.duckdb"), read_only=True)
    try:
        assert catalog(old) == catalog(fresh)
        assert _old_rows(old) == before
        assert old.execute("SELECT seq_lo, seq_hi FROM ingest_ledger WHERE segment = ?",
                           [_OLD_SEG]).fetchall() == [(None, None)]
        assert old.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == [
            (v,) for v in range(1, LATEST + 1)]
        new = ("SELECT * FROM {} WHERE run_id = 'run-new' ORDER BY ALL")
        for table in ("metrics", "datasets", "checkpoints", "alerts", "ingest_frames"):
            rows = old.execute(new.format(table)).fetchall()
            assert rows and rows == fresh.execute(new.format(table)).fetchall(), table
        state = "SELECT run_id, project, status, last_step FROM runs ORDER BY run_id"
        assert old.execute(state).fetchall() == [
            ("run-new", "new", "finished", 4), ("run-v01", "old", "finished", 2)]
    finally:
        old.close()
        fresh.close()
