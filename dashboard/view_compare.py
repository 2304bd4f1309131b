"""Compare view: config diff, metric table, seed groups, hyperparameter impact, best config.

Everything here is computed by ``runlake.analysis.compare``; the view picks the runs and
the metric, puts run names on the answers and lays them out.
"""

from __future__ import annotations

import streamlit as st

from runlake.analysis.compare import best_config, config_diff, hparam_impact, metric_table, seed_groups
from runlake.dashboard import data, widgets
from runlake.schemas.metric_keys import is_system_key

__all__ = ["render"]

TITLE = "Compare"


def _best(db: str, token: tuple, run_ids: list[str], metric: str, labels: dict[str, str]) -> None:
    best = data.fetch(best_config, db, token, run_ids, metric)
    if not best:
        st.info(f"No run has a finite value of {widgets.escape_md(metric)}.")
        return
    direction = "lowest" if best.get("mode") == "min" else "highest"
    run = widgets.escape_md(labels.get(best["run_id"], best["run_id"]))
    st.markdown(f"**{run}** has the {direction} {widgets.escape_md(metric)}: "
                f"**{best['value']:.6g}** at step {widgets.escape_md(best.get('step'))}")
    st.json(best.get("config") or {}, expanded=True)


def render(db: str, token: tuple) -> None:
    """Draw the Compare view."""
    run_ids = widgets.run_picker(db, token, label="Runs to compare", key="compare_runs")
    if len(run_ids) < 2:
        st.info("Select at least two runs (here or in the Runs view) to compare them.")
        return
    labels = widgets.run_labels(db, token)
    keys = data.metric_keys(db, token, tuple(run_ids))
    user_keys = [k for k in keys if not is_system_key(k)] or keys

    st.subheader("Config diff")
    diff = data.fetch(config_diff, db, token, run_ids)
    diff = diff.rename({c: labels[c] for c in diff.columns if c in labels}) if diff is not None else None
    widgets.show_frame(diff,
                       empty="These runs have identical configs.")

    st.subheader("Metrics")
    table = data.fetch(metric_table, db, token, run_ids, keys=user_keys or None)
    widgets.show_frame(widgets.with_run_label(table, labels) if table is not None else None,
                       empty="No metrics logged by these runs.")
    if not user_keys:
        return

    preferred = next((i for i, k in enumerate(user_keys) if "loss" in k), 0)
    metric = st.selectbox("Metric for groups, impact and best configuration", user_keys,
                          index=preferred, key="compare_metric")
    st.subheader("Seed groups")
    st.caption("Runs whose configs differ only in the seed, aggregated: mean with a 95% "
               "confidence interval (Student t).")
    widgets.show_frame(data.fetch(seed_groups, db, token, run_ids, metric),
                       empty="No seed groups among these runs.")
    st.subheader("Hyperparameter impact")
    st.caption("Rank correlation of each varying config value with the metric.")
    widgets.show_frame(data.fetch(hparam_impact, db, token, run_ids, metric),
                       empty="Not enough variation to estimate hyperparameter impact.")
    st.subheader("Best configuration")
    _best(db, token, run_ids, metric, labels)
