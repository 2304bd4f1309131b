"""Logs view: the log lines of the selected runs, newest first, with a level filter and a
text search; refreshes live while runs are going."""

from __future__ import annotations

import polars as pl
import streamlit as st

from runlake.dashboard import data, widgets

__all__ = ["render"]

TITLE = "Logs"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def render(db: str, token: tuple) -> None:
    """Draw the Logs view."""
    run_ids = widgets.run_picker(db, token, label="Runs (none = all)", key="logs_runs")
    c1, c2, c3 = st.columns([2, 2, 1])
    levels = c1.multiselect("Level", LEVELS, default=["INFO", "WARNING", "ERROR", "CRITICAL"], key="logs_levels")
    text = c2.text_input("Search", key="logs_text", placeholder="text in message or logger")
    limit = c3.number_input("Max lines", 100, 100_000, 2000, 100, key="logs_limit")
    labels = widgets.run_labels(db, token)

    def _lines(db_: str, token_: tuple) -> None:
        lines = data.log_lines(db_, token_, tuple(run_ids), tuple(levels), text.strip(), int(limit))
        if lines.height:
            lines = lines.with_columns(
                pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run")
            ).select("ts", "run", "rank", "step", "level", "logger", "message")
        st.caption(f"{lines.height} line(s)")
        widgets.show_frame(lines, empty="No log lines match.")

    widgets.live(db, _lines)
