"""The store's migrations: numbered, frozen, applied once each.

A store records the migrations it has run in ``schema_migrations``; :func:`migrate` runs the
missing ones in order, each in one transaction. A released migration is a fact about every
store in the field: its statements are literal SQL text here and **never change** (not a
comment, not a space). A store made by v0.1 ran migration 1 exactly as written below; if
migration 1 were rebuilt from today's table spec, a column added later would silently
rewrite it, and old stores would never get that column. So this module does not import
:mod:`runlake.store.spec`; ``tests/store/test_migrations.py`` pins each migration's sha256
and checks that running all of them gives exactly the tables the spec declares.

Adding a column (or a table):

1. Append it to its table in :mod:`runlake.store.spec` (for a table: ``since=`` the new
   migration's number).
2. Append a :class:`Migration` here with the next number and literal statements, e.g.
   ``ALTER TABLE runs ADD COLUMN IF NOT EXISTS notes VARCHAR``. Statements should be safe to
   find half-done (``IF NOT EXISTS``), since a store may hold a table from the lake
   converter or an older runlake.
3. Pin its digest in ``tests/store/test_migrations.py`` and run
   ``python -m runlake.store.docs`` (CI fails while ``docs/store.md`` is stale).

Never edit, reorder or remove a released migration; a mistake in one is fixed by the next.
Columns are added, never removed or renamed (readers of old stores rely on them).
"""

from __future__ import annotations

from typing import NamedTuple

import duckdb

__all__ = ["LATEST", "MIGRATIONS", "Migration", "migrate"]


class Migration(NamedTuple):
    """One migration: its number, what it does, and its statements, run in order."""

    version: int
    description: str
    statements: tuple[str, ...]


_V1: tuple[str, ...] = (
    """
        CREATE TABLE IF NOT EXISTS runs (
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
    """
        CREATE TABLE IF NOT EXISTS writers (
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
    """
        CREATE TABLE IF NOT EXISTS metrics (
            run_id  VARCHAR NOT NULL,
            rank    INTEGER NOT NULL,
            step    BIGINT,
            epoch   INTEGER,
            ts      TIMESTAMP NOT NULL,
            key     VARCHAR NOT NULL,
            value   DOUBLE                        -- NaN and +/-Inf kept
        )""",
    """
        CREATE TABLE IF NOT EXISTS data_items (
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
    """
        CREATE TABLE IF NOT EXISTS datasets (
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
    """
        CREATE TABLE IF NOT EXISTS checkpoints (
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
    """
        CREATE TABLE IF NOT EXISTS samples (
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
    """
        CREATE TABLE IF NOT EXISTS logs (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            ts       TIMESTAMP NOT NULL,
            step     BIGINT,
            level    VARCHAR NOT NULL,
            levelno  INTEGER,
            logger   VARCHAR,
            message  VARCHAR
        )""",
    """
        CREATE TABLE IF NOT EXISTS alerts (
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
    """
        CREATE TABLE IF NOT EXISTS anomalies (
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
    """
        CREATE TABLE IF NOT EXISTS ingest_ledger (
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
    """
        CREATE TABLE IF NOT EXISTS quarantine (
            segment      VARCHAR NOT NULL,
            byte_offset  BIGINT NOT NULL,
            byte_length  BIGINT,
            line_no      INTEGER,                -- line within the frame, for bad lines
            reason       VARCHAR NOT NULL,
            excerpt      VARCHAR,
            detected_at  TIMESTAMP NOT NULL
        )""",
    """
        CREATE OR REPLACE VIEW metric_summary AS
        SELECT run_id, key,
               count(*)                          AS points,
               min(step)                         AS first_step,
               max(step)                         AS last_step,
               arg_max(value, step)              AS last,
               min(value) FILTER (WHERE isfinite(value)) AS min,
               max(value) FILTER (WHERE isfinite(value)) AS max,
               count(*) FILTER (WHERE NOT isfinite(value)) AS nonfinite
        FROM metrics GROUP BY run_id, key""",
)
"""Migration 1, the v0.1 schema: the tables, then the views (text as released in v0.1)."""

_V2: tuple[str, ...] = (
    """
        CREATE TABLE IF NOT EXISTS ingest_frames (
            run_id       VARCHAR NOT NULL,       -- from the run folder (= the events' run_id)
            writer       VARCHAR NOT NULL,       -- from the writer folder (= the events' writer)
            seq          BIGINT NOT NULL,        -- seq of one event of the frame (unique per writer)
            checksum     BIGINT NOT NULL,        -- the frame's zstd content checksum
            segment      VARCHAR NOT NULL,       -- where it was loaded from
            byte_offset  BIGINT NOT NULL
        )""",
    "ALTER TABLE ingest_ledger ADD COLUMN IF NOT EXISTS seq_lo BIGINT",
    "ALTER TABLE ingest_ledger ADD COLUMN IF NOT EXISTS seq_hi BIGINT",
)
"""Migration 2: one row per loaded frame, and per segment the range of its frames' seqs,
so a frame copied into another file is recognised and loaded once
(:mod:`runlake.ingest.frames`)."""
_V3: tuple[str, ...] = (
    """
        CREATE TABLE IF NOT EXISTS histograms (
            run_id       VARCHAR NOT NULL,
            rank         INTEGER NOT NULL,
            step         BIGINT,
            epoch        INTEGER,
            ts           TIMESTAMP NOT NULL,
            key          VARCHAR NOT NULL,
            edges        DOUBLE[] NOT NULL,
            counts       DOUBLE[] NOT NULL,
            min          DOUBLE,
            max          DOUBLE,
            num          DOUBLE,
            sum          DOUBLE,
            sum_squares  DOUBLE
        )""",
    """
        CREATE TABLE IF NOT EXISTS media (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            step     BIGINT,
            ts       TIMESTAMP NOT NULL,
            key      VARCHAR NOT NULL,
            media    VARCHAR NOT NULL,
            sha256   VARCHAR NOT NULL,
            bytes    BIGINT NOT NULL,
            mime     VARCHAR,
            caption  VARCHAR,
            name     VARCHAR,
            blob     VARCHAR NOT NULL,
            meta     JSON
        )""",
    """
        CREATE TABLE IF NOT EXISTS updates (
            run_id   VARCHAR NOT NULL,
            rank     INTEGER NOT NULL,
            step     BIGINT,
            ts       TIMESTAMP NOT NULL,
            config   JSON,
            summary  JSON,
            tags     VARCHAR[],
            notes    VARCHAR,
            metrics  JSON
        )""",
)
"""Migration 3: the event kinds of issue 12: histograms (bucket counts), media (rows
referencing content-addressed blobs beside the segments) and run updates."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _V1),
    Migration(2, "frame keys: duplicate frames are detected and loaded once", _V2),
    Migration(3, "histograms, media and run updates (issue 12)", _V3),
)
"""Every migration, in order. Append new ones; never edit a released one."""

LATEST: int = MIGRATIONS[-1].version
"""The version a store has once :func:`migrate` ran: what this runlake reads and writes."""

_LEDGER = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
           "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)")


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the pending migrations in order, each in its own transaction.

    Args:
        con: a read-write connection to the store.

    Returns:
        The versions applied now (empty when the store was up to date).
    """
    con.execute(_LEDGER)
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, description, statements in MIGRATIONS:
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in statements:
                con.execute(stmt)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)",
                [version, description],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied
