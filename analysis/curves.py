"""Metric curves for plots: aligned series, spike-preserving downsampling, EMA smoothing.

``downsample`` runs in one SQL query over the whole store: each run's x range is cut into
equal buckets and every bucket keeps its first, minimum, maximum and last point (plus its
first non-finite point), so spikes and NaNs survive any zoom level. It never samples at
random. ``method="lttb"`` (largest-triangle-three-buckets) picks one visually important
point per bucket instead; it is vectorised per bucket, not per point.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import duckdb
import polars as pl

from runlake.analysis._common import frame, run_ids_list, run_scope
from runlake.schemas.errors import ConfigError

__all__ = ["align", "downsample", "downsample_keys", "ema"]

_X_CHOICES = ("step", "time", "epoch")


def _points_sql(x: str, nkeys: int = 1) -> str:
    """SQL CTEs for ``nkeys`` keys (``?`` each) in ``{scope}``:
    ``raw(run_id, key, rank, step, xr, value)``, ``span(run_id, key, rk, off, n, x0, x1)``
    and ``pts(run_id, key, step, x, value)``.

    Only the lowest rank of each run is used (rank 0 normally logs the metrics); x is the
    step, seconds since the run's first point of the key, or the fractional epoch. Several
    keys are one scan (a workspace of 20 panels: one pass over the runs' rows, not 20).
    """
    if x not in _X_CHOICES:
        raise ConfigError(f"x must be one of {', '.join(_X_CHOICES)}; got {x!r}")
    if nkeys < 1:
        raise ConfigError("at least one metric key is needed")
    keys = "m.key = ?" if nkeys == 1 else f"m.key IN ({', '.join('?' * nkeys)})"
    if x == "step":
        xr, join = "m.step::DOUBLE", ""
    elif x == "time":
        xr, join = "epoch_us(m.ts) / 1e6", ""
    else:
        xr = "m.epoch + (m.step - e.s0)::DOUBLE / (e.s1 - e.s0 + 1)"
        join = f"""JOIN (SELECT run_id, key, rank, epoch, min(step) s0, max(step) s1
                        FROM metrics m
                        WHERE {keys} AND {{scope}} AND m.step IS NOT NULL AND m.epoch IS NOT NULL
                        GROUP BY run_id, key, rank, epoch) e
                  ON m.run_id = e.run_id AND m.key = e.key AND m.rank = e.rank
                     AND m.epoch = e.epoch"""
    offset = "min(xr)" if x == "time" else "0.0"
    return f"""WITH raw AS NOT MATERIALIZED (
        SELECT m.run_id, m.key, m.rank, m.step, {xr} AS xr, m.value FROM metrics m {join}
        WHERE {keys} AND {{scope}} AND m.step IS NOT NULL),
      span AS (SELECT run_id, key, min(rank) AS rk, {offset} AS off, count(*) AS n,
                      min(xr) AS x0, max(xr) AS x1 FROM raw GROUP BY run_id, key),
      pts AS NOT MATERIALIZED (
        SELECT r.run_id, r.key, r.step, r.xr - s.off AS x, r.value
        FROM raw r JOIN span s ON r.run_id = s.run_id AND r.key = s.key AND r.rank = s.rk)"""


def _key_params(x: str, key: str | Sequence[str], params: list) -> list:
    """Parameters for ``_points_sql``: the keys then the scope (twice for the epoch join)."""
    keys = [key] if isinstance(key, str) else list(key)
    return [*keys, *params, *keys, *params] if x == "epoch" else [*keys, *params]


def align(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    key: str,
    *,
    x: str = "step",
    wide: bool = False,
) -> pl.DataFrame:
    """Every point of ``key`` for the runs on a shared x axis.

    Args:
        con: an open store connection.
        run_ids: the runs.
        key: the metric key.
        x: "step", "time" (seconds since the run's first point) or "epoch" (fractional).
        wide: pivot to one column per run (x, <run_id>...) instead of long rows.

    Returns:
        Long: run_id, step, x, value sorted by run and x. Wide: x plus one column per run.

    Raises:
        ConfigError: unknown ``x``.
    """
    ids = run_ids_list(run_ids)
    scope, params = run_scope(ids, "m.run_id")
    sql = _points_sql(x).format(scope=scope)
    df = frame(con, f"{sql} SELECT run_id, step, x, value FROM pts ORDER BY run_id, x",
               _key_params(x, key, params))
    if not wide:
        return df
    if df.is_empty():
        return pl.DataFrame({"x": []}, schema={"x": pl.Float64})
    out = df.pivot(on="run_id", index="x", values="value", aggregate_function="mean").sort("x")
    return out


def downsample(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None,
    key: str,
    *,
    points: int = 1000,
    x: str = "step",
    method: str = "minmax",
) -> pl.DataFrame:
    """At most about ``points`` points per run of ``key``, keeping spikes.

    Args:
        con: an open store connection.
        run_ids: the runs (None: every run with the key).
        key: the metric key.
        points: target points per run (minmax keeps up to 4 per bucket, points/4 buckets).
        x: "step", "time" or "epoch".
        method: "minmax" (first/min/max/last per bucket) or "lttb".

    Returns:
        run_id, x, value sorted by run_id then x. Series shorter than ``points`` come back whole.

    Raises:
        ConfigError: unknown ``x`` or ``method``, or ``points`` < 4.
    """
    return downsample_keys(con, run_ids, [key], points=points, x=x,
                           method=method).drop("key")


def downsample_keys(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None,
    keys: Sequence[str],
    *,
    points: int = 1000,
    x: str = "step",
    method: str = "minmax",
) -> pl.DataFrame:
    """:func:`downsample` of several keys in one scan: run_id, key, x, value, sorted by
    run_id, key, x (each key's buckets exactly as ``downsample`` of that key alone)."""
    if method not in ("minmax", "lttb"):
        raise ConfigError(f"method must be 'minmax' or 'lttb', got {method!r}")
    if points < 4:
        raise ConfigError(f"points must be at least 4, got {points}")
    keys = list(dict.fromkeys(keys))
    ids = run_ids_list(run_ids)
    scope, params = run_scope(ids, "m.run_id")
    head = _points_sql(x, len(keys)).format(scope=scope)
    if method == "lttb":
        full = frame(con, f"{head} SELECT run_id, key, x, value FROM pts ORDER BY run_id, key, x",
                     _key_params(x, keys, params))
        return _lttb_frame(full, points)
    nb = max(1, points // 4)
    sql = f"""{head},
      agg AS (
        SELECT run_id, key, b,  -- CASE columns instead of FILTER: 4x faster in DuckDB
               min(x) AS x_first, arg_min(value, x) AS v_first,
               max(x) AS x_last, arg_max(value, x) AS v_last,
               arg_min(x, fv) AS x_min, min(fv) AS v_min,
               arg_max(x, fv) AS x_max, max(fv) AS v_max,
               min(nx) AS x_nf, arg_min(value, nx) AS v_nf
        FROM (SELECT r.run_id, r.key, r.xr - s.off AS x, r.value,
                     CASE WHEN isfinite(r.value) THEN r.value END AS fv,
                     CASE WHEN NOT isfinite(r.value) THEN r.xr - s.off END AS nx,
                     least(floor((r.xr - s.x0) * s.nbx / greatest(s.x1 - s.x0, 1e-300)),
                           s.nbx - 1)::BIGINT AS b
              FROM raw r JOIN (SELECT *, CASE WHEN n <= ? THEN n ELSE ? END AS nbx FROM span) s
                ON r.run_id = s.run_id AND r.key = s.key AND r.rank = s.rk)
        GROUP BY run_id, key, b),
      picked AS (
        SELECT run_id, key, unnest(list_distinct(list_filter(
                 [{{'x': x_first, 'v': v_first}}, {{'x': x_min, 'v': v_min}},
                  {{'x': x_max, 'v': v_max}}, {{'x': x_nf, 'v': v_nf}},
                  {{'x': x_last, 'v': v_last}}],
                 lambda p: p.x IS NOT NULL))) AS p
        FROM agg)
    SELECT run_id, key, p.x AS x, p.v AS value FROM picked ORDER BY run_id, key, x"""
    return frame(con, sql, [*_key_params(x, keys, params), points, nb])


def _lttb_frame(full: pl.DataFrame, points: int) -> pl.DataFrame:
    import numpy as np

    parts = []
    for (run_id, key), grp in full.group_by(["run_id", "key"], maintain_order=True):
        xs = grp["x"].to_numpy()
        ys = grp["value"].to_numpy()
        idx = _lttb_indices(xs, ys, points) if len(xs) > points else np.arange(len(xs))
        parts.append(pl.DataFrame({"run_id": [run_id] * len(idx), "key": [key] * len(idx),
                                   "x": xs[idx], "value": ys[idx]}))
    if not parts:
        return full.select("run_id", "key", "x", "value")
    return pl.concat(parts)


def _lttb_indices(xs, ys, points: int):
    """Largest-triangle-three-buckets; non-finite points are always kept."""
    import numpy as np

    n = len(xs)
    finite = np.isfinite(ys)
    yv = np.where(finite, ys, 0.0)
    edges = np.linspace(1, n - 1, points - 1).astype(int)
    chosen = [0]
    for i in range(len(edges) - 1):
        lo, hi = edges[i], max(edges[i] + 1, edges[i + 1])
        nlo, nhi = hi, max(hi + 1, edges[i + 2]) if i + 2 < len(edges) else n
        nxt_x, nxt_y = xs[nlo:nhi].mean() if nhi > nlo else xs[-1], yv[nlo:nhi].mean() if nhi > nlo else yv[-1]
        ax, ay = xs[chosen[-1]], yv[chosen[-1]]
        area = np.abs((ax - nxt_x) * (yv[lo:hi] - ay) - (ax - xs[lo:hi]) * (nxt_y - ay))
        chosen.append(lo + int(np.argmax(area)))
    chosen.append(n - 1)
    keep = np.union1d(np.array(chosen), np.flatnonzero(~finite))
    return keep


def ema(values: pl.Series | Iterable[float], alpha: float) -> pl.Series | list[float | None]:
    """Exponential moving average with bias correction (TensorBoard-style smoothing).

    ``alpha`` is the smoothing weight in [0, 1): 0 returns the values unchanged, 0.9 keeps
    90% of the running average per step. Bias correction divides by ``1 - alpha**t`` so the
    first points are not pulled towards 0. Non-finite values are skipped (null in the output).

    Args:
        values: a polars Series or any iterable of numbers.
        alpha: smoothing weight in [0, 1).

    Returns:
        A Series for a Series input, else a list.

    Raises:
        ConfigError: ``alpha`` outside [0, 1).
    """
    if not 0.0 <= alpha < 1.0:
        raise ConfigError(f"alpha must be in [0, 1), got {alpha}")
    is_series = isinstance(values, pl.Series)
    s = values if is_series else pl.Series("value", list(values), dtype=pl.Float64)
    s = s.cast(pl.Float64)
    clean = pl.select(
        pl.when(s.is_finite()).then(s).otherwise(None).alias(s.name or "value")
    ).to_series()
    out = clean if alpha == 0.0 else clean.ewm_mean(alpha=1.0 - alpha, adjust=True, ignore_nulls=True)
    return out if is_series else out.to_list()
