"""Metric detectors: set-based SQL over the bucket statistics of ``series.SeriesTables``.

Each detector returns raw findings, one row per contiguous flagged range:
``run_id, key, detector, severity, step_start, step_end, value, ref`` where ``value`` is
the most extreme observed value and ``ref`` the reference it was judged against (local
level, running best, baseline...). ``anomalies`` turns them into worded findings.

Thresholds are multiples of each series' own robust noise scale (``sigma``) combined
with a relative floor, so a smooth loss and a noisy one are judged on their own terms.
Consecutive flagged buckets (or points) merge into one finding ("gaps and islands").
"""

from __future__ import annotations

import polars as pl

from runlake.analysis.series import SeriesTables

__all__ = ["METRIC_DETECTORS", "RAW_COLUMNS"]

RAW_COLUMNS = ["run_id", "key", "detector", "severity", "step_start", "step_end", "value", "ref"]
_SCHEMA = {
    "run_id": pl.Utf8, "key": pl.Utf8, "detector": pl.Utf8, "severity": pl.Utf8,
    "step_start": pl.Int64, "step_end": pl.Int64, "value": pl.Float64, "ref": pl.Float64,
}

# z-score (in robust sigmas) above which a single point is a spike
SPIKE_Z = 8.0


def _shape(df: pl.DataFrame) -> pl.DataFrame:
    if df.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    return df.select([pl.col(c).cast(t) for c, t in _SCHEMA.items()])


def _islands(flagged: str, order: str = "b", gap: str = "1") -> str:
    """SQL turning a flagged relation (run_id, rank, key, <order>, ...) into island ids."""
    return f"""
        SELECT *, sum(CASE WHEN {order} - prev > {gap} OR prev IS NULL THEN 1 ELSE 0 END)
                  OVER (PARTITION BY run_id, rank, key ORDER BY {order}) AS island
        FROM (SELECT *, lag({order}) OVER (PARTITION BY run_id, rank, key ORDER BY {order}) AS prev
              FROM ({flagged}))"""


def nonfinite(st: SeriesTables) -> pl.DataFrame:
    """NaN or ±Inf values, any key; consecutive ones (no finite point between) merge."""
    scope_sql = "TRUE" if st.run_ids is None else "m.run_id IN (SELECT unnest(?::VARCHAR[]))"
    params = [] if st.run_ids is None else [list(st.run_ids)]
    flagged = f"""
        SELECT m.run_id, m.rank, m.key, m.step, m.value,
               greatest((s.l - s.f)::DOUBLE / greatest(s.n - 1, 1), 1.0) AS gap
        FROM metrics m JOIN {{stats}} s ON m.run_id = s.run_id AND m.rank = s.rank AND m.key = s.key
        WHERE {scope_sql} AND NOT isfinite(m.value) AND m.step IS NOT NULL"""
    return _shape(st.frame(
        f"""WITH f AS ({flagged}),
                 i AS (SELECT *, sum(CASE WHEN step - prev > 1.5 * gap OR prev IS NULL THEN 1 ELSE 0 END)
                                 OVER (PARTITION BY run_id, rank, key ORDER BY step) AS island
                       FROM (SELECT *, lag(step) OVER (PARTITION BY run_id, rank, key ORDER BY step) AS prev FROM f))
            SELECT i.run_id, i.key, 'nonfinite' AS detector,
                   CASE WHEN any_value(r.role) IN ('train_loss', 'val_loss', 'grad_norm')
                        THEN 'critical' ELSE 'warning' END AS severity,
                   min(step) AS step_start, max(step) AS step_end,
                   arg_min(value, step) AS value, count(*)::DOUBLE AS ref
            FROM i LEFT JOIN {{roles}} r USING (key)
            GROUP BY i.run_id, i.rank, i.key, island""",
        params,
    ))


def _spikes(st: SeriesTables, roles: tuple[str, ...], detector: str, rel_floor: float,
            crit_ratio: float) -> pl.DataFrame:
    """Points above ``center + SPIKE_Z * sigma`` (and ``rel_floor`` above the level)."""
    role_list = ", ".join(f"'{r}'" for r in roles)
    return _shape(st.frame(
        f"""WITH cand AS (
                SELECT run_id, rank, key, b, s0, s1, center, sigma FROM {{buckets}}
                WHERE role IN ({role_list}) AND vmax > center + {SPIKE_Z} * sigma
                  AND vmax > center + {rel_floor} * abs(center)),
            pts AS (
                SELECT m.run_id, m.rank, m.key, m.step, m.value, c.center, c.sigma, c.b
                FROM metrics m JOIN cand c
                  ON m.run_id = c.run_id AND m.rank = c.rank AND m.key = c.key
                 AND m.step BETWEEN c.s0 AND c.s1
                WHERE isfinite(m.value) AND m.value > c.center + {SPIKE_Z} * c.sigma
                  AND m.value > c.center + {rel_floor} * abs(c.center)),
            isl AS ({_islands("SELECT * FROM pts", "b", "1")})
            SELECT run_id, key, '{detector}' AS detector,
                   CASE WHEN max(value) >= {crit_ratio} * abs(any_value(center)) AND any_value(center) > 0
                        THEN 'critical' ELSE 'warning' END AS severity,
                   min(step) AS step_start, max(step) AS step_end,
                   max(value) AS value, arg_max(center, value) AS ref
            FROM isl GROUP BY run_id, rank, key, island"""
    ))


def loss_spike(st: SeriesTables) -> pl.DataFrame:
    return _spikes(st, ("train_loss", "val_loss"), "loss_spike", 0.05, 3.0)


def grad_spike(st: SeriesTables) -> pl.DataFrame:
    return _spikes(st, ("grad_norm",), "grad_spike", 2.0, 10.0)


def divergence(st: SeriesTables) -> pl.DataFrame:
    """Training loss rising well above its running best for 3+ buckets (or into NaN)."""
    return _shape(st.frame(
        f"""WITH f AS (
                SELECT run_id, rank, key, b, s0, s1, nb,
                       coalesce(med, 'inf'::DOUBLE) AS med, prior_min
                FROM {{buckets}}
                WHERE role = 'train_loss' AND prior_min IS NOT NULL
                  AND (nfin = 0 OR med - prior_min > greatest(3 * sigma, 0.1 * abs(prior_min)))),
            isl AS ({_islands("SELECT * FROM f")}),
            last AS (SELECT run_id, rank, key, max(b) AS lb FROM {{buckets}}
                     WHERE role = 'train_loss' GROUP BY ALL)
            SELECT i.run_id, i.key, 'divergence' AS detector,
                   CASE WHEN max(i.b) = any_value(l.lb)
                          OR max(i.med) >= 2 * abs(min(i.prior_min)) THEN 'critical'
                        ELSE 'warning' END AS severity,
                   min(i.s0) AS step_start, max(i.s1) AS step_end,
                   coalesce(max(i.med) FILTER (WHERE isfinite(i.med)), max(i.med)) AS value,
                   min(i.prior_min) AS ref
            FROM isl i JOIN last l USING (run_id, rank, key)
            GROUP BY i.run_id, i.rank, i.key, i.island
            HAVING count(*) >= 3 OR (count(*) >= 2 AND max(i.b) = any_value(l.lb))"""
    ))


def plateau(st: SeriesTables) -> pl.DataFrame:
    """Training loss whose last quarter (3+ buckets) improved on the earlier best by less
    than twice the noise of a bucket median (info; warning when it never improved at all)."""
    return _shape(st.frame(
        """WITH b AS (
               SELECT *, count(*) OVER (PARTITION BY run_id, rank, key) AS nbk,
                      row_number() OVER (PARTITION BY run_id, rank, key ORDER BY b DESC) AS from_end
               FROM {buckets} WHERE role = 'train_loss' AND med IS NOT NULL),
           w AS (SELECT *, greatest(3, nbk // 4) AS win FROM b WHERE nbk >= 8),
           agg AS (
               SELECT run_id, rank, key,
                      min(med) FILTER (WHERE from_end <= win) AS best_in,
                      min(med) FILTER (WHERE from_end > win) AS best_before,
                      arg_max(med, b) FILTER (WHERE from_end > win) AS first_med,
                      min(s0) FILTER (WHERE from_end <= win) AS start,
                      max(s1) AS stop,
                      median(sigma_med) FILTER (WHERE from_end <= win) AS noise,
                      arg_min(med, b) AS initial
               FROM w GROUP BY run_id, rank, key)
           SELECT run_id, key, 'plateau' AS detector,
                  CASE WHEN (initial - least(best_in, best_before)) < 0.02 * abs(initial)
                       THEN 'warning' ELSE 'info' END AS severity,
                  start AS step_start, stop AS step_end, best_in AS value, best_before AS ref
           FROM agg
           WHERE best_before - best_in < greatest(2 * noise, 1e-3 * abs(best_before))"""
    ))


def grad_growth(st: SeriesTables) -> pl.DataFrame:
    """Gradient norm growing 10x above its running minimum for 2+ buckets."""
    return _shape(st.frame(
        f"""WITH f AS (
                SELECT * FROM {{buckets}}
                WHERE role = 'grad_norm' AND prior_min > 0
                  AND med > 10 * prior_min AND med - prior_min > 5 * sigma),
            isl AS ({_islands("SELECT * FROM f")})
            SELECT run_id, key, 'grad_growth' AS detector, 'critical' AS severity,
                   min(s0) AS step_start, max(s1) AS step_end, max(med) AS value,
                   min(prior_min) AS ref
            FROM isl GROUP BY run_id, rank, key, island HAVING count(*) >= 2"""
    ))


def vanishing_gradients(st: SeriesTables) -> pl.DataFrame:
    """Gradient norm below 1/1000 of its early level (or ~0) for 3+ buckets."""
    return _shape(st.frame(
        f"""WITH ref AS (
                SELECT run_id, rank, key, median(med) AS early FROM (
                    SELECT *, row_number() OVER (PARTITION BY run_id, rank, key ORDER BY b) AS i,
                           count(*) OVER (PARTITION BY run_id, rank, key) AS nbk
                    FROM {{buckets}} WHERE role = 'grad_norm' AND med IS NOT NULL)
                WHERE i <= greatest(3, nbk // 5) GROUP BY ALL),
            f AS (
                SELECT bk.*, r.early FROM {{buckets}} bk JOIN ref r USING (run_id, rank, key)
                WHERE bk.role = 'grad_norm' AND (bk.vmax < 1e-3 * r.early OR bk.vmax < 1e-12)),
            isl AS ({_islands("SELECT * FROM f")})
            SELECT run_id, key, 'vanishing_gradients' AS detector, 'warning' AS severity,
                   min(s0) AS step_start, max(s1) AS step_end, max(vmax) AS value,
                   any_value(early) AS ref
            FROM isl GROUP BY run_id, rank, key, island HAVING count(*) >= 3"""
    ))


def lr_zero(st: SeriesTables) -> pl.DataFrame:
    """Learning rate <= 0 after the first point and before the last 2% of the run."""
    return _shape(st.frame(
        f"""WITH cand AS (
                SELECT b.run_id, b.rank, b.key, b.b, b.s0, b.s1, s.f, s.l
                FROM {{buckets}} b JOIN {{series}} s USING (run_id, rank, key)
                WHERE b.role = 'lr' AND b.nonpos > 0),
            pts AS (
                SELECT m.run_id, m.rank, m.key, m.step, m.value, c.b
                FROM metrics m JOIN cand c
                  ON m.run_id = c.run_id AND m.rank = c.rank AND m.key = c.key
                 AND m.step BETWEEN c.s0 AND c.s1
                WHERE m.value <= 0 AND m.step > c.f AND m.step < c.l - 0.02 * (c.l - c.f)),
            isl AS ({_islands("SELECT * FROM pts", "b", "1")})
            SELECT run_id, key, 'lr_zero' AS detector, 'warning' AS severity,
                   min(step) AS step_start, max(step) AS step_end, min(value) AS value,
                   NULL::DOUBLE AS ref
            FROM isl GROUP BY run_id, rank, key, island"""
    ))


def lr_jump(st: SeriesTables) -> pl.DataFrame:
    """Learning rate multiplied by >2 in one step after a flat or decaying stretch
    (warning), or divided by >10 in one step (info: usually a step schedule)."""
    return _shape(st.frame(
        """WITH bk AS (
               SELECT *, lag(v1) OVER (PARTITION BY run_id, rank, key ORDER BY b) AS prev_last,
                         lag(b) OVER (PARTITION BY run_id, rank, key ORDER BY b) AS prev_b
               FROM {buckets} WHERE role = 'lr'),
           cand AS (
               SELECT run_id, rank, key, b, coalesce(prev_b, b) AS b_from FROM bk
               WHERE (vmin > 0 AND vmax / vmin > 2) OR (vmin > 0 AND vmax / vmin > 10)
                  OR (prev_last > 0 AND (v0 / prev_last > 2 OR v0 / prev_last < 0.1))),
           span AS (
               SELECT c.run_id, c.rank, c.key, min(bb.s0) AS s0, max(bb.s1) AS s1
               FROM cand c JOIN {buckets} bb
                 ON bb.run_id = c.run_id AND bb.rank = c.rank AND bb.key = c.key
                AND bb.b BETWEEN c.b_from AND c.b
               GROUP BY c.run_id, c.rank, c.key, c.b),
           pts AS (
               SELECT DISTINCT m.run_id, m.rank, m.key, m.step, m.value
               FROM metrics m JOIN span s
                 ON m.run_id = s.run_id AND m.rank = s.rank AND m.key = s.key
                AND m.step BETWEEN s.s0 AND s.s1),
           r AS (
               SELECT *, value / lag(value) OVER w AS ratio, lag(value) OVER w AS prev
               FROM pts WINDOW w AS (PARTITION BY run_id, rank, key ORDER BY step)),
           r2 AS (SELECT *, lag(ratio) OVER (PARTITION BY run_id, rank, key ORDER BY step) AS prev_ratio
                  FROM r)
           SELECT run_id, key, 'lr_jump' AS detector,
                  CASE WHEN ratio > 2 THEN 'warning' ELSE 'info' END AS severity,
                  step AS step_start, step AS step_end, value, prev AS ref
           FROM r2
           WHERE prev > 0 AND prev_ratio IS NOT NULL
             AND ((ratio > 2 AND prev_ratio <= 1.0 + 1e-9)
               OR (ratio < 0.1 AND prev_ratio >= 0.999))"""
    ))


def throughput_drop(st: SeriesTables) -> pl.DataFrame:
    """Throughput buckets below 70% of the series' median level (beyond noise)."""
    return _shape(st.frame(
        f"""WITH base AS (
                SELECT run_id, rank, key, median(med) AS level FROM (
                    SELECT *, row_number() OVER (PARTITION BY run_id, rank, key ORDER BY b) AS i
                    FROM {{buckets}} WHERE role = 'throughput' AND med IS NOT NULL)
                WHERE i > 1 GROUP BY ALL),
            f AS (
                SELECT bk.*, base.level,
                       row_number() OVER (PARTITION BY bk.run_id, bk.rank, bk.key ORDER BY bk.b) AS i
                FROM {{buckets}} bk JOIN base USING (run_id, rank, key)
                WHERE bk.role = 'throughput'),
            g AS (SELECT * FROM f WHERE i > 1 AND med < 0.7 * level
                                  AND med < level - 3 * sigma_med),
            isl AS ({_islands("SELECT * FROM g")})
            SELECT run_id, key, 'throughput_drop' AS detector,
                   CASE WHEN count(*) >= 2 THEN 'warning' ELSE 'info' END AS severity,
                   min(s0) AS step_start, max(s1) AS step_end, min(med) AS value,
                   any_value(level) AS ref
            FROM isl GROUP BY run_id, rank, key, island"""
    ))


def memory_growth(st: SeriesTables) -> pl.DataFrame:
    """Memory rising steadily (linear fit r² >= 0.8, +20% or more) after the first 10%."""
    return _shape(st.frame(
        """WITH b AS (
               SELECT *, count(*) OVER (PARTITION BY run_id, rank, key) AS nbk,
                         row_number() OVER (PARTITION BY run_id, rank, key ORDER BY b) AS i
               FROM {buckets} WHERE role = 'memory' AND med IS NOT NULL),
           fit AS (
               SELECT run_id, rank, key, regr_slope(med, b) AS slope,
                      regr_intercept(med, b) AS icpt, regr_r2(med, b) AS r2,
                      min(b) AS b0, max(b) AS b1, min(s0) AS start, max(s1) AS stop,
                      arg_max(med, b) AS last, count(*) AS nfit
               FROM b WHERE i > nbk // 10 GROUP BY run_id, rank, key)
           SELECT run_id, key, 'memory_growth' AS detector,
                  CASE WHEN slope * (b1 - b0) >= abs(icpt + slope * b0) THEN 'critical'
                       ELSE 'warning' END AS severity,
                  start AS step_start, stop AS step_end, last AS value,
                  icpt + slope * b0 AS ref
           FROM fit
           WHERE nfit >= 5 AND slope > 0 AND r2 >= 0.8
             AND slope * (b1 - b0) >= 0.2 * abs(icpt + slope * b0)"""
    ))


def overfitting(st: SeriesTables, pairs: pl.DataFrame) -> pl.DataFrame:
    """Validation loss rising from its minimum for the last 3+ points/buckets while the
    paired training loss keeps falling (``pairs``: run_id, val_key, train_key)."""
    if pairs.is_empty():
        return _shape(pl.DataFrame())
    st.con.register("_rl_pairs_v", pairs)
    try:
        return _shape(st.frame(
            """WITH v AS (
                   SELECT bk.*, p.train_key,
                          row_number() OVER (PARTITION BY bk.run_id, bk.key ORDER BY bk.b DESC) AS from_end,
                          count(*) OVER (PARTITION BY bk.run_id, bk.key) AS nbk
                   FROM {buckets} bk JOIN _rl_pairs_v p ON bk.run_id = p.run_id AND bk.key = p.val_key
                   WHERE bk.med IS NOT NULL),
               vmin AS (
                   SELECT run_id, key, any_value(train_key) AS train_key, min(med) AS vbest,
                          arg_min(s1, med) AS best_step, arg_min(from_end, med) AS best_from_end,
                          max(s1) AS stop,
                          min(med) FILTER (WHERE from_end <= 3) AS tail_min,
                          arg_min(med, -from_end) AS vlast,
                          median(sigma) AS noise, any_value(nbk) AS nbk
                   FROM v GROUP BY run_id, key),
               t AS (
                   SELECT bk.run_id, bk.key, bk.s0, bk.s1, bk.med FROM {buckets} bk
                   WHERE bk.med IS NOT NULL AND bk.role = 'train_loss'),
               tj AS (
                   SELECT m.*, arg_max(t.med, t.s0) FILTER (WHERE t.s0 <= m.best_step) AS train_at_best,
                          arg_max(t.med, t.s0) AS train_last, median(t.med) AS tlevel
                   FROM vmin m JOIN t ON t.run_id = m.run_id AND t.key = m.train_key
                   GROUP BY ALL)
               SELECT run_id, key, 'overfitting' AS detector, 'warning' AS severity,
                      best_step AS step_start, stop AS step_end, vlast AS value, vbest AS ref
               FROM tj
               WHERE nbk >= 6 AND best_from_end > 3
                 AND tail_min > vbest + greatest(3 * noise, 0.05 * abs(vbest))
                 AND train_last < train_at_best - 0.01 * abs(train_at_best)
                 AND (vlast - train_last) > (vbest - train_at_best)"""
        ))
    finally:
        st.con.unregister("_rl_pairs_v")


METRIC_DETECTORS = {
    "nonfinite": nonfinite,
    "loss_spike": loss_spike,
    "divergence": divergence,
    "plateau": plateau,
    "grad_spike": grad_spike,
    "grad_growth": grad_growth,
    "vanishing_gradients": vanishing_gradients,
    "lr_zero": lr_zero,
    "lr_jump": lr_jump,
    "throughput_drop": throughput_drop,
    "memory_growth": memory_growth,
}
"""Detectors needing only the series tables; ``overfitting`` also needs key pairs."""
