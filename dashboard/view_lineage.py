"""Lineage view: which runs and checkpoints consumed an item; per-run coverage,
augmentation breakdown and train/eval leakage, all from ``runlake.analysis.lineage``."""

from __future__ import annotations

import polars as pl
import streamlit as st

from runlake.analysis.lineage import augmentation_breakdown, coverage, item_runs, leakage, run_items
from runlake.dashboard import data, widgets

__all__ = ["render"]

TITLE = "Lineage"


def render(db: str, token: tuple) -> None:
    """Draw the Lineage view."""
    labels = widgets.run_labels(db, token)
    st.subheader("Find an item")
    item = st.text_input("Item id", key="lineage_item", placeholder="file path, sample id or content hash")
    if item:
        found = data.fetch(item_runs, db, token, item.strip())
        if found is not None and found.height:
            found = found.with_columns(
                pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run"))
            found = found.select("run", *[c for c in found.columns if c != "run"])
        widgets.show_frame(found, empty=f"No run consumed item {widgets.escape_md(repr(item))}.")

    st.subheader("Per run")
    run_ids = widgets.run_picker(db, token, label="Runs", key="lineage_runs")
    if not run_ids:
        st.info("Select runs to see their data coverage, augmentations and leakage.")
        return
    leaks = data.fetch(leakage, db, token, run_ids=run_ids)
    if leaks is not None and leaks.height:
        st.warning(f"Leakage: {leaks.height} item(s) appear in both training and evaluation splits.")
        widgets.show_frame(widgets.with_run_label(leaks, labels), empty="")
    else:
        st.success("No train/eval leakage among the selected runs.")
    for run_id in run_ids:
        st.markdown(f"#### {widgets.escape_md(labels.get(run_id, run_id))}")
        c1, c2 = st.columns(2)
        with c1:
            st.caption("Coverage")
            widgets.show_frame(data.fetch(coverage, db, token, run_id), empty="No data items logged.")
        with c2:
            st.caption("Augmentations")
            widgets.show_frame(data.fetch(augmentation_breakdown, db, token, run_id),
                               empty="No augmentations logged.")
        with st.expander("Items consumed"):
            widgets.show_frame(data.fetch(run_items, db, token, run_id), empty="No data items logged.")
