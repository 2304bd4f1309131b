"""Spikes and growth: a point far above its neighbours, or a level far above its past.

Why a module of its own: these detectors are where healthy runs raised false alarms (a
smooth loss's first step, log-normal gradient noise, a dead layer's zero gradients), so
their rules are spelled out here in one place:

* **A spike is a transient.** A point is judged against the median of the 5 points before
  it *and* the 5 points after it, and must exceed the larger of the two. Each side's
  level is carried along its own trend up to the point when it leads upwards there (the
  median of the next 5 points against that of the 5 after them, on a falling curve), so a
  trend is never a spike, even when the one or two points before it are few and noisy; the
  first point of a series (nothing before it) never is. A real early spike (4.36 -> 9.58
  at step 2) still is: its neighbours on both sides are near 4.3.
* **Noise is measured without the trend**: from second differences of the neighbouring
  points (median |x_i - (x_{i-1} + x_{i+1}) / 2| / 0.826, a robust sigma for white noise)
  over about 64 of them around the candidate bucket but not touching it, so the spike
  does not inflate its own yardstick (as many data buckets around the candidate as that
  takes, so a series logged every 10 steps is judged on as many points as a dense one), raised by one
  standard error (x (1 + 1/sqrt(n))) so that a short series' lucky low estimate does not
  make noise look like a spike; below 8 points, the bucket statistics' sigma. Bucket
  sigmas are only a loose screen: buckets of one or two points bias them either way. Steep early curves therefore do not inflate it, and
  buckets of one or two points do not deflate it.
* **Gradient norms are judged on a log scale** (their noise is multiplicative: a log-normal
  sigma of 0.35 is healthy): ``ln(x / level) > 6 sigma_log`` and ``x >= 3 level``. A level
  of 0 (a dead layer) is no reference: nothing is "N times" zero.
* **Growth is sustained**: the bucket median stays > 10x the lowest earlier rolling level,
  beyond 5 sigma_log, for 3+ consecutive data buckets.

Only buckets that the bucket screen flags are looked at point by point.
"""

from __future__ import annotations

import polars as pl

from runlake.analysis._detect_sql import islands, shape
from runlake.analysis.series import SeriesTables

__all__ = ["LOG_SPIKE_Z", "SPIKE_Z", "grad_growth", "grad_spike", "loss_spike"]

SPIKE_Z = 8.0
"""Robust sigmas above its neighbours for a loss point to be a spike."""
LOG_SPIKE_Z = 6.0
"""The same on a log scale (gradient norms): with sigma_log 0.35 that is an 8x jump."""
_NEIGHBOURS = 5
_CARRY = (_NEIGHBOURS + 1) / 2 / _NEIGHBOURS  # window centre to the point, in window spacings
_NOISE_POINTS = 64  # second differences wanted for the local noise
_MIN_NOISE_POINTS = 8  # fewer: the bucket sigma instead
_MAX_REACH = 50  # data buckets on each side of a candidate, at most


def _spikes(st: SeriesTables, roles: tuple[str, ...], detector: str, *, log: bool,
            rel_floor: float, crit_ratio: float) -> pl.DataFrame:
    role_list = ", ".join(f"'{r}'" for r in roles)
    z, k = (LOG_SPIKE_Z if log else SPIKE_Z), _NEIGHBOURS
    if log:
        screen = f"center > 0 AND vmax > {1 + rel_floor} * center"
        noise = "ln(value) - (ln(lag(value) OVER w) + ln(lead(value) OVER w)) / 2"
        test = (f"level > 0 AND value >= {1 + rel_floor} * level "
                f"AND ln(value / level) > {z} * sig")
        bucket_sig = "sigma / center"
    else:
        screen = f"vmax > center + {z / 2} * sigma AND vmax > center + {rel_floor} * abs(center)"
        noise = "value - (lag(value) OVER w + lead(value) OVER w) / 2"
        test = f"value > level + {z} * sig AND value > level + {rel_floor} * abs(level)"
        bucket_sig = "sigma"
    positive = "AND m.value > 0" if log else ""
    return shape(st.frame(
        f"""WITH bk AS (
                SELECT *, least({_MAX_REACH}, greatest(2, ceil({_NOISE_POINTS / 2 + 1}
                          / (sum(cnt) OVER p / count(*) OVER p))))::BIGINT AS reach,
                       count(*) OVER p AS nbk
                FROM {{buckets}} WHERE role IN ({role_list})
                WINDOW p AS (PARTITION BY run_id, rank, key)),
            cand AS (  -- the context window [b_lo, b_lo + 2 reach] slides inward at the ends
                SELECT run_id, rank, key, b, bi, s0, s1, reach, {bucket_sig} AS bsig,
                       greatest(1, least(bi - reach, nbk - 2 * reach)) AS b_lo FROM bk
                WHERE {screen}),
            ctx AS (
                SELECT c.run_id, c.rank, c.key, c.b AS cb, any_value(c.s0) AS c0,
                       any_value(c.s1) AS c1, any_value(c.bsig) AS bsig,
                       min(n.s0) AS lo, max(n.s1) AS hi
                FROM cand c JOIN bk n
                  ON n.run_id = c.run_id AND n.rank = c.rank AND n.key = c.key
                 AND n.bi BETWEEN c.b_lo AND c.b_lo + 2 * c.reach
                GROUP BY c.run_id, c.rank, c.key, c.b),
            pts AS (
                SELECT x.run_id, x.rank, x.key, x.cb, x.c0, x.c1, x.bsig, m.step, m.value
                FROM metrics m JOIN ctx x
                  ON m.run_id = x.run_id AND m.rank = x.rank AND m.key = x.key
                 AND m.step BETWEEN x.lo AND x.hi
                WHERE isfinite(m.value) {positive}),
            nb AS (
                SELECT *,
                       median(value) OVER (w ROWS BETWEEN {k} PRECEDING AND 1 PRECEDING) AS before,
                       median(value) OVER (w ROWS BETWEEN {2 * k} PRECEDING AND {k + 1} PRECEDING) AS before2,
                       median(value) OVER (w ROWS BETWEEN 1 FOLLOWING AND {k} FOLLOWING) AS after,
                       median(value) OVER (w ROWS BETWEEN {k + 1} FOLLOWING AND {2 * k} FOLLOWING) AS after2,
                       abs({noise}) AS d2, lag(step) OVER w AS prev_step, lead(step) OVER w AS next_step
                FROM pts WINDOW w AS (PARTITION BY run_id, rank, key, cb ORDER BY step, value)),
            nz AS (  -- noise sample: second differences not touching the candidate bucket
                SELECT *, CASE WHEN next_step < c0 OR prev_step > c1 THEN d2 END AS d2out FROM nb),
            lv AS (
                SELECT *,  -- each side's level, carried along its trend up to the point
                       greatest(CASE WHEN before2 < before THEN before + {_CARRY} * (before - before2)
                                     ELSE before END,
                                coalesce(CASE WHEN after2 < after THEN after + {_CARRY} * (after - after2)
                                              ELSE after END, before)) AS level,
                       CASE WHEN count(d2out) OVER p >= {_MIN_NOISE_POINTS}
                            THEN median(d2out) OVER p / 0.826 * (1 + 1 / sqrt(count(d2out) OVER p))
                            ELSE bsig END AS sig
                FROM nz WINDOW p AS (PARTITION BY run_id, rank, key, cb)),
            hit AS (
                SELECT run_id, rank, key, step, value, level FROM lv
                WHERE step BETWEEN c0 AND c1 AND before IS NOT NULL AND {test}),
            gap AS (SELECT run_id, rank, key,
                           greatest((l - f)::DOUBLE / greatest(n - 1, 1), 1.0) AS g FROM {{stats}}),
            isl AS ({islands("SELECT h.*, gap.g FROM hit h JOIN gap USING (run_id, rank, key)",
                             "step", "3 * g")})
            SELECT run_id, key, '{detector}' AS detector,
                   CASE WHEN max(value) >= {crit_ratio} * arg_max(level, value) AND arg_max(level, value) > 0
                        THEN 'critical' ELSE 'warning' END AS severity,
                   min(step) AS step_start, max(step) AS step_end,
                   max(value) AS value, arg_max(level, value) AS ref
            FROM isl GROUP BY run_id, rank, key, island"""
    ))


def loss_spike(st: SeriesTables) -> pl.DataFrame:
    """A loss point > 8 sigmas and 5% above both its preceding and following levels."""
    return _spikes(st, ("train_loss", "val_loss"), "loss_spike", log=False,
                   rel_floor=0.05, crit_ratio=3.0)


def grad_spike(st: SeriesTables) -> pl.DataFrame:
    """A gradient norm point >= 3x its neighbours' level and > 6 sigmas on a log scale."""
    return _spikes(st, ("grad_norm",), "grad_spike", log=True, rel_floor=2.0, crit_ratio=10.0)


def grad_growth(st: SeriesTables) -> pl.DataFrame:
    """Gradient norm bucket medians > 10x (and > 5 log-sigmas above) the lowest earlier
    rolling level, for 3+ consecutive data buckets. The first data bucket is no reference
    (initialisation transients)."""
    return shape(st.frame(
        f"""WITH g AS (
                SELECT *, min(center) OVER (PARTITION BY run_id, rank, key ORDER BY bi
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS ref,
                       median(sigma / center) OVER (PARTITION BY run_id, rank, key) AS lsig
                FROM {{buckets}} WHERE role = 'grad_norm' AND bi > 1 AND center > 0),
            f AS (SELECT * FROM g WHERE ref > 0 AND med > 10 * ref AND ln(med / ref) > 5 * lsig),
            isl AS ({islands("SELECT * FROM f", "bi", "1")})
            SELECT run_id, key, 'grad_growth' AS detector, 'critical' AS severity,
                   min(s0) AS step_start, max(s1) AS step_end, max(med) AS value,
                   min(ref) AS ref
            FROM isl GROUP BY run_id, rank, key, island HAVING count(*) >= 3"""
    ))
