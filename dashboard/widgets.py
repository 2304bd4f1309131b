"""Widgets and formatting shared by several views: the run picker, durations, live blocks,
and :func:`escape_md`, the one way user text enters Streamlit markdown.

Kept apart from the views so each view module holds only its own layout.

Why ``escape_md`` exists: ``st.markdown``, ``st.caption``, ``st.subheader``, the alert
boxes, expander and tab titles and every widget label render Markdown, plus Streamlit's
own directives (``:red[...]``, ``$...$`` LaTeX, ``:material/...:``). A run name, tag,
metric key, config value, log line or finding message is written by whoever trains, so it
must never become an image the browser fetches, a link, or markup. Views pass such text
through ``escape_md`` (or show it with ``st.text``/``st.code``/dataframes, which render no
markup); only the views' own fixed strings carry formatting.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable


import polars as pl
import streamlit as st

from runlake.analysis.markup import escape_markdown
from runlake.analysis.runs import list_runs
from runlake.dashboard import data, selection

__all__ = [
    "all_runs",
    "escape_md",
    "human_duration",
    "live",
    "run_labels",
    "run_picker",
    "show_frame",
    "utcnow",
    "with_run_label",
]


def escape_md(text: Any) -> str:
    """``text`` as inert Markdown for Streamlit (every punctuation character backslashed,
    line breaks as spaces): the one rule, :func:`runlake.analysis.markup.escape_markdown`."""
    return escape_markdown(text)


RUN_SCHEMA = {
    "run_id": pl.String, "project": pl.String, "name": pl.String, "group_name": pl.String,
    "status": pl.String, "started_at": pl.Datetime("us"), "ended_at": pl.Datetime("us"),
    "last_seen_at": pl.Datetime("us"), "duration_s": pl.Float64, "last_step": pl.Int64,
    "total_steps": pl.Int64, "progress": pl.Float64, "eta_s": pl.Float64,
    "tags": pl.List(pl.String),
}


def all_runs(db: str, token: tuple) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every run in the store (``list_runs``, cached by token), newest first.

    Returns:
        ``(runs, last)``: a RUN_SCHEMA frame, and the last values of the runs' key metrics
        (``run_id`` plus one column per key) as ``list_runs`` reports them.
    """
    runs = data.fetch(list_runs, db, token)
    rows = [{k: r.get(k) for k in RUN_SCHEMA} for r in runs]
    last = [{"run_id": r["run_id"], **(r.get("metrics") or {})} for r in runs]
    return pl.DataFrame(rows, schema=RUN_SCHEMA), pl.DataFrame(last, infer_schema_length=None)


def run_labels(db: str, token: tuple) -> dict[str, str]:
    """run id → ``project/name`` for pickers and legends; the end of the id is added where
    several runs share a project and name."""
    runs = data.run_index(db, token).select("run_id", "project", "name").rows()
    base = {rid: f"{project}/{name or rid}" for rid, project, name in runs}
    counts: dict[str, int] = {}
    for label in base.values():
        counts[label] = counts.get(label, 0) + 1
    return {rid: label if counts[label] == 1 else f"{label} · {rid[-6:]}"
            for rid, label in base.items()}


def with_run_label(frame: pl.DataFrame | None, labels: dict[str, str]) -> pl.DataFrame | None:
    """Put a ``run`` label column first, in place of ``run_id``, when the frame has one."""
    if frame is None or "run_id" not in frame.columns:
        return frame
    named = frame.with_columns(
        pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run"))
    return named.select("run", *[c for c in frame.columns if c not in ("run", "run_id")])


def run_picker(
    db: str, token: tuple, *, label: str = "Runs", key: str, max_selections: int | None = None
) -> list[str]:
    """A multiselect of runs bound to the shared selection (session state and URL)."""
    labels = run_labels(db, token)
    chosen = [r for r in selection.selected_runs() if r in labels]
    if key not in st.session_state or st.session_state.get(f"{key}__sync") != chosen:
        st.session_state[key] = chosen
        st.session_state[f"{key}__sync"] = chosen

    def _changed() -> None:
        picked = list(st.session_state[key])
        st.session_state[f"{key}__sync"] = picked
        selection.set_selected_runs(picked)

    st.multiselect(
        label,
        list(labels),
        key=key,
        format_func=lambda r: labels.get(r, r),
        on_change=_changed,
        max_selections=max_selections,
        placeholder="choose runs (or select them in the Runs view)",
    )
    return list(st.session_state[key])


def human_duration(seconds: float | None) -> str:
    """``93`` → ``"1m 33s"``; None → ``""``."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def utcnow() -> datetime:
    """Naive UTC now, comparable with the store's TIMESTAMP columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def live(db: str, body: Callable[[str, tuple], None]) -> None:
    """Render ``body(db, token)`` inside a fragment that reruns every refresh interval.

    Each tick first reads the change token (two ``stat`` calls when nothing changed); the
    body's fetches are cached by that token, so an idle tick re-renders from memory.
    """
    every = st.session_state.get("rl_refresh_s")

    @st.fragment(run_every=every)
    def _tick() -> None:
        body(db, data.change_token(db))

    _tick()


def show_frame(frame: pl.DataFrame | None, *, empty: str, **kwargs: Any) -> None:
    """``st.dataframe`` for a polars frame, or an info line when there is nothing."""
    if frame is None or frame.height == 0:
        st.info(empty)
        return
    st.dataframe(frame, hide_index=True, **kwargs)
