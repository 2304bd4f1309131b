"""The DuckDB store schema: tables, views and recorded migrations.

The store is one DuckDB file (default ``<root>/runlake.duckdb``). Every table below is
documented in ``docs/store.md``; columns may be added (a new migration), never removed or
renamed. Timestamps are ``TIMESTAMP`` in UTC (microseconds). Each migration runs once, in
order, inside a transaction, and is recorded in ``schema_migrations``.
"""

from __future__ import annotations

__all__ = ["FRAME_KEYS", "MIGRATIONS", "TABLES", "VIEWS"]

TABLES: dict[str, str] = {
    "runs": """
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
    "writers": """
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
    "metrics": """
        CREATE TABLE IF NOT EXISTS metrics (
            run_id  VARCHAR NOT NULL,
            rank    INTEGER NOT NULL,
            step    BIGINT,
            epoch   INTEGER,
            ts      TIMESTAMP NOT NULL,
            key     VARCHAR NOT NULL,
            value   DOUBLE                        -- NaN and +/-Inf kept
        )""",
    "data_items": """
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
    "datasets": """
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
    "checkpoints": """
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
    "samples": """
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
    "logs": """
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
    "alerts": """
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
    "anomalies": """
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
    "ingest_ledger": """
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
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            segment      VARCHAR NOT NULL,
            byte_offset  BIGINT NOT NULL,
            byte_length  BIGINT,
            line_no      INTEGER,                -- line within the frame, for bad lines
            reason       VARCHAR NOT NULL,
            excerpt      VARCHAR,
            detected_at  TIMESTAMP NOT NULL
        )""",
}

VIEWS: dict[str, str] = {
    "metric_summary": """
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
}

FRAME_KEYS: list[str] = [
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
]
"""Migration 2: one row per loaded frame, and per segment the range of its frames' seqs,
so a frame copied into another file is recognised and loaded once
(:mod:`runlake.ingest.frames`). Not in :data:`TABLES`, which is migration 1 (and the
per-run tables that exports copy)."""

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "initial schema", [*TABLES.values(), *VIEWS.values()]),
    (2, "frame keys: duplicate frames are detected and loaded once", FRAME_KEYS),
]
"""``(version, description, statements)``; append new migrations, never edit old ones."""
