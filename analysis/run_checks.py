"""Detectors over run status, data lineage and sample scores (not metric series).

Same raw finding shape as ``detectors``: run_id, key, detector, severity, step_start,
step_end, value, ref.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from runlake.analysis._common import frame, lower_is_better, run_scope
from runlake.analysis._detect_sql import shape as _shape
from runlake.analysis.lineage import eval_split_sql

__all__ = ["RUN_DETECTORS"]


def crashed_run(con, run_ids, now: dt.datetime) -> pl.DataFrame:
    """Runs that ended as crashed/failed (critical) or killed (warning)."""
    scope, params = run_scope(run_ids)
    return _shape(frame(
        con,
        f"""SELECT run_id, status AS key, 'crashed_run' AS detector,
                   CASE WHEN status = 'killed' THEN 'warning' ELSE 'critical' END AS severity,
                   last_step AS step_start, last_step AS step_end, NULL AS value, NULL AS ref
            FROM runs WHERE {scope} AND status IN ('crashed', 'failed', 'killed')""",
        params,
    ))


def stalled_run(con, run_ids, now: dt.datetime) -> pl.DataFrame:
    """Runs still 'running' whose last sign of life is older than max(10 min, 10 heartbeats)."""
    scope, params = run_scope(run_ids)
    return _shape(frame(
        con,
        f"""SELECT run_id, 'running' AS key, 'stalled_run' AS detector, 'warning' AS severity,
                   last_step AS step_start, last_step AS step_end,
                   epoch_us(?::TIMESTAMP - coalesce(last_seen_at, started_at)) / 1e6 AS value,
                   greatest(600, 10 * coalesce(heartbeat_s, 0)) AS ref
            FROM runs WHERE {scope} AND status = 'running'
              AND epoch_us(?::TIMESTAMP - coalesce(last_seen_at, started_at)) / 1e6
                  > greatest(600, 10 * coalesce(heartbeat_s, 0))""",
        [now, *params, now],
    ))


def duplicate_items(con, run_ids, now) -> pl.DataFrame:
    """Items drawn more than once within one epoch of a training split by one attempt.

    A resumed attempt that replays the epoch its predecessor died in draws those items
    again: that is the resume, not a sampler bug, so draws are counted per attempt (each
    row belongs to the latest writer of its rank that had started by the row's time).
    """
    scope, params = run_scope(run_ids)
    return _shape(frame(
        con,
        f"""WITH tagged AS (
                SELECT d.run_id, d.split, d.epoch, d.item_id, d.step, w.attempt
                FROM (SELECT * FROM data_items
                      WHERE {scope} AND epoch IS NOT NULL AND NOT {eval_split_sql()}) d
                ASOF LEFT JOIN (SELECT run_id, rank, attempt, started_at FROM writers
                                WHERE started_at IS NOT NULL) w
                  ON d.run_id = w.run_id AND d.rank = w.rank AND d.ts >= w.started_at),
             d AS (
                SELECT run_id, split, epoch, item_id, attempt, count(*) AS c,
                       min(step) AS s0, max(step) AS s1
                FROM tagged GROUP BY ALL HAVING count(*) > 1)
            SELECT run_id, split AS key, 'duplicate_items' AS detector, 'warning' AS severity,
                   min(s0) AS step_start, max(s1) AS step_end, count(*)::DOUBLE AS value,
                   sum(c - 1)::DOUBLE AS ref
            FROM d GROUP BY run_id, split""",
        params,
    ))


def train_eval_overlap(con, run_ids, now) -> pl.DataFrame:
    """Items present in both a training and an evaluation split of the same run."""
    scope, params = run_scope(run_ids)
    ev = eval_split_sql()
    return _shape(frame(
        con,
        f"""WITH d AS (SELECT run_id, item_id, step, {ev} AS is_eval FROM data_items
                       WHERE {scope} AND split IS NOT NULL),
                 items AS (SELECT run_id, item_id, min(step) AS s0, max(step) AS s1 FROM d
                           GROUP BY run_id, item_id HAVING bool_or(is_eval) AND bool_or(NOT is_eval)),
                 n_eval AS (SELECT run_id, count(DISTINCT item_id) AS n FROM d WHERE is_eval GROUP BY run_id)
            SELECT i.run_id, 'eval' AS key, 'train_eval_overlap' AS detector, 'critical' AS severity,
                   min(s0) AS step_start, max(s1) AS step_end, count(*)::DOUBLE AS value,
                   any_value(n.n)::DOUBLE AS ref
            FROM items i JOIN n_eval n USING (run_id) GROUP BY i.run_id""",
        params,
    ))


def never_seen_items(con, run_ids, now) -> pl.DataFrame:
    """Runs that started a second epoch without having drawn every item of the dataset once."""
    scope, params = run_scope(run_ids)
    return _shape(frame(
        con,
        f"""WITH size AS (
                SELECT run_id, max(items) FILTER (WHERE split = 'train') AS s_train,
                       max(items) FILTER (WHERE split IS NULL) AS s_any
                FROM datasets WHERE {scope} AND items IS NOT NULL GROUP BY run_id),
            seen AS (
                SELECT run_id, count(DISTINCT item_id) AS seen, count(DISTINCT epoch) AS epochs,
                       max(step) AS last
                FROM data_items WHERE {scope} AND NOT {eval_split_sql()} GROUP BY run_id)
            SELECT s.run_id, 'train' AS key, 'never_seen_items' AS detector, 'warning' AS severity,
                   NULL AS step_start, s.last AS step_end,
                   (coalesce(z.s_train, z.s_any) - s.seen)::DOUBLE AS value,
                   coalesce(z.s_train, z.s_any)::DOUBLE AS ref
            FROM seen s JOIN size z USING (run_id)
            WHERE s.epochs >= 2 AND coalesce(z.s_train, z.s_any) > s.seen""",
        [*params, *params],
    ))


def sample_degradation(con, run_ids, now) -> pl.DataFrame:
    """A sample quality score whose last 3 evaluations all fell well below its best
    (more than 3 robust sigmas and 5%); sigma comes from second differences so a rising
    or falling trend does not inflate it."""
    scope, params = run_scope(run_ids)
    keys = [r[0] for r in con.execute(
        f"SELECT DISTINCT key FROM samples WHERE {scope}", params).fetchall()]
    if not keys:
        return _shape(pl.DataFrame())
    signs = pl.DataFrame({"key": keys, "sign": [-1.0 if lower_is_better(k) else 1.0 for k in keys]})
    con.register("_rl_sample_signs", signs)
    try:
        return _shape(frame(
            con,
            f"""WITH s AS (
                    SELECT m.run_id, m.key, m.step, avg(m.value) AS v, any_value(g.sign) AS sign
                    FROM samples m JOIN _rl_sample_signs g USING (key)
                    WHERE {scope.replace('run_id', 'm.run_id')} AND isfinite(m.value) AND m.step IS NOT NULL
                    GROUP BY m.run_id, m.key, m.step),
                g AS (
                    SELECT *, v * sign AS good,
                           row_number() OVER (PARTITION BY run_id, key ORDER BY step DESC) AS from_end,
                           abs(v * sign - 2 * lag(v * sign) OVER w + lag(v * sign, 2) OVER w) AS d
                    FROM s WINDOW w AS (PARTITION BY run_id, key ORDER BY step)),
                agg AS (
                    SELECT run_id, key, count(*) AS n, max(good) AS peak, arg_max(from_end, good) AS peak_from_end,
                           arg_max(step, good) AS peak_step, arg_max(v, good) AS peak_v,
                           max(good) FILTER (WHERE from_end <= 3) AS tail_best,
                           arg_min(v, from_end) AS last_v, max(step) AS stop,
                           median(d) / 1.652 AS noise  -- robust sigma from 2nd differences (trend-free)
                    FROM g GROUP BY run_id, key)
                SELECT run_id, key, 'sample_degradation' AS detector, 'warning' AS severity,
                       peak_step AS step_start, stop AS step_end, last_v AS value, peak_v AS ref
                FROM agg
                WHERE n >= 5 AND peak_from_end > 3
                  AND tail_best < peak - greatest(3 * coalesce(noise, 0), 0.05 * abs(peak))""",
            params,
        ))
    finally:
        con.unregister("_rl_sample_signs")


RUN_DETECTORS = {
    "crashed_run": crashed_run,
    "stalled_run": stalled_run,
    "duplicate_items": duplicate_items,
    "train_eval_overlap": train_eval_overlap,
    "never_seen_items": never_seen_items,
    "sample_degradation": sample_degradation,
}
