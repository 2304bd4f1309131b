"""Charts view: chosen metrics of the selected runs, overlaid, updating live.

Curves come from ``analysis.curves.downsample`` (min/max/last per bucket, so a spike is
never averaged or sampled away), smoothed with the bias-corrected ``analysis.curves.ema``,
with the anomaly findings of each run drawn on the curve of their key. The URL keys
``key``, ``x``, ``from`` and ``to`` focus the view (the Anomalies view links here).
"""

from __future__ import annotations

import math

import altair as alt
import polars as pl
import streamlit as st

from runlake.analysis.anomalies import list_anomalies
from runlake.analysis.curves import downsample, ema
from runlake.dashboard import data, selection, widgets
from runlake.schemas.metric_keys import is_system_key
from runlake.schemas.severity import by_severity

__all__ = ["chart", "curves", "render", "zoom_points"]

TITLE = "Charts"
X_AXES = selection.X_AXES
MAX_POINTS = 20_000
SEVERITY_COLORS = by_severity(("#1f77b4", "#ff7f0e", "#d62728"))  # least severe first


def curves(
    raw: pl.DataFrame,
    labels: dict[str, str],
    *,
    smoothing: float,
    x: str,
    x_range: tuple[float | None, float | None] = (None, None),
    log_y: bool = False,
) -> pl.DataFrame:
    """Downsampled points → plot rows ``run, x, value, smoothed`` (finite values only).

    ``smoothing`` is the EMA weight in [0, 1): 0 keeps the raw curve.
    """
    if raw is None or raw.height == 0:
        return pl.DataFrame(schema={"run": pl.String, "x": pl.Float64, "value": pl.Float64,
                                    "smoothed": pl.Float64})
    xcol = x if x in raw.columns else "x"
    frame = raw.select(pl.col("run_id"), pl.col(xcol).alias("x"), pl.col("value").cast(pl.Float64))
    frame = frame.filter(pl.col("value").is_finite())
    if log_y:
        frame = frame.filter(pl.col("value") > 0)
    parts = []
    for (run_id,), part in frame.sort("x").group_by(["run_id"], maintain_order=True):
        values = part["value"].to_list()
        smoothed = ema(values, smoothing) if smoothing > 0 and values else values
        parts.append(part.with_columns(
            pl.lit(labels.get(run_id, run_id)).alias("run"),
            pl.Series("smoothed", list(smoothed), dtype=pl.Float64),
        ))
    out = pl.concat(parts) if parts else frame.with_columns(
        pl.lit("").alias("run"), pl.col("value").alias("smoothed"))
    lo, hi = x_range
    if x == "step" and lo is not None:
        out = out.filter(pl.col("x") >= lo)
    if x == "step" and hi is not None:
        out = out.filter(pl.col("x") <= hi)
    return out.select("run", "x", "value", "smoothed")


def chart(
    points: pl.DataFrame,
    findings: pl.DataFrame | None,
    *,
    key: str,
    x: str,
    smoothing: float,
    log_y: bool,
    x_range: tuple[float | None, float | None] = (None, None),
) -> alt.LayerChart | alt.Chart:
    """An Altair chart: one colored line per run, raw faint under smoothed, anomalies marked."""
    x_type = "T" if x == "time" else "Q"
    x_scale = alt.Scale(domain=[v for v in x_range]) if x == "step" and None not in x_range else alt.Undefined
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    xenc = alt.X(f"x:{x_type}", title=x, scale=x_scale)
    base = alt.Chart(points.to_pandas()).encode(x=xenc, color=alt.Color("run:N", title="run"))
    layers = []
    if smoothing > 0:
        layers.append(base.mark_line(opacity=0.25, clip=True).encode(y=alt.Y("value:Q", title=key, scale=y_scale)))
    layers.append(base.mark_line(clip=True).encode(
        y=alt.Y("smoothed:Q", title=key, scale=y_scale),
        tooltip=["run:N", alt.Tooltip("x", title=x), alt.Tooltip("value:Q", format=".6g")],
    ))
    if findings is not None and findings.height and x == "step":
        marks = findings.select(
            pl.col("step_start").alias("x"), "severity", "kind", "message", "run",
        ).to_pandas()
        layers.append(
            alt.Chart(marks).mark_rule(strokeDash=[4, 3], strokeWidth=2).encode(
                x=alt.X("x:Q", scale=x_scale),
                color=alt.Color("severity:N", scale=alt.Scale(
                    domain=list(SEVERITY_COLORS), range=list(SEVERITY_COLORS.values())), legend=None),
                tooltip=["run:N", "kind:N", "severity:N", "message:N", alt.Tooltip("x:Q", title="step")],
            )
        )
    return alt.layer(*layers).resolve_scale(color="independent").properties(height=320)


def zoom_points(points: int, lo: float | None, hi: float | None, last_step: float | None) -> int:
    """Points to request so a zoomed step range still gets about ``points`` of them.

    ``downsample`` buckets a run's whole x range, so a range covering 1/10 of the run needs
    10x the points (capped at :data:`MAX_POINTS`).
    """
    if (lo is None and hi is None) or not last_step:
        return points
    span = (last_step if hi is None else min(hi, last_step)) - (0 if lo is None else max(lo, 0))
    if span <= 0:
        return points
    return int(min(MAX_POINTS, max(points, points * last_step / span)))


def render(db: str, token: tuple) -> None:
    """Draw the Charts view."""
    run_ids = widgets.run_picker(db, token, label="Runs", key="charts_runs")
    if not run_ids:
        st.info("Select runs here or in the Runs view to draw their curves.")
        return
    focus = selection.focus()
    keys = data.metric_keys(db, token, tuple(run_ids))
    if not keys:
        st.info("These runs logged no metrics yet.")
        return
    if focus.get("key") is not None and focus["key"] not in keys:
        st.warning(f"?key={widgets.escape_md(repr(focus['key']))} is not logged by these runs; ignored.")
    default = [focus["key"]] if focus.get("key") in keys else [k for k in keys if not is_system_key(k)][:1]
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    chosen = c1.multiselect("Metrics", keys, default=default, key="charts_keys")
    x = c2.radio("x axis", X_AXES, index=X_AXES.index(focus.get("x", "step")) if focus.get("x") in X_AXES else 0,
                 horizontal=True, key="charts_x")
    smoothing = c3.slider("Smoothing (EMA)", 0.0, 0.99, 0.0, 0.01, key="charts_smooth",
                          help="Exponential moving average weight, bias corrected (0 = raw).")
    log_y = c4.checkbox("Log scale", key="charts_log")
    c5, c6, c7 = st.columns(3)
    points = c5.number_input("Points per curve", 50, 20000, 1000, 50, key="charts_points",
                             help="Buckets keep each bucket's min, max and last, so spikes survive.")
    bound = {"min_value": -selection.MAX_STEP, "max_value": selection.MAX_STEP, "step": 1}
    lo = c6.number_input("From step", value=focus.get("from"), key="charts_from", **bound)
    hi = c7.number_input("To step", value=focus.get("to"), key="charts_to", **bound)
    labels = widgets.run_labels(db, token)
    runs = data.run_index(db, token).filter(pl.col("run_id").is_in(list(run_ids)))
    last_step = runs["last_step"].max() if runs.height else None
    per_curve = zoom_points(int(points), lo, hi, last_step) if x == "step" else int(points)

    def _draw(db_: str, token_: tuple) -> None:
        findings = data.fetch(list_anomalies, db_, token_, run_ids=list(run_ids))
        for key in chosen:
            raw = data.fetch(downsample, db_, token_, list(run_ids), key, points=per_curve, x=x)
            pts = curves(raw, labels, smoothing=smoothing, x=x, x_range=(lo, hi), log_y=log_y)
            st.subheader(widgets.escape_md(key))
            if pts.height == 0:
                st.caption("no finite points in range")
                continue
            marks = None
            if findings is not None and findings.height:
                marks = findings.filter(pl.col("key") == key).with_columns(
                    pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run"))
                if lo is not None or hi is not None:
                    marks = marks.filter(
                        pl.col("step_end").fill_null(pl.col("step_start")) >= (lo if lo is not None else -math.inf),
                        pl.col("step_start") <= (hi if hi is not None else math.inf),
                    )
            st.altair_chart(chart(pts, marks, key=key, x=x, smoothing=smoothing, log_y=log_y,
                                  x_range=(lo, hi)))
            if marks is not None and marks.height:
                st.caption(f"{marks.height} anomaly finding(s) marked on {widgets.escape_md(key)}")

    widgets.live(db, _draw)
