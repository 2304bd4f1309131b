"""Compare view: config diff, metric table, seed groups, hyperparameter impact, best config.

Everything here is computed by ``runlake.analysis.compare``; the view picks the runs and
the metric and lays the answers out.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import streamlit as st

from runlake.analysis.compare import best_config, config_diff, hparam_impact, metric_table, seed_groups
from runlake.dashboard import data, widgets

__all__ = ["render"]

TITLE = "Compare"


def _as_frame(value: Any) -> pl.DataFrame | None:
    if value is None:
        return None
    if isinstance(value, pl.DataFrame):
        return value
    if isinstance(value, dict):
        return pl.DataFrame([{"field": k, "value": json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}
                             for k, v in value.items()])
    return pl.DataFrame(value)


def render(db: str, token: tuple) -> None:
    """Draw the Compare view."""
    run_ids = widgets.run_picker(db, token, label="Runs to compare", key="compare_runs")
    if len(run_ids) < 2:
        st.info("Select at least two runs (here or in the Runs view) to compare them.")
        return
    keys = data.metric_keys(db, token, tuple(run_ids))
    user_keys = [k for k in keys if not k.startswith("sys/")] or keys

    st.subheader("Config diff")
    widgets.show_frame(_as_frame(data.fetch(config_diff, db, token, run_ids)),
                       empty="These runs have identical configs.")

    st.subheader("Metrics")
    widgets.show_frame(_as_frame(data.fetch(metric_table, db, token, run_ids, keys=user_keys or None)),
                       empty="No metrics logged by these runs.")
    if not user_keys:
        return

    metric = st.selectbox("Metric for groups, impact and best configuration", user_keys, key="compare_metric")
    st.subheader("Seed groups")
    st.caption("Runs that differ only in their seed, aggregated with confidence intervals.")
    widgets.show_frame(_as_frame(data.fetch(seed_groups, db, token, run_ids, metric)),
                       empty="No seed groups among these runs.")
    st.subheader("Hyperparameter impact")
    widgets.show_frame(_as_frame(data.fetch(hparam_impact, db, token, run_ids, metric)),
                       empty="Not enough variation to estimate hyperparameter impact.")
    st.subheader("Best configuration")
    widgets.show_frame(_as_frame(data.fetch(best_config, db, token, run_ids, metric)),
                       empty="No best configuration found.")
