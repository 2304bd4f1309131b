"""Logs view: the log lines of the selected runs, newest first, with a minimum level and a
text search (ignoring case); refreshes live while runs are going. The query is
``runlake logs``'s (:func:`runlake.analysis.logs.query_logs`), so both show the same lines."""

from __future__ import annotations

import polars as pl
import streamlit as st

from runlake.analysis.logs import LEVEL_NAMES
from runlake.dashboard import data, widgets

__all__ = ["render"]

TITLE = "Logs"
ALL = "(every line)"


def render(db: str, token: tuple) -> None:
    """Draw the Logs view."""
    run_ids = widgets.run_picker(db, token, label="Runs (none = all)", key="logs_runs")
    c1, c2, c3 = st.columns([2, 2, 1])
    choice = c1.selectbox("Minimum level", (ALL, *LEVEL_NAMES), index=1 + LEVEL_NAMES.index("INFO"),
                          key="logs_level", help="lines at this level or above")
    level = None if choice == ALL else choice
    text = c2.text_input("Search", key="logs_text", placeholder="text in message or logger")
    limit = c3.number_input("Max lines", 100, 100_000, 2000, 100, key="logs_limit")
    labels = widgets.run_labels(db, token)

    def _lines(db_: str, token_: tuple) -> None:
        lines = data.log_lines(db_, token_, tuple(run_ids), level, text.strip(), int(limit))
        if lines.height:
            lines = lines.with_columns(
                pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run")
            ).select("ts", "run", "rank", "step", "level", "logger", "message")
        st.caption(f"{lines.height} line(s)")
        widgets.show_frame(lines, empty="No log lines match.")

    widgets.live(db, _lines)
