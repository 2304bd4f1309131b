"""Hyperparameters view: parallel coordinates, metric vs parameter, importance.

Over the selected runs (ticked in the Runs view; the newest :data:`MAX_RUNS` runs when
fewer than two are selected): a parallel-coordinates chart of the config values that vary
between them plus a chosen summary (last, min or max) of a metric, one line per run
coloured by that summary; a scatter of the summary against one parameter; and the
importance figures of ``runlake.analysis.compare.hparam_impact`` (Spearman rank
correlation of each numeric parameter with the run's best value, normalised to sum 1),
the same numbers as the Compare view and ``runlake compare``.

Config keys and run names are user text: they reach the page only as chart data and
widget options (rendered as text by Vega and Streamlit), never as Markdown.
"""

from __future__ import annotations

import math

import altair as alt
import polars as pl
import streamlit as st

from runlake.analysis.compare import hparam_impact
from runlake.dashboard import data, runs_table, selection, widgets
from runlake.schemas.metric_keys import is_system_key

__all__ = ["MAX_AXES", "MAX_RUNS", "parallel_frame", "render"]

TITLE = "Hyperparameters"
MAX_RUNS = 500
"""Runs drawn when the selection is empty or bigger (lines beyond that are a blur)."""
MAX_AXES = 12


def _numeric(values: list) -> bool:
    kinds = {type(v) for v in values if v is not None}
    return bool(kinds) and kinds <= {int, float, bool}


def parallel_frame(configs: dict, summary: dict[str, float], labels: dict[str, str],
                   params: list[str], metric_axis: str) -> pl.DataFrame:
    """Long rows for parallel coordinates: run, axis, value (text), norm (0..1 along its
    axis), metric; numeric axes scale min..max, other axes spread their sorted values."""
    runs = [r for r in configs if r in summary]
    rows = []
    for axis in [*params, metric_axis]:
        raw = [summary[r] if axis == metric_axis else configs[r].get(axis) for r in runs]
        if _numeric(raw):
            nums = [None if v is None else float(v) for v in raw]
            finite = [v for v in nums if v is not None and math.isfinite(v)]
            lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
            norm = [None if v is None or not math.isfinite(v) else
                    (0.5 if hi == lo else (v - lo) / (hi - lo)) for v in nums]
        else:
            texts = [None if v is None else str(v) for v in raw]
            levels = sorted({t for t in texts if t is not None})
            norm = [None if t is None else (0.5 if len(levels) < 2 else
                                            levels.index(t) / (len(levels) - 1)) for t in texts]
        for r, v, n in zip(runs, raw, norm):
            rows.append({"run": labels.get(r, r), "axis": axis, "value": None if v is None else
                         f"{v:.4g}" if isinstance(v, float) else str(v), "norm": n,
                         "metric": summary[r]})
    return pl.DataFrame(rows, schema={"run": pl.String, "axis": pl.String, "value": pl.String,
                                      "norm": pl.Float64, "metric": pl.Float64})


def _runs(db: str, token: tuple) -> tuple[list[str], str]:
    chosen = selection.selected_runs()
    if len(chosen) >= 2:
        ids = chosen[:MAX_RUNS]
        note = f"{len(ids)} selected runs" + (f" (the first {MAX_RUNS} of {len(chosen)})"
                                              if len(chosen) > MAX_RUNS else "")
        return ids, note
    ids = data.run_index(db, token)["run_id"].head(MAX_RUNS).to_list()
    return ids, (f"the {len(ids)} newest runs (select runs in the Runs view to narrow this)")


def render(db: str, token: tuple) -> None:
    """Draw the Hyperparameters view."""
    ids, note = _runs(db, token)
    if len(ids) < 2:
        st.info("Hyperparameter views need at least two runs in the store.")
        return
    every, frame = data.config_table(db, token)
    ids = [r for r in ids if r in every]
    configs = {r: every[r] for r in ids}
    keys = [k for k in data.metric_keys(db, token, tuple(ids)) if not is_system_key(k)]
    if not keys:
        st.info("These runs logged no metrics yet.")
        return
    params = runs_table.differing_keys(frame, ids)
    st.caption(f"Over {note}; {len(params)} config values vary between them.")
    c1, c2 = st.columns([3, 1])
    metric = c1.selectbox("Metric", keys, index=next((i for i, k in enumerate(keys) if "loss" in k), 0),
                          key="params_metric")
    summary_name = c2.radio("Summary", data.SUMMARIES, horizontal=True, key="params_summary")
    found = data.metric_summaries(db, token, (metric,), tuple(ids))
    summary = {r: v for r, v in zip(found["run_id"].to_list(), found[summary_name].to_list())
               if v is not None and math.isfinite(v)}
    if len(summary) < 2 or not params:
        st.info("Need at least two runs with a finite value of this metric and a config value "
                "that varies between them.")
        return
    labels = widgets.run_labels(db, token)
    axis = f"{metric} ({summary_name})"

    st.subheader("Parallel coordinates")
    shown = params[:MAX_AXES]
    if len(params) > MAX_AXES:
        st.caption(f"The first {MAX_AXES} of {len(params)} varying config values.")
    frame = parallel_frame(configs, summary, labels, shown, axis)
    order = [*shown, axis]
    lines = alt.Chart(frame.to_arrow()).mark_line(opacity=0.5).encode(
        x=alt.X("axis:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelLimit=160)),
        y=alt.Y("norm:Q", axis=None, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("metric:Q", title=axis, scale=alt.Scale(scheme="viridis")),
        detail="run:N", tooltip=["run:N", "axis:N", "value:N"])
    labels_at = frame.select("axis", "value", "norm").unique()  # an axis with many values:
    crowded = labels_at.group_by("axis").len().filter(pl.col("len") > 12)["axis"]  # its ends only
    labels_at = labels_at.filter(~pl.col("axis").is_in(crowded) | pl.col("norm").is_in([0.0, 1.0]))
    ticks = alt.Chart(labels_at.to_arrow()).mark_text(align="left", dx=4, fontSize=10).encode(
        x=alt.X("axis:N", sort=order), y="norm:Q", text="value:N")
    st.altair_chart((lines + ticks).properties(height=380), width="stretch")

    st.subheader("Metric vs parameter")
    param = st.selectbox("Parameter", params, key="params_x")
    values = [configs[r].get(param) for r in summary]
    numeric = _numeric(values)
    points = pl.DataFrame({
        "run": [labels.get(r, r) for r in summary],
        "param": [None if v is None else float(v) if numeric else str(v) for v in values],
        "metric": list(summary.values())}, strict=False)
    st.altair_chart(alt.Chart(points.to_arrow()).mark_circle(size=60, opacity=0.7).encode(
        x=alt.X(f"param:{'Q' if numeric else 'N'}", title=param),
        y=alt.Y("metric:Q", title=axis, scale=alt.Scale(zero=False)),
        tooltip=["run:N", "param", "metric:Q"]).properties(height=320), width="stretch")

    st.subheader("Importance")
    st.caption("Spearman rank correlation of each numeric config value with the run's best "
               "value of the metric (analysis.compare.hparam_impact; also in Compare).")
    impact = data.fetch(hparam_impact, db, token, ids, metric)
    if impact is None or impact.height == 0:
        st.info("Not enough variation to estimate hyperparameter importance.")
        return
    st.altair_chart(alt.Chart(impact.to_arrow()).mark_bar().encode(
        x=alt.X("importance:Q", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("param:N", sort="-x", title=None),
        color=alt.Color("effect:N", scale=alt.Scale(range=["#0072B2", "#E69F00"])),
        tooltip=["param:N", "spearman:Q", "p_value:Q", "n:Q", "effect:N"]),
        width="stretch")
    widgets.show_frame(impact, empty="")
