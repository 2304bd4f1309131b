"""Comparing runs: summary tables, config differences, seed groups, hyperparameter impact.

Every function reads the store through an open connection and returns a polars DataFrame
(``best_config`` returns a dict). Metrics are summarised per run in SQL over the whole
store; the statistics that follow (t intervals, Spearman correlation) run on one row per
run. Curves (``align``, ``downsample``, ``ema``) live in ``curves``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import duckdb
import polars as pl

from runlake.analysis._common import (
    finite,
    flatten,
    frame,
    json_cell,
    lower_is_better,
    rows,
    run_ids_list,
    run_scope,
)
from runlake.analysis._stats import spearman, t_ppf, t_two_sided_p
from runlake.schemas.errors import ConfigError, RunNotFoundError

__all__ = [
    "best_config",
    "config_diff",
    "hparam_impact",
    "metric_table",
    "run_configs",
    "seed_groups",
]


def metric_table(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None,
    keys: Sequence[str] | None = None,
    *,
    k: int = 10,
    modes: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Final, best and last-k mean of each key for each run.

    Args:
        con: an open store connection.
        run_ids: the runs (None: all).
        keys: metric keys (None: every key except ``sys/*``).
        k: how many last points the ``last_k_mean`` averages.
        modes: per key "min" or "max" for ``best``; default min for loss-like keys
            (loss, error, perplexity...) and max otherwise.

    Returns:
        run_id, key, points, first_step, last_step, final, best, best_step, last_k_mean,
        mode, nonfinite — one row per run and key, sorted by key then run.

    Raises:
        ConfigError: ``k`` < 1 or a mode is not "min"/"max".
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    ids = run_ids_list(run_ids)
    scope, params = run_scope(ids)
    if keys is None:
        key_pred, key_params = "key NOT LIKE 'sys/%'", []
    else:
        key_pred, key_params = "key IN (SELECT unnest(?::VARCHAR[]))", [list(keys)]
    df = frame(
        con,
        f"""SELECT run_id, key, count(*) AS points, min(step) AS first_step,
                   max(step) AS last_step, arg_max(value, step) AS final,
                   min(value) FILTER (WHERE isfinite(value)) AS vmin,
                   max(value) FILTER (WHERE isfinite(value)) AS vmax,
                   arg_min(step, value) FILTER (WHERE isfinite(value)) AS smin,
                   arg_max(step, value) FILTER (WHERE isfinite(value)) AS smax,
                   list_avg(arg_max(value, step, ?)) AS last_k_mean,
                   count(*) FILTER (WHERE NOT isfinite(value)) AS nonfinite
            FROM metrics WHERE {scope} AND {key_pred} AND step IS NOT NULL
            GROUP BY run_id, key ORDER BY key, run_id""",
        [k, *params, *key_params],
    )
    modes = dict(modes or {})
    low = {key: lower_is_better(key, modes.get(key)) for key in df["key"].unique().to_list()}
    lows = pl.Series("low", [low[key] for key in df["key"].to_list()], dtype=pl.Boolean)
    df = df.with_columns(lows)
    return df.select(
        "run_id", "key", "points", "first_step", "last_step", "final",
        pl.when(pl.col("low")).then(pl.col("vmin")).otherwise(pl.col("vmax")).alias("best"),
        pl.when(pl.col("low")).then(pl.col("smin")).otherwise(pl.col("smax")).alias("best_step"),
        "last_k_mean",
        pl.when(pl.col("low")).then(pl.lit("min")).otherwise(pl.lit("max")).alias("mode"),
        "nonfinite",
    )


def run_configs(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None) -> dict[str, dict]:
    """Flattened config of each run, in the order given (``group_name`` appears as ``group``).

    Raises:
        RunNotFoundError: a run id is not in the store.
    """
    ids = run_ids_list(run_ids)
    scope, params = run_scope(ids)
    listed = rows(
        con,
        f"SELECT run_id, config, group_name FROM runs WHERE {scope} ORDER BY started_at, run_id",
        params,
    )
    found = {r: (c, g) for r, c, g in listed}
    if ids is not None:
        missing = [r for r in ids if r not in found]
        if missing:
            raise RunNotFoundError(
                f"no run with id {', '.join(missing)} in the store; list runs with `runlake runs`"
            )
    order = ids if ids is not None else [r for r, _, _ in listed]
    out = {}
    for rid in order:
        config, group = found[rid]
        flat = flatten(json.loads(config) if isinstance(config, str) else (config or {}))
        if group is not None:
            flat.setdefault("group", group)
        out[rid] = flat
    return out


def config_diff(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> pl.DataFrame:
    """The config keys whose values differ between runs (nested keys flattened with dots).

    Returns:
        ``key`` plus one column per run id holding the value as text (JSON for non-strings;
        null where the run has no such key), sorted by key.

    Raises:
        RunNotFoundError: a run id is not in the store.
    """
    configs = run_configs(con, run_ids)
    keys = sorted({k for c in configs.values() for k in c})
    rows = []
    for key in keys:
        cells = [json_cell(c.get(key)) if key in c else None for c in configs.values()]
        present = [key in c for c in configs.values()]
        if len(set(cells)) > 1 or (not all(present) and any(present)):
            rows.append([key, *cells])
    schema = {"key": pl.Utf8, **{rid: pl.Utf8 for rid in configs}}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _per_run_metric(
    con, ids: Sequence[str] | None, metric: str, k: int, mode: str | None, summary: str
) -> dict[str, float]:
    """One number per run for ``metric``: "best" or "last_k" (mean of the last k points)."""
    table = metric_table(con, ids, [metric], k=k, modes={metric: mode} if mode else None)
    col = "best" if summary == "best" else "last_k_mean"
    return {r: v for r, v in zip(table["run_id"].to_list(), table[col].to_list()) if finite(v)}


def _t_summary(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    half = t_ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci_low": mean - half if half is not None else None,
        "ci_high": mean + half if half is not None else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def seed_groups(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None,
    metric: str,
    *,
    seed_key: str = "seed",
    k: int = 10,
    by: str | None = None,
) -> pl.DataFrame:
    """Aggregate runs that differ only by their seed: n, mean, std and a 95% t interval.

    The per-run value is the mean of the metric's last ``k`` points. Runs whose config is
    identical except ``seed_key`` form a group; with ``by`` the groups are the values of that
    one config key instead (``by="group"`` uses the run group given to ``runlake.init``).

    Returns:
        group (a label), config (JSON of the shared differing keys), run_ids (list), n, mean,
        std (sample, ddof=1), ci_low, ci_high, min, max — sorted by mean.

    Raises:
        RunNotFoundError: a run id is not in the store.
    """
    configs = run_configs(con, run_ids)
    values = _per_run_metric(con, list(configs), metric, k, None, "last_k")
    groups: dict[str, list[str]] = {}
    labels: dict[str, dict] = {}
    varying = {
        key for key in {kk for c in configs.values() for kk in c}
        if len({json_cell(c.get(key)) for c in configs.values()}) > 1 and key != seed_key
    }
    for rid, cfg in configs.items():
        if by is not None:
            label_cfg = {by: cfg.get(by)}
        else:
            label_cfg = {key: cfg.get(key) for key in sorted(varying)}
        sig = json.dumps(label_cfg, sort_keys=True, default=str)
        groups.setdefault(sig, []).append(rid)
        labels[sig] = label_cfg
    rows = []
    for sig, members in groups.items():
        vals = [values[r] for r in members if r in values]
        label = ", ".join(f"{kk}={json_cell(v)}" for kk, v in labels[sig].items()) or "all runs"
        rows.append({"group": label, "config": sig, "run_ids": members, **_t_summary(vals)})
    schema = {
        "group": pl.Utf8, "config": pl.Utf8, "run_ids": pl.List(pl.Utf8), "n": pl.Int64,
        "mean": pl.Float64, "std": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        "min": pl.Float64, "max": pl.Float64,
    }
    df = pl.DataFrame(rows, schema=schema)
    return df.sort("mean", nulls_last=True, descending=not lower_is_better(metric))


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if finite(value) else None


def hparam_impact(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None,
    metric: str,
    *,
    mode: str | None = None,
    ignore: Sequence[str] = ("seed",),
) -> pl.DataFrame:
    """Spearman rank correlation between each numeric hyperparameter and the run's best metric.

    Args:
        con: an open store connection.
        run_ids: the runs (None: all).
        metric: the metric key; each run contributes its best value.
        mode: "min"/"max"; default min for loss-like keys.
        ignore: config keys left out (the seed is noise, not a hyperparameter).

    Returns:
        param, n, distinct, spearman, p_value, effect ("higher is better"/"lower is better"
        for the metric), importance (|rho| normalised to sum 1), rank — sorted by importance.
    """
    configs = run_configs(con, run_ids)
    values = _per_run_metric(con, list(configs), metric, 10, mode, "best")
    low = lower_is_better(metric, mode)
    rows = []
    params = sorted({kk for c in configs.values() for kk in c} - set(ignore))
    for param in params:
        pairs = [
            (_numeric(configs[r].get(param)), values[r]) for r in configs if r in values
        ]
        pairs = [(x, y) for x, y in pairs if x is not None]
        if len(pairs) < 3 or len({x for x, _ in pairs}) < 2:
            continue
        rho = spearman([x for x, _ in pairs], [y for _, y in pairs])
        if rho is None:
            continue
        n = len(pairs)
        if abs(rho) < 1 and n > 2:
            t = rho * math.sqrt((n - 2) / (1 - rho * rho))
            p = t_two_sided_p(t, n - 2)
        else:
            p = 0.0
        better_when_higher = (rho < 0) if low else (rho > 0)
        rows.append({
            "param": param, "n": n, "distinct": len({x for x, _ in pairs}), "spearman": rho,
            "p_value": p,
            "effect": "higher is better" if better_when_higher else "lower is better",
        })
    total = sum(abs(r["spearman"]) for r in rows) or 1.0
    for r in rows:
        r["importance"] = abs(r["spearman"]) / total
    rows.sort(key=lambda r: -r["importance"])
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    schema = {
        "param": pl.Utf8, "n": pl.Int64, "distinct": pl.Int64, "spearman": pl.Float64,
        "p_value": pl.Float64, "effect": pl.Utf8, "importance": pl.Float64, "rank": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def best_config(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None,
    metric: str,
    *,
    mode: str | None = None,
) -> dict[str, Any]:
    """The run with the best value of ``metric`` and its config.

    Returns:
        {"run_id", "name", "metric", "mode", "value", "step", "config"} (config nested, as
        logged); an empty dict when no run has a finite value of the metric.
    """
    ids = run_ids_list(run_ids)
    table = metric_table(con, ids, [metric], modes={metric: mode} if mode else None)
    table = table.filter(pl.col("best").is_not_null() & pl.col("best").is_finite())
    if table.is_empty():
        return {}
    low = lower_is_better(metric, mode)
    row = table.sort("best", descending=not low).row(0, named=True)
    found = rows(con, "SELECT name, config FROM runs WHERE run_id = ?", [row["run_id"]])
    name, config = found[0] if found else (None, None)
    return {
        "run_id": row["run_id"],
        "name": name,
        "metric": metric,
        "mode": "min" if low else "max",
        "value": row["best"],
        "step": row["best_step"],
        "config": json.loads(config) if isinstance(config, str) else (config or {}),
    }
