"""Anomalies view: every finding with its severity, message and suggestion, and a button
that opens the chart of that run and key at that step range."""

from __future__ import annotations

import polars as pl
import streamlit as st

from runlake.analysis.anomalies import list_anomalies
from runlake.dashboard import data, selection, widgets
from runlake.schemas.severity import SEVERITIES as _ORDERED, by_severity

__all__ = ["render", "worst_first"]

TITLE = "Anomalies"
SEVERITIES = tuple(reversed(_ORDERED))
"""The severities worst first, as the filter and the counts list them."""
_COLORS = by_severity(("blue", "orange", "red"))  # least severe first
MAX_CARDS = 50


def _margin(start: int | None, end: int | None) -> tuple[int | None, int | None]:
    """A step window around a finding so the chart shows context on both sides."""
    if start is None:
        return None, None
    end = start if end is None else end
    pad = max(10, (end - start) * 2)
    return max(0, start - pad), end + pad


def worst_first(found: pl.DataFrame) -> pl.DataFrame:
    """Findings ordered by severity (critical first), then run label, then step."""
    rank = pl.col("severity").replace_strict(
        {s: i for i, s in enumerate(SEVERITIES)}, default=len(SEVERITIES), return_dtype=pl.Int32)
    return found.sort([rank, "run", "step_start"], nulls_last=True)


def render(db: str, token: tuple) -> None:
    """Draw the Anomalies view."""
    c1, c2 = st.columns([2, 1])
    severities = c1.multiselect("Severity", SEVERITIES, default=list(SEVERITIES), key="anom_sev")
    only_selected = c2.toggle("Only selected runs", value=bool(selection.selected_runs()), key="anom_only")
    run_ids = selection.selected_runs() if only_selected else None
    if only_selected and not run_ids:
        st.info("No runs selected: showing findings of every run.")
        run_ids = None
    found = data.fetch(list_anomalies, db, token, run_ids=run_ids)
    if found is None or found.height == 0:
        st.success("No anomaly findings stored. `runlake anomalies --refresh` runs the detectors "
                   "over new data and stores what they find.")
        return
    found = found.filter(pl.col("severity").is_in(list(severities))) if severities else found.clear()
    labels = widgets.run_labels(db, token)
    found = worst_first(found.with_columns(
        pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run")))
    counts = {s: found.filter(pl.col("severity") == s).height for s in SEVERITIES}
    st.markdown(" · ".join(f":{_COLORS[s]}[**{counts[s]} {s}**]" for s in SEVERITIES))
    cols = [c for c in ("severity", "run", "kind", "key", "step_start", "step_end", "message", "suggestion")
            if c in found.columns]
    widgets.show_frame(found.select(cols), empty="No findings at these severities.")
    if found.height == 0:
        return
    st.subheader("Findings")
    if found.height > MAX_CARDS:
        st.caption(f"showing the first {MAX_CARDS} of {found.height}; narrow the severity filter")
    esc = widgets.escape_md
    for i, f in enumerate(found.head(MAX_CARDS).iter_rows(named=True)):
        sev = f["severity"]
        title = f":{_COLORS.get(sev, 'gray')}[**{esc(sev)}**] · {esc(f['kind'])} · {esc(f['run'])}"
        if f.get("key"):
            title += f" · {esc(f['key'])} @ step {esc(f.get('step_start'))}"
        with st.expander(title, expanded=i < 3):
            st.markdown(f"**{esc(f['message'])}**")
            if f.get("suggestion"):
                st.markdown(f"Suggestion: {esc(f['suggestion'])}")
            if f.get("key"):
                lo, hi = _margin(f.get("step_start"), f.get("step_end"))
                params = selection.chart_params([f["run_id"]], f["key"], lo, hi)
                a, b = st.columns([1, 3])
                if a.button("Open chart", key=f"anom_open_{i}"):
                    selection.open_chart([f["run_id"]], f["key"], lo, hi)
                b.markdown(f"[link to this chart]({selection.view_url(params)})")
