"""The Runs table as data: columns, progress, config differences, filters, sort, groups.

Kept apart from ``view_runs`` (the layout) so the rules are plain functions over polars
frames, testable without Streamlit, and shared with the Hyperparameters view.

Column names are also what the URL names (``?sort=``, ``?filter=``, ``?group=``,
``?cols=``): a built-in column (``run``, ``status``, ``step``, ``progress``, ...), a config
value ``cfg:<key>`` (nested keys dotted, ``cfg:model.width``) or a metric summary
``<key>:last`` / ``:min`` / ``:max`` (the store's ``metric_summary``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence

import polars as pl

from runlake.analysis._common import json_cell
from runlake.dashboard.selection import SUMMARY_NAMES

__all__ = [
    "BUILTIN",
    "CONFIG",
    "apply_filters",
    "config_frame",
    "differing_keys",
    "groups",
    "metric_spec",
    "progress",
    "sort_frame",
    "table_frame",
]

CONFIG = "cfg:"
BUILTIN = ("run", "project", "group", "status", "tags", "step", "progress", "ETA",
           "attempts", "started", "duration_s", "run_id")
"""The table's own columns, in display order (config and metric columns go before the
last two)."""


def metric_spec(name: str) -> tuple[str, str] | None:
    """``"train/loss:min"`` → ``("train/loss", "min")``; None for other column names."""
    key, sep, summary = name.rpartition(":")
    if sep and key and summary in SUMMARY_NAMES and not name.startswith(CONFIG):
        return key, summary
    return None


def progress() -> pl.Expr:
    """Progress (0..1) for every status: a finished run is complete; any other run is the
    steps it reached of those planned, when the plan is known (else null: the ``step``
    column shows how far it got)."""
    reached = (pl.col("last_step") + 1) / pl.col("total_steps")
    planned = pl.col("total_steps").is_not_null() & (pl.col("total_steps") > 0) \
        & pl.col("last_step").is_not_null()
    return (pl.when(pl.col("status") == "finished").then(pl.lit(1.0))
            .when(planned).then(pl.min_horizontal(reached, pl.lit(1.0)))
            .otherwise(None).cast(pl.Float64).alias("progress"))


def differing_keys(configs: pl.DataFrame, run_ids: Sequence[str]) -> list[str]:
    """Config keys whose value differs between these runs (or that only some have), sorted:
    the columns worth showing by default.

    Args:
        configs: a :func:`config_frame` (``run_id`` plus ``cfg:<key>`` columns).
    """
    rows = configs.filter(pl.col("run_id").is_in(list(run_ids))) if len(run_ids) < configs.height \
        else configs
    if rows.height == 0:
        return []
    counts = rows.select(pl.exclude("run_id").n_unique()).row(0, named=True)
    return sorted(c[len(CONFIG):] for c, n in counts.items() if n > 1)


def _column(name: str, values: list[Any]) -> pl.Series:
    """A config column: numbers and booleans stay typed, anything mixed becomes text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} and kinds:
        return pl.Series(name, [None if v is None else float(v) for v in values]
                         if float in kinds else values, strict=False)
    if kinds == {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    return pl.Series(name, [v if v is None or isinstance(v, str) else json_cell(v)
                            for v in values], dtype=pl.String)


def config_frame(configs: Mapping[str, Mapping[str, Any]], run_ids: Sequence[str],
                 keys: Sequence[str]) -> pl.DataFrame:
    """``run_id`` plus a ``cfg:<key>`` column per key, one row per run."""
    cols = [pl.Series("run_id", list(run_ids), dtype=pl.String)]
    for key in keys:
        cols.append(_column(CONFIG + key, [configs.get(r, {}).get(key) for r in run_ids]))
    return pl.DataFrame(cols)


def table_frame(runs: pl.DataFrame, configs: pl.DataFrame, config_keys: Sequence[str],
                summaries: pl.DataFrame | None, metric_cols: Sequence[str], now: datetime,
                status_text) -> pl.DataFrame:
    """The displayed table, one row per run of ``runs`` (``data.run_rows``), in its order.

    Args:
        configs: a :func:`config_frame` of (at least) these runs and keys.
        summaries: ``data.metric_summaries`` rows (run_id, key, last, min, max) for the keys
            that ``metric_cols`` (``<key>:<summary>`` names) need.
        status_text: ``(status, age_s, heartbeat_s) -> str`` (the view's wording).
    """
    # only running runs have a heartbeat age to word: the rest say their status as it is
    running = runs.with_row_index("__i").filter(pl.col("status") == "running")
    statuses = runs["status"].to_list()
    from runlake.dashboard.widgets import human_duration

    eta = [""] * runs.height
    for i, seen, hb, left in running.select("__i", "last_seen_at", "heartbeat_s", "eta_s").rows():
        statuses[i] = status_text("running", None if seen is None else (now - seen).total_seconds(), hb)
        eta[i] = human_duration(left)
    frame = runs.select(
        pl.coalesce(pl.col("name"), pl.col("run_id")).alias("run"), "project",
        pl.col("group_name").alias("group"),
        pl.Series("status", statuses, dtype=pl.String),
        pl.col("tags").list.join(", ").fill_null("").alias("tags"),
        pl.col("last_step").alias("step"), progress(), pl.Series("ETA", eta, dtype=pl.String),
        "attempts", pl.col("started_at").alias("started"), "duration_s", "run_id")
    if config_keys:
        wanted = [CONFIG + k for k in config_keys if CONFIG + k in configs.columns]
        frame = frame.join(configs.select("run_id", *wanted), on="run_id", how="left",
                           maintain_order="left")
    for name in metric_cols:
        spec = metric_spec(name)
        if spec is None or summaries is None:
            continue
        key, summary = spec
        part = summaries.filter(pl.col("key") == key).select(
            "run_id", pl.col(summary).alias(name))
        frame = frame.join(part, on="run_id", how="left", maintain_order="left")
    return frame


def _literal(series: pl.Series, text: str) -> Any:
    if series.dtype.is_numeric():
        return float(text)  # ValueError for text that is no number
    if series.dtype == pl.Boolean:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    return text


def apply_filters(frame: pl.DataFrame, filters: Sequence[tuple[str, str, str]]
                  ) -> tuple[pl.DataFrame, list[str]]:
    """Keep rows matching every ``(column, op, value)``; returns the rows and a notice per
    filter that names no column or compares a number with text."""
    notices = []
    for column, op, text in filters:
        if column not in frame.columns:
            notices.append(f"?filter= names no column {column!r}; ignored.")
            continue
        col = pl.col(column)
        if op == "~":
            frame = frame.filter(col.cast(pl.String).str.to_lowercase()
                                 .str.contains(text.lower(), literal=True).fill_null(False))
            continue
        try:
            value = _literal(frame[column], text)
        except ValueError:
            notices.append(f"?filter= {column}{op}{text!r}: {column} holds numbers; ignored.")
            continue
        cond = {"=": col == value, "!=": col != value, "<": col < value, "<=": col <= value,
                ">": col > value, ">=": col >= value}[op]
        frame = frame.filter(cond.fill_null(False))
    return frame, notices


def sort_frame(frame: pl.DataFrame, column: str | None, descending: bool
               ) -> tuple[pl.DataFrame, str | None]:
    """Sorted by ``column`` (nulls last); ``(frame, notice)`` with a notice when the column
    does not exist (the frame is then returned as it came)."""
    if column is None:
        return frame, None
    if column not in frame.columns:
        return frame, f"?sort= names no column {column!r}; sorted by start time."
    return frame.sort(column, descending=descending, nulls_last=True, maintain_order=True), None


def groups(frame: pl.DataFrame, column: str) -> list[tuple[str, pl.DataFrame]]:
    """``(label, rows)`` per value of ``column``, in the frame's order of first appearance;
    missing values form the group ``(none)``."""
    labels = frame[column].cast(pl.String).fill_null("(none)")
    keyed = frame.with_columns(labels.alias("__group"))
    return [(str(label), part.drop("__group"))
            for (label,), part in keyed.group_by(["__group"], maintain_order=True)]
