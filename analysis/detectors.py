"""Metric detectors: set-based SQL over the bucket statistics of ``series.SeriesTables``.

Each detector returns raw findings (``_detect_sql.RAW_COLUMNS``), one row per contiguous
flagged range: ``run_id, key, detector, severity, step_start, step_end, value, ref, note``
where ``value`` is the most extreme observed value, ``ref`` the reference it was judged
against (local level, running best, baseline...) and ``note`` an optional extra sentence.
``anomalies`` turns them into worded findings. Spikes and gradient growth, the detectors
most prone to false alarms, live in ``spikes``.

Thresholds are multiples of each series' own robust noise scale (``sigma``) combined
with a relative floor, so a smooth loss and a noisy one are judged on their own terms.
Consecutive flagged buckets (or points) merge into one finding ("gaps and islands").
"""

from __future__ import annotations

import polars as pl

from runlake.analysis._detect_sql import RAW_COLUMNS, islands as _islands, shape as _shape
from runlake.analysis.series import SeriesTables
from runlake.analysis.spikes import SPIKE_Z, grad_growth, grad_spike, loss_spike

__all__ = ["METRIC_DETECTORS", "RAW_COLUMNS", "SPIKE_Z"]

OVERFLOW_NOTE = ("An fp16 overflow: the run's loss scale dropped here (or was still being "
                 "calibrated), so the loss scaler skipped this step; expected now and then "
                 "with mixed precision.")


def nonfinite(st: SeriesTables) -> pl.DataFrame:
    """NaN or ±Inf values, any key; consecutive ones (no finite point between) merge.

    A non-finite gradient norm at a step where the run's loss scale dropped (the scale
    after it, at the same or the next logged step, is below the one before, and still >= 1)
    is an fp16 overflow the loss scaler skipped: info, not critical. So is one at or before
    the first logged loss scale (the scaler calibrates its scale on the first steps) or at
    its last one (a scale logged before ``update()`` shows the drop one point later).
    """
    scope_sql = "TRUE" if st.run_ids is None else "m.run_id IN (SELECT unnest(?::VARCHAR[]))"
    params = [] if st.run_ids is None else [list(st.run_ids)]
    note = OVERFLOW_NOTE.replace("'", "''")
    return _shape(st.frame(
        f"""WITH f AS (
                SELECT m.run_id, m.rank, m.key, m.step, m.value, r.role,
                       greatest((s.l - s.f)::DOUBLE / greatest(s.n - 1, 1), 1.0) AS gap
                FROM metrics m
                JOIN {{stats}} s ON m.run_id = s.run_id AND m.rank = s.rank AND m.key = s.key
                LEFT JOIN {{roles}} r ON r.key = m.key
                WHERE {scope_sql} AND NOT isfinite(m.value) AND m.step IS NOT NULL),
            ls AS (
                SELECT m.run_id, m.step, min(m.value) AS value FROM metrics m
                JOIN {{series}} s ON m.run_id = s.run_id AND m.rank = s.rank AND m.key = s.key
                WHERE s.role = 'loss_scale' AND isfinite(m.value) AND m.step IS NOT NULL
                GROUP BY ALL),
            g AS (SELECT DISTINCT run_id, step FROM f WHERE role = 'grad_norm'),
            pv AS (SELECT g.run_id, g.step, ls.value AS before FROM g
                   ASOF JOIN ls ON g.run_id = ls.run_id AND g.step > ls.step),
            nx AS (SELECT g.run_id, g.step, ls.value AS after FROM g
                   ASOF JOIN ls ON g.run_id = ls.run_id AND g.step < ls.step),
            ov AS (
                SELECT pv.run_id, pv.step FROM pv
                LEFT JOIN nx USING (run_id, step) LEFT JOIN ls USING (run_id, step)
                WHERE (least(coalesce(ls.value, 'inf'), coalesce(nx.after, 'inf')) < pv.before
                       OR (nx.after IS NULL AND ls.value IS NOT NULL))  -- its last scale: no later one shows the drop
                  AND least(coalesce(ls.value, 'inf'), coalesce(nx.after, 'inf')) >= 1
                UNION  -- before the first logged scale: the scaler is still calibrating
                SELECT g.run_id, g.step FROM g JOIN ls USING (run_id)
                GROUP BY g.run_id, g.step HAVING g.step <= min(ls.step)),
            fo AS (SELECT f.*, ov.step IS NOT NULL AND f.role = 'grad_norm' AS overflow
                   FROM f LEFT JOIN ov USING (run_id, step)),
            i AS (SELECT *, sum(CASE WHEN step - prev > 1.5 * gap OR prev IS NULL THEN 1 ELSE 0 END)
                            OVER (PARTITION BY run_id, rank, key ORDER BY step) AS island
                  FROM (SELECT *, lag(step) OVER (PARTITION BY run_id, rank, key ORDER BY step) AS prev
                        FROM fo))
            SELECT run_id, key, 'nonfinite' AS detector,
                   CASE WHEN bool_and(overflow) THEN 'info'
                        WHEN any_value(role) IN ('train_loss', 'val_loss', 'grad_norm') THEN 'critical'
                        ELSE 'warning' END AS severity,
                   min(step) AS step_start, max(step) AS step_end,
                   arg_min(value, step) AS value, count(*)::DOUBLE AS ref,
                   CASE WHEN bool_and(overflow) THEN '{note}' END AS note
            FROM i GROUP BY run_id, rank, key, island""",
        params,
    ))


def divergence(st: SeriesTables) -> pl.DataFrame:
    """Training loss rising well above its running best for 3+ buckets (or into NaN).

    The running best is the lowest earlier *rolling* level (median of 5 bucket medians),
    and both the bucket median and its rolling level must exceed it by max(3 sigmas of a
    bucket median, 10%): the minimum of many single noisy buckets is no reference."""
    return _shape(st.frame(
        f"""WITH c AS (
                SELECT *, min(center) OVER (PARTITION BY run_id, rank, key ORDER BY bi
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS ref
                FROM {{buckets}} WHERE role = 'train_loss'),
            f AS (
                SELECT run_id, rank, key, b, bi, s0, s1, nb,
                       coalesce(med, 'inf'::DOUBLE) AS med, ref AS prior_min
                FROM c
                WHERE ref IS NOT NULL
                  AND (nfin = 0 OR (med - ref > greatest(3 * sigma_med, 0.1 * abs(ref))
                                    AND center - ref > greatest(3 * sigma_med, 0.1 * abs(ref))))),
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
    """Training loss not improving beyond noise over the last quarter (info) or the last
    half (warning) of the series, or never improved at all (warning).

    A window is stalled when the median of its first half's bucket medians minus that of
    its second half is below twice the noise of that difference (2 x 1.25 sigma_med
    sqrt(2/m) for m buckets a half) or 0.1% of the level: levels, not minima of noisy
    buckets, are compared. A window rising beyond that noise (and 5%) is left to the
    divergence detector. A constant series is no plateau (a setting or a placeholder,
    not a trajectory)."""
    return _shape(st.frame(
        """WITH b AS (
               SELECT run_id, rank, key, bi, s0, s1, med, sigma_med, vmin, vmax,
                      count(*) OVER (PARTITION BY run_id, rank, key) AS nbk
               FROM {buckets} WHERE role = 'train_loss' AND med IS NOT NULL),
           w AS (
               SELECT b.*, f.frac FROM b CROSS JOIN (VALUES (0.25), (0.5)) f(frac)
               WHERE nbk >= 8 AND bi > nbk - greatest(4, floor(nbk * f.frac))),
           h AS (
               SELECT *, row_number() OVER (PARTITION BY run_id, rank, key, frac ORDER BY bi) AS j,
                         count(*) OVER (PARTITION BY run_id, rank, key, frac) AS m
               FROM w),
           agg AS (
               SELECT run_id, rank, key, frac, min(s0) AS start, max(s1) AS stop, any_value(m) AS m,
                      median(med) FILTER (WHERE j <= m // 2) AS first_half,
                      median(med) FILTER (WHERE j > m - m // 2) AS second_half,
                      median(sigma_med) AS noise
               FROM h GROUP BY run_id, rank, key, frac),
           s AS (
               SELECT run_id, rank, key, arg_min(med, bi) AS initial, min(med) AS best,
                      max(vmax) AS hi, min(vmin) AS lo
               FROM b GROUP BY run_id, rank, key),
           flag AS (
               SELECT agg.*, s.initial, s.best FROM agg JOIN s USING (run_id, rank, key)
               WHERE first_half - second_half
                     < greatest(2 * 1.25 * noise * sqrt(2.0 / greatest(m // 2, 1)), 1e-3 * abs(first_half))
                 -- rising well beyond noise is divergence, not a plateau
                 AND second_half - first_half
                     < greatest(2 * 1.25 * noise * sqrt(2.0 / greatest(m // 2, 1)), 0.05 * abs(first_half))
                 AND s.hi - s.lo > 1e-9 * greatest(abs(s.hi), abs(s.lo)))
           SELECT run_id, key, 'plateau' AS detector,
                  CASE WHEN max(frac) >= 0.5 OR any_value(initial) - any_value(best)
                                                < 0.02 * abs(any_value(initial))
                       THEN 'warning' ELSE 'info' END AS severity,
                  arg_max(start, frac) AS step_start, max(stop) AS step_end,
                  arg_max(second_half, frac) AS value, arg_max(first_half, frac) AS ref
           FROM flag GROUP BY run_id, rank, key"""
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
                SELECT b.run_id, b.rank, b.key, b.bi, b.s0, b.s1, s.f, s.l
                FROM {{buckets}} b JOIN {{series}} s USING (run_id, rank, key)
                WHERE b.role = 'lr' AND b.nonpos > 0),
            pts AS (
                SELECT m.run_id, m.rank, m.key, m.step, m.value, c.bi
                FROM metrics m JOIN cand c
                  ON m.run_id = c.run_id AND m.rank = c.rank AND m.key = c.key
                 AND m.step BETWEEN c.s0 AND c.s1
                WHERE m.value <= 0 AND m.step > c.f AND m.step < c.l - 0.02 * (c.l - c.f)),
            isl AS ({_islands("SELECT * FROM pts")})
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
               SELECT *, lag(v1) OVER w AS prev_last,
                         coalesce(lag(b, 2) OVER w, lag(b) OVER w) AS prev_b  -- 3+ points, also when sparse
               FROM {buckets} WHERE role = 'lr' WINDOW w AS (PARTITION BY run_id, rank, key ORDER BY b)),
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
    paired training loss keeps falling (``pairs``: run_id, val_key, train_key). The noise
    comes from second differences of the validation medians, so the steep early fall of a
    sparse validation curve does not count as noise."""
    if pairs.is_empty():
        return _shape(pl.DataFrame())
    st.con.register("_rl_pairs_v", pairs)
    try:
        return _shape(st.frame(
            """WITH v AS (
                   SELECT bk.*, p.train_key,
                          row_number() OVER (PARTITION BY bk.run_id, bk.key ORDER BY bk.b DESC) AS from_end,
                          abs(bk.med - 2 * lag(bk.med) OVER w + lag(bk.med, 2) OVER w) AS d2,
                          count(*) OVER (PARTITION BY bk.run_id, bk.key) AS nbk
                   FROM {buckets} bk JOIN _rl_pairs_v p ON bk.run_id = p.run_id AND bk.key = p.val_key
                   WHERE bk.med IS NOT NULL
                   WINDOW w AS (PARTITION BY bk.run_id, bk.key ORDER BY bk.b)),
               vmin AS (
                   SELECT run_id, key, any_value(train_key) AS train_key, min(med) AS vbest,
                          arg_min(s1, med) AS best_step, arg_min(from_end, med) AS best_from_end,
                          max(s1) AS stop,
                          min(med) FILTER (WHERE from_end <= 3) AS tail_min,
                          arg_min(med, -from_end) AS vlast,
                          coalesce(median(d2) / 1.652, 0) AS noise,  -- trend-free robust sigma
                          any_value(nbk) AS nbk
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
               WHERE nbk >= 5 AND best_from_end > 3
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
