"""Runs view: every run with status, heartbeat age, config values, metrics and progress.

Filters (project, status, tag, text) narrow the table; the multiselect below it picks the
runs that the Charts, Compare, Lineage and Logs views show. The table itself refreshes
live (status, heartbeat age, progress, ETA, metric values).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from runlake.analysis.compare import metric_table, run_configs
from runlake.dashboard import data, selection, widgets

__all__ = ["filter_runs", "prefetch", "render", "status_text", "table"]

TITLE = "Runs"


def status_text(status: str, age_s: float | None, heartbeat_s: float | None = None) -> str:
    """``running · 4s ago``; a running run silent for long is flagged ``silent``."""
    if status != "running":
        return status
    if age_s is None:
        return "running"
    limit = max(3 * (heartbeat_s or 10.0), 60.0)
    if age_s > limit:
        return f"running? silent {widgets.human_duration(age_s)}"
    return f"running · {widgets.human_duration(age_s)} ago"


def filter_runs(
    runs: pl.DataFrame,
    *,
    projects: list[str] = (),
    statuses: list[str] = (),
    tags: list[str] = (),
    text: str = "",
) -> pl.DataFrame:
    """Keep runs matching every given filter (each list: any of its values).

    ``text`` matches run id, name, group or project, case-insensitively.
    """
    out = runs
    if projects:
        out = out.filter(pl.col("project").is_in(list(projects)))
    if statuses:
        out = out.filter(pl.col("status").is_in(list(statuses)))
    if tags:
        out = out.filter(
            pl.col("tags").list.eval(pl.element().is_in(list(tags))).list.any().fill_null(False)
        )
    if text:
        needle = text.lower()
        hay = pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in ("run_id", "name", "group_name", "project")],
            separator=" ",
        ).str.to_lowercase()
        out = out.filter(hay.str.contains(needle, literal=True))
    return out


def table(
    runs: pl.DataFrame,
    configs: dict[str, dict[str, Any]],
    config_keys: list[str],
    metrics: pl.DataFrame | None,
    now,
) -> pl.DataFrame:
    """The displayed table: one row per run with status, config and metric columns."""
    rows: list[dict[str, Any]] = []
    for r in runs.iter_rows(named=True):
        age = (now - r["last_seen_at"]).total_seconds() if r.get("last_seen_at") else None
        last = r.get("last_step")
        running = r["status"] == "running"
        row: dict[str, Any] = {
            "run": r["name"] or r["run_id"],
            "project": r["project"],
            "group": r.get("group_name"),
            "status": status_text(r["status"], age),
            "tags": ", ".join(r.get("tags") or []),
            "step": last,
            "progress": r.get("progress") if running else None,
            "ETA": widgets.human_duration(r.get("eta_s")) if running else "",
            "started": r.get("started_at"),
            "run_id": r["run_id"],
        }
        config = configs.get(r["run_id"], {})
        for k in config_keys:
            value = config.get(k)
            row[f"cfg:{k}"] = value if value is None or isinstance(value, (int, float, bool)) else str(value)
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if metrics is not None and metrics.height and frame.height:
        frame = frame.join(metrics, on="run_id", how="left")
    return frame


def _metric_columns(
    db: str, token: tuple, run_ids: list[str], keys: list[str], last: pl.DataFrame
) -> pl.DataFrame | None:
    """Metric columns: the key metrics ``list_runs`` already reports (last value), plus
    last and best of each chosen key from ``metric_table`` (computed only when chosen)."""
    default = last.select("run_id", *[pl.col(c).alias(f"{c} (last)") for c in last.columns
                                     if c != "run_id" and c not in keys])
    if not keys or not run_ids:
        return default
    mt = data.fetch(metric_table, db, token, run_ids, keys=keys)
    if mt is None or mt.height == 0:
        return default
    wide = [default]
    for key in keys:
        part = mt.filter(pl.col("key") == key)
        cols = [pl.col("run_id")]
        if "final" in part.columns:
            cols.append(pl.col("final").alias(f"{key} (last)"))
        if "best" in part.columns:
            cols.append(pl.col("best").alias(f"{key} (best)"))
        wide.append(part.select(cols))
    out = wide[0]
    for part in wide[1:]:
        out = out.join(part, on="run_id", how="full", coalesce=True)
    return out


def prefetch(db: str, token: tuple) -> tuple[pl.DataFrame, dict, list[str]]:
    """The store reads the Runs view's first draw needs, through the token-keyed caches.

    ``render`` starts with it; the launcher (``runlake.dashboard._serve``) calls it once
    before any browser connects, so the landing page of a first visit is served from
    memory. Returns ``(runs, configs, metric keys)``.
    """
    runs, _ = widgets.all_runs(db, token)
    configs = data.fetch(run_configs, db, token, None)
    metric_options = data.metric_keys(db, token, ())
    widgets.run_labels(db, token)
    return runs, configs, metric_options


def render(db: str, token: tuple) -> None:
    """Draw the Runs view."""
    runs, configs, metric_options = prefetch(db, token)
    if runs.height == 0:
        st.info("No runs in the store yet. Start a run with `runlake.init(...)` and ingest it.")
        return
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    projects = c1.multiselect("Project", sorted(runs["project"].unique().to_list()), key="runs_project")
    statuses = c2.multiselect("Status", sorted(runs["status"].unique().to_list()), key="runs_status")
    all_tags = sorted({t for ts in runs["tags"].to_list() if ts for t in ts})
    tags = c3.multiselect("Tag", all_tags, key="runs_tags")
    text = c4.text_input("Search", key="runs_text", placeholder="name, id, group or project")
    shown = filter_runs(runs, projects=projects, statuses=statuses, tags=tags, text=text)

    config_options = sorted({k for rid in shown["run_id"].to_list() for k in configs.get(rid, {})})
    c5, c6 = st.columns(2)
    config_keys = c5.multiselect("Config columns", config_options, key="runs_cfg")
    metric_cols = c6.multiselect("Metric columns (last / best)", metric_options, key="runs_metrics",
                                 help="Loss and accuracy keys show their last value by default; "
                                      "chosen keys add last and best.")

    st.caption(f"{shown.height} of {runs.height} runs")
    ids = shown["run_id"].to_list()

    def _table(db_: str, token_: tuple) -> None:
        all_, last = widgets.all_runs(db_, token_)
        fresh = filter_runs(all_, projects=projects, statuses=statuses, tags=tags, text=text)
        metrics = _metric_columns(db_, token_, fresh["run_id"].to_list(), metric_cols, last)
        frame = table(fresh, data.fetch(run_configs, db_, token_, None), config_keys, metrics,
                      widgets.utcnow())
        first = ["run", "project", "group", "status", "tags", "step", "progress", "ETA"]
        last_cols = ["started", "run_id"]
        middle = [c for c in frame.columns if c not in first and c not in last_cols]
        st.dataframe(
            frame,
            hide_index=True,
            column_order=[c for c in (*first, *middle, *last_cols) if c in frame.columns],
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
                "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
            },
        )

    widgets.live(db, _table)

    st.subheader("Selection")
    chosen = widgets.run_picker(db, token, label="Selected runs (for Charts, Compare, Lineage, Logs)",
                                key="runs_pick")
    b1, b2, b3 = st.columns(3)
    if b1.button("Select all shown", disabled=not ids):
        selection.set_selected_runs([*chosen, *ids])
        st.rerun()
    if b2.button("Open charts", disabled=not chosen):
        selection.set_view("charts")
        st.rerun()
    if b3.button("Compare", disabled=len(chosen) < 2):
        selection.set_view("compare")
        st.rerun()
