"""Context drawn on curves: where a resumed attempt began, where checkpoints were saved,
and whether the runs logged epochs at all.

A curve that drops or jumps at step 1,200 reads differently when the run was resumed
there from a checkpoint; these queries give the Charts view (and anyone else) those
steps. Each is one small SQL query over the store's ``writers`` (one row per rank and
attempt, docs: store/spec.py), ``checkpoints`` and ``metrics`` tables.
"""

from __future__ import annotations

from typing import Sequence

import duckdb
import polars as pl

from runlake.analysis._common import frame, run_scope, scalar

__all__ = ["checkpoint_points", "has_epochs", "resume_points"]


def resume_points(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pl.DataFrame:
    """Where each resumed attempt of these runs began.

    An attempt above 0 of a run's lowest rank (the rank whose metrics the curves draw)
    begins at the first metrics step that rank logged at or after the attempt's
    ``run_start``; an attempt that logged no metrics has no marker.

    Returns:
        run_id, attempt, started_at, step: sorted by run and attempt.
    """
    scope, params = run_scope(list(run_ids), "w.run_id")
    return frame(
        con,
        f"""WITH w AS (SELECT * FROM writers w WHERE {scope} AND started_at IS NOT NULL),
                 lo AS (SELECT run_id, min(rank) AS rk FROM w GROUP BY run_id),
                 resumed AS (SELECT w.run_id, w.rank, w.attempt, w.started_at
                             FROM w JOIN lo ON w.run_id = lo.run_id AND w.rank = lo.rk
                             WHERE w.attempt > 0)
            SELECT r.run_id, r.attempt, r.started_at, min(m.step) AS step
            FROM resumed r JOIN metrics m
              ON m.run_id = r.run_id AND m.rank = r.rank AND m.ts >= r.started_at
             AND m.step IS NOT NULL
            GROUP BY r.run_id, r.attempt, r.started_at
            ORDER BY r.run_id, r.attempt""",
        params,
    )


def checkpoint_points(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pl.DataFrame:
    """Checkpoints these runs saved (retention's ``deleted`` rows left out), one per run
    and step.

    Returns:
        run_id, step, uri, tags: sorted by run and step.
    """
    scope, params = run_scope(list(run_ids))
    return frame(
        con,
        f"""SELECT run_id, step, arg_max(uri, ts) AS uri, arg_max(tags, ts) AS tags
            FROM checkpoints
            WHERE {scope} AND step IS NOT NULL AND NOT list_contains(coalesce(tags, []), 'deleted')
            GROUP BY run_id, step ORDER BY run_id, step""",
        params,
    )


def has_epochs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> bool:
    """Whether any of these runs logged a metric with an epoch (``run.log(..., epoch=)``),
    which the epoch x axis needs."""
    scope, params = run_scope(list(run_ids))
    return bool(scalar(
        con, f"SELECT 1 FROM metrics WHERE {scope} AND epoch IS NOT NULL LIMIT 1", params))
