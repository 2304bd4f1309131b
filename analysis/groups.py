"""Grouped curves: one mean line with min/max and std bands per group of runs.

W&B users group seeds and sweep points by a config key (or the run group) and read one
line per group instead of a spaghetti of runs. The grouping and the statistics are one
SQL query over the same points ``curves.downsample`` buckets (lowest rank of each run,
x = step, seconds since the run's first point, or fractional epoch), so 1,000 runs cost
one scan and never reach Python point by point.

How a group's curve is built (the rule the tests recompute with numpy):

1. Each group's x range ``[x0, x1]`` (over its runs' finite points) is cut into
   ``points`` equal buckets; bucket ``b = min(floor((x - x0) * points / (x1 - x0)), points - 1)``.
2. Per run and bucket: the mean, min and max of its finite values.
3. Per group and bucket: ``mean`` = mean over runs of the run means, ``std`` = their
   population standard deviation, ``min``/``max`` = the extreme values of any run in the
   bucket (so a spike of one seed stays in the band, as min/max buckets keep it on a
   single curve), ``runs`` = runs with a point in the bucket, ``x`` = mean x of the
   bucket's points.

Non-finite values (NaN, ±inf) are left out of the statistics; a run's curve in the Charts
view still shows them.
"""

from __future__ import annotations

from typing import Sequence

import duckdb
import polars as pl

from runlake.analysis._common import frame, json_cell, run_scope
from runlake.analysis.compare import run_configs
from runlake.analysis.curves import _key_params, _points_sql
from runlake.schemas.errors import ConfigError

__all__ = ["GROUP_KEY", "MISSING", "group_curves", "group_curves_keys", "group_options",
           "run_groups"]

GROUP_KEY = "group"
"""The grouping name for the run group given to ``runlake.init(group=)`` (the runs table's
``group_name``; ``run_configs`` reports it under this name)."""

MISSING = "(none)"
"""The label of runs without a value for the grouping key."""

_SCHEMA = {"group": pl.String, "x": pl.Float64, "mean": pl.Float64, "min": pl.Float64,
           "max": pl.Float64, "std": pl.Float64, "runs": pl.Int64}


def group_options(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[str]:
    """What these runs can be grouped by: ``group`` (when any has a run group) and every
    flattened config key any of them has, sorted (``group`` first)."""
    keys = {k for cfg in run_configs(con, list(run_ids)).values() for k in cfg}
    return sorted(keys, key=lambda k: (k != GROUP_KEY, k))


def run_groups(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], by: str) -> dict[str, str]:
    """run id → group label: the run's value of config key ``by`` as text (``group``: its
    run group), :data:`MISSING` where it has none.

    Raises:
        ConfigError: no run has the key ``by``.
        RunNotFoundError: a run id is not in the store.
    """
    configs = run_configs(con, list(run_ids))
    if configs and not any(by in cfg for cfg in configs.values()):
        raise ConfigError(f"no selected run has the config key {by!r} to group by")
    out = {}
    for rid, cfg in configs.items():
        value = json_cell(cfg.get(by))
        out[rid] = MISSING if value is None else value
    return out


def group_curves(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    key: str,
    *,
    by: str,
    points: int = 500,
    x: str = "step",
) -> pl.DataFrame:
    """Per group of ``run_ids`` (by config key ``by``), the bucketed statistics of ``key``.

    Args:
        con: an open store connection.
        run_ids: the runs to group.
        key: the metric key.
        by: a flattened config key (``lr``, ``model.width``) or ``group`` (the run group).
        points: buckets per group (at least 1).
        x: "step", "time" or "epoch".

    Returns:
        group, x, mean, min, max, std, runs: one row per group and non-empty bucket,
        sorted by group then x. Empty when no run logged ``key``.

    Raises:
        ConfigError: unknown ``x``, ``points`` < 1, or no run has the key ``by``.
        RunNotFoundError: a run id is not in the store.
    """
    return group_curves_keys(con, run_ids, [key], by=by, points=points, x=x).drop("key")


def group_curves_keys(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    keys: Sequence[str],
    *,
    by: str,
    points: int = 500,
    x: str = "step",
) -> pl.DataFrame:
    """:func:`group_curves` of several keys in one scan: key, group, x, mean, min, max,
    std, runs, sorted by key, group, x (each key exactly as ``group_curves`` alone)."""
    if points < 1:
        raise ConfigError(f"points must be at least 1, got {points}")
    keys = list(dict.fromkeys(keys))
    schema = {"key": pl.String, **_SCHEMA}
    groups = run_groups(con, run_ids, by)
    if not groups or not keys:
        return pl.DataFrame(schema=schema)
    scope, params = run_scope(list(groups), "m.run_id")
    head = _points_sql(x, len(keys)).format(scope=scope)
    sql = f"""{head},
      g AS (SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::VARCHAR[]) AS grp),
      gp AS (SELECT p.key, g.grp, p.run_id, p.x, p.value FROM pts p JOIN g ON p.run_id = g.run_id
             WHERE isfinite(p.value)),
      gs AS (SELECT key, grp, min(x) AS x0, max(x) AS x1 FROM gp GROUP BY key, grp),
      rb AS (SELECT gp.key, gp.grp, gp.run_id,
                    least(floor((gp.x - gs.x0) * ? / greatest(gs.x1 - gs.x0, 1e-300)), ? - 1)::BIGINT AS b,
                    avg(gp.value) AS v, min(gp.value) AS lo, max(gp.value) AS hi,
                    sum(gp.x) AS sx, count(*) AS n
             FROM gp JOIN gs ON gp.key = gs.key AND gp.grp = gs.grp
             GROUP BY gp.key, gp.grp, gp.run_id, b)
    SELECT key, grp AS "group", sum(sx) / sum(n) AS x, avg(v) AS mean, min(lo) AS min,
           max(hi) AS max, stddev_pop(v) AS std, count(*) AS runs
    FROM rb GROUP BY key, grp, b ORDER BY key, grp, x"""
    found = frame(con, sql, [*_key_params(x, keys, params), list(groups), list(groups.values()),
                             int(points), int(points)])
    if found.height == 0:
        return pl.DataFrame(schema=schema)
    return found.cast(schema)
