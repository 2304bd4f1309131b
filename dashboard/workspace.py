"""The Charts workspace: panels of metric keys in sections by prefix, each panel's data and
chart, and the context drawn on it (resumes, anomaly ranges, checkpoints).

Kept apart from ``view_charts`` (the widgets and the page) so a panel can be built and
timed without a browser (``bench/bench_dashboard.py`` calls :func:`panel_chart`).

Guarantees:

* **Spike-preserving points.** Ungrouped panels draw ``analysis.curves.downsample``
  (first/min/max/last per bucket); grouped panels draw ``analysis.groups.group_curves``,
  whose min/max band keeps the extreme point of every run in a bucket.
* **Cheap to draw.** Specs are plain Vega-Lite dicts with named datasets (Altair's object
  construction and validation cost more than the queries on a 20-panel workspace).
* **Cached.** Every store read goes through ``data.fetch`` (cached by the change token), so
  an idle rerun with no new data queries nothing.
* **Sections cost nothing closed.** The view builds panels only for open sections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import polars as pl

from runlake.analysis.anomalies import list_anomalies
from runlake.analysis.context import checkpoint_points, resume_points
from runlake.analysis.curves import downsample_keys, ema
from runlake.analysis.groups import group_curves_keys, run_groups
from runlake.dashboard import data, palette
from runlake.schemas.metric_keys import SYSTEM_PREFIX
from runlake.schemas.severity import by_severity

__all__ = [
    "OTHER_SECTION",
    "Context",
    "PanelOptions",
    "context",
    "curves",
    "default_open",
    "fetch_curves",
    "filter_panels",
    "key_curves",
    "layout",
    "panel_chart",
    "section_of",
]

OTHER_SECTION = "metrics"
"""The section of keys without a ``/`` prefix."""

SEVERITY_COLORS = by_severity(("#0072B2", "#E69F00", "#D55E00"))  # least severe first
_SYSTEM_SECTION = SYSTEM_PREFIX.rstrip("/")


def section_of(key: str) -> str:
    """``train/loss`` → ``train``; ``loss`` → :data:`OTHER_SECTION`."""
    head, sep, _ = key.partition("/")
    return head if sep and head else OTHER_SECTION


def default_open(section: str) -> bool:
    """Sections start open, except the system stats (``sys``)."""
    return section != _SYSTEM_SECTION


def filter_panels(panels: Sequence[tuple[str, ...]], search: str) -> list[tuple[str, ...]]:
    """Panels with a key containing ``search`` (case-insensitive; "" keeps all)."""
    needle = search.strip().lower()
    return [p for p in panels if not needle or any(needle in k.lower() for k in p)]


def layout(panels: Sequence[tuple[str, ...]]) -> dict[str, list[tuple[str, ...]]]:
    """Panels by the section of their first key; sections sorted by name, with
    :data:`OTHER_SECTION` first and ``sys`` last."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for panel in panels:
        out.setdefault(section_of(panel[0]), []).append(panel)
    order = sorted(out, key=lambda s: (s != OTHER_SECTION, s == _SYSTEM_SECTION, s))
    return {s: out[s] for s in order}


@dataclass(frozen=True)
class PanelOptions:
    """How every panel is drawn (the workspace controls)."""

    x: str = "step"
    smooth: float = 0.0
    log_y: bool = False
    points: int = 500
    group: str | None = None
    x_range: tuple[float | None, float | None] = (None, None)
    height: int = 260


@dataclass(frozen=True)
class Context:
    """What is drawn on every panel besides the curves (step axis only)."""

    db: str = ""
    token: tuple = ()
    anomalies: pl.DataFrame | None = None
    resumes: pl.DataFrame | None = None
    checkpoints: pl.DataFrame | None = None


def context(db: str, token: tuple, run_ids: Sequence[str]) -> Context:
    """The runs' anomaly findings, resume points and checkpoints (cached fetches)."""
    ids = list(run_ids)
    return Context(db=db, token=token, anomalies=data.fetch(list_anomalies, db, token, run_ids=ids),
                   resumes=data.fetch(resume_points, db, token, ids),
                   checkpoints=data.fetch(checkpoint_points, db, token, ids))


def _in_range(frame: pl.DataFrame, col: str, x_range, col_end: str | None = None) -> pl.DataFrame:
    lo, hi = x_range
    end = pl.col(col_end).fill_null(pl.col(col)) if col_end else pl.col(col)
    return frame.filter(end >= (-math.inf if lo is None else lo),
                        pl.col(col) <= (math.inf if hi is None else hi))


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
    frame = frame.sort("run_id", "x").with_columns(
        pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run"))
    if smoothing > 0:  # ema() per run: the one smoothing rule
        out = pl.concat([part.with_columns(ema(part["value"], smoothing).alias("smoothed"))
                         for _, part in frame.group_by("run_id", maintain_order=True)])
    else:
        out = frame.with_columns(pl.col("value").alias("smoothed"))
    lo, hi = x_range
    if x == "step" and lo is not None:
        out = out.filter(pl.col("x") >= lo)
    if x == "step" and hi is not None:
        out = out.filter(pl.col("x") <= hi)
    return out.select("run", "x", "value", "smoothed")


def key_curves(
    con, run_ids: Sequence[str], keys: Sequence[str], *, points: int, x: str, group: str | None = None
) -> dict[str, pl.DataFrame]:
    """``downsample`` (or, grouped, ``group_curves``) of every key in ONE query: a
    workspace render opens the store once and scans the runs' rows once for all its panels
    (20 panels x 50 runs of a 200M-point store: one query 0.25 s, twenty 2.7-4.4 s)."""
    if not keys:
        return {}
    if group:
        found = group_curves_keys(con, run_ids, keys, by=group, points=points, x=x)
    else:
        found = downsample_keys(con, run_ids, keys, points=points, x=x)
    parts = {k: part.drop("key") for (k,), part in found.group_by(["key"], maintain_order=True)}
    empty = found.clear().drop("key")
    return {k: parts.get(k, empty) for k in keys}


def fetch_curves(db: str, token: tuple, run_ids: Sequence[str], keys: Sequence[str],
                 opts: PanelOptions) -> dict[str, pl.DataFrame]:
    """:func:`key_curves` through ``data.fetch`` (cached by the change token)."""
    return data.fetch(key_curves, db, token, list(run_ids), tuple(dict.fromkeys(keys)),
                      points=opts.points, x=opts.x, group=opts.group)


def _run_curves(db, token, run_ids, keys, labels, opts, fetched=None) -> pl.DataFrame:
    """run, key, x, value, smoothed for every run and key of the panel."""
    fetched = fetched if fetched is not None else fetch_curves(db, token, run_ids, keys, opts)
    parts = []
    for key in keys:
        raw = fetched[key]
        pts = curves(raw, labels, smoothing=opts.smooth, x=opts.x, x_range=opts.x_range,
                     log_y=opts.log_y)
        parts.append(pts.with_columns(pl.lit(key).alias("key")))
    return pl.concat(parts) if parts else pl.DataFrame()


def _group_curves(db, token, run_ids, keys, opts, fetched=None) -> pl.DataFrame:
    """group, key, x, mean, min, max, lo, hi (mean ± std), runs, smoothed when asked."""
    fetched = fetched if fetched is not None else fetch_curves(db, token, run_ids, keys, opts)
    parts = []
    for key in keys:
        stats = fetched[key]
        if opts.x == "step":
            stats = _in_range(stats, "x", opts.x_range)
        cols = ("mean", "min", "max", "std")
        if opts.smooth > 0 and stats.height:
            stats = pl.concat([
                part.with_columns(pl.Series(c, ema(part[c], opts.smooth)) for c in cols)
                for _, part in stats.group_by("group", maintain_order=True)])
        stats = stats.with_columns(
            (pl.col("mean") - pl.col("std").fill_null(0)).alias("lo"),
            (pl.col("mean") + pl.col("std").fill_null(0)).alias("hi"),
            pl.lit(key).alias("key"))
        if opts.log_y:
            stats = stats.filter(pl.col("mean") > 0).with_columns(
                pl.when(pl.col(c) > 0).then(pl.col(c)).alias(c) for c in ("min", "lo"))
        parts.append(stats)
    return pl.concat(parts) if parts else pl.DataFrame()


def _enc(field: str, kind: str = "quantitative", **extra) -> dict:
    return {"field": field, "type": kind, **extra}


def _tip(field: str, title: str | None = None, kind: str = "quantitative", fmt: str | None = None) -> dict:
    out = _enc(field, kind, title=title or field)
    if fmt:
        out["format"] = fmt
    return out


def panel_chart(
    db: str,
    token: tuple,
    run_ids: Sequence[str],
    keys: Sequence[str],
    labels: dict[str, str],
    opts: PanelOptions,
    ctx: Context | None = None,
    fetched: dict[str, pl.DataFrame] | None = None,
) -> tuple[dict | None, list[str]]:
    """One panel: its Vega-Lite spec for ``st.vega_lite_chart`` (None when there is
    nothing finite to draw) and plain-text captions (what is marked, what is missing).

    Ungrouped: one line per run (and dash per key), coloured by run id from the palette.
    Grouped (``opts.group``): per group a mean line, a mean ± std band and a min/max band.
    ``fetched`` is :func:`fetch_curves` for (at least) these keys, shared by the panels of
    one render; without it the panel fetches its own. The spec is written as a plain dict with named datasets (Streamlit ships them as
    Arrow): building Altair objects cost more than the queries on a 20-panel workspace.
    """
    lo, hi = opts.x_range
    x_scale = {"domain": [lo, hi]} if opts.x == "step" and None not in (lo, hi) else {}
    y_scale = {"type": "log"} if opts.log_y else {"zero": False}
    xenc = _enc("x", "temporal" if opts.x == "time" else "quantitative", title=opts.x, scale=x_scale)
    title = " + ".join(keys)
    extra = {"strokeDash": _enc("key", "nominal", title="key")} if len(keys) > 1 else {}
    captions: list[str] = []
    clip = {"clip": True}
    if opts.group:
        pts = _group_curves(db, token, run_ids, keys, opts, fetched)
        if pts.height == 0:
            return None, ["no finite points in range"]
        names = pts["group"].unique(maintain_order=True).to_list()
        colors = palette.colors(names)
        color = _enc("group", "nominal", title=f"group ({opts.group})",
                     scale={"domain": names, "range": [colors[n] for n in names]})
        common = {"x": xenc, "color": color, "detail": _enc("key", "nominal")}
        band = {**common, "color": {**color, "legend": None}}  # one legend, on the line
        layers = [
            {"mark": {"type": "area", "opacity": 0.12, **clip}, "encoding": {
                **band, "y": _enc("min", title=title, scale=y_scale), "y2": {"field": "max"}}},
            {"mark": {"type": "area", "opacity": 0.28, **clip}, "encoding": {
                **band, "y": _enc("lo", title=title, scale=y_scale), "y2": {"field": "hi"}}},
            {"mark": {"type": "line", **clip}, "encoding": {
                **common, **extra, "y": _enc("mean", title=title, scale=y_scale),
                "tooltip": [_tip("group", kind="nominal"), _tip("key", kind="nominal"),
                            _tip("x", opts.x), _tip("mean", fmt=".6g"), _tip("std", fmt=".4g"),
                            _tip("min", fmt=".6g"), _tip("max", fmt=".6g"), _tip("runs")]}},
        ]
        captions.append(f"{len(names)} group(s) by {opts.group}: mean line, mean ± std band, "
                        f"min/max band")
        line = pts.select(pl.col("group").alias("series"), "key", "x", pl.col("mean").alias("y"))
    else:
        pts = _run_curves(db, token, run_ids, keys, labels, opts, fetched)
        if pts.height == 0:
            return None, ["no finite points in range"]
        by_id = palette.colors(run_ids)
        color = _enc("run", "nominal", title="run", scale={
            "domain": [labels.get(r, r) for r in run_ids], "range": [by_id[r] for r in run_ids]})
        common = {"x": xenc, "color": color, "detail": _enc("key", "nominal"), **extra}
        layers = []
        if opts.smooth > 0:
            layers.append({"mark": {"type": "line", "opacity": 0.25, **clip}, "encoding": {
                **common, "color": {**color, "legend": None},
                "y": _enc("value", title=title, scale=y_scale)}})
        layers.append({"mark": {"type": "line", **clip}, "encoding": {
            **common, "y": _enc("smoothed", title=title, scale=y_scale),
            "tooltip": [_tip("run", kind="nominal"), _tip("key", kind="nominal"),
                        _tip("x", opts.x), _tip("value", fmt=".6g")]}})
        line = pts.select(pl.col("run").alias("series"), "key", "x", pl.col("smoothed").alias("y"))
    for layer in layers:
        layer["data"] = {"name": "curves"}
    datasets = {"curves": pts.to_pandas()}
    if ctx is not None and opts.x == "step":
        extra_layers, notes, more = _context_layers(ctx, run_ids, keys, labels, opts, line, x_scale)
        layers += extra_layers
        datasets.update(more)
        captions += notes
    # the curve layers share one colour scale (same field and domain, one legend); the
    # severity colours of the context layers are their own
    spec = {"height": opts.height, "datasets": datasets, "layer": layers,
            "resolve": {"scale": {"color": "independent"}, "legend": {"color": "independent"}}}
    return spec, captions


def _context_layers(ctx, run_ids, keys, labels, opts, line, x_scale):
    """Anomaly rules and shaded ranges, resume rules, checkpoint points: their layers,
    captions and datasets."""
    layers, notes, datasets = [], [], {}
    label = pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run")
    ids = list(run_ids)
    xq = _enc("x", scale=x_scale)

    def add(name: str, frame: pl.DataFrame, mark: dict, encoding: dict) -> None:
        datasets[name] = frame.to_pandas()
        layers.append({"data": {"name": name}, "mark": mark, "encoding": {"x": xq, **encoding}})

    found = ctx.anomalies
    if found is not None and found.height:
        marks = _in_range(found.filter(pl.col("key").is_in(list(keys)) & pl.col("run_id").is_in(ids)),
                          "step_start", opts.x_range, "step_end").with_columns(label)
        if marks.height:
            sev = _enc("severity", "nominal", legend=None, scale={
                "domain": list(SEVERITY_COLORS), "range": list(SEVERITY_COLORS.values())})
            tip = [_tip("run", kind="nominal"), _tip("kind", kind="nominal"),
                   _tip("severity", kind="nominal"), _tip("message", kind="nominal"),
                   _tip("x", "step")]
            rows = marks.select(pl.col("step_start").cast(pl.Float64).alias("x"),
                                pl.col("step_end").fill_null(pl.col("step_start")).cast(pl.Float64).alias("x2"),
                                "severity", "kind", "message", "run")
            ranges = rows.filter(pl.col("x2") > pl.col("x"))
            if ranges.height:
                add("anomaly_ranges", ranges, {"type": "rect", "opacity": 0.15},
                    {"x2": {"field": "x2"}, "color": sev, "tooltip": tip})
            add("anomalies", rows.drop("x2"), {"type": "rule", "strokeDash": [4, 3], "strokeWidth": 2},
                {"color": sev, "tooltip": tip})
            notes.append(f"{marks.height} anomaly finding(s) marked on {' + '.join(keys)}")
    resumes = ctx.resumes
    if resumes is not None and resumes.height:
        rows = _in_range(resumes.filter(pl.col("run_id").is_in(ids)), "step", opts.x_range)
        if rows.height:
            add("resumes", rows.select(pl.col("step").cast(pl.Float64).alias("x"), "attempt", label),
                {"type": "rule", "color": "#444444", "strokeWidth": 1.5},
                {"tooltip": [_tip("run", kind="nominal"), _tip("attempt"), _tip("x", "resumed at step")]})
            notes.append(f"{rows.height} resumed attempt(s) marked (solid grey rules)")
    saved = ctx.checkpoints
    if saved is not None and saved.height and line.height:
        rows = _in_range(saved.filter(pl.col("run_id").is_in(ids)), "step", opts.x_range)
        if opts.group:
            series_of = data.fetch(run_groups, ctx.db, ctx.token, ids, opts.group)
        else:
            series_of = {r: labels.get(r, r) for r in ids}
        points = _on_curve(rows.with_columns(label), line, keys[0], series_of)
        if points.height:
            add("checkpoints", points,
                {"type": "point", "shape": "diamond", "filled": True, "size": 70, "color": "#000000"},
                {"y": _enc("y"), "tooltip": [_tip("run", kind="nominal"), _tip("uri", kind="nominal"),
                                            _tip("x", "step")]})
            notes.append(f"{points.height} checkpoint(s) shown as diamonds")
    return layers, notes, datasets


def _on_curve(rows: pl.DataFrame, line: pl.DataFrame, key: str,
              series_of: dict[str, str]) -> pl.DataFrame:
    """Checkpoint rows placed on the drawn curve of their run (grouped: its group's mean):
    x = checkpoint step, y = the curve's value at the nearest drawn x at or before it."""
    if rows.height == 0:
        return pl.DataFrame()
    target = rows.select(
        pl.col("run_id").replace_strict(series_of, default=None).alias("series"),
        pl.col("step").cast(pl.Float64).alias("x"), "run", "uri").drop_nulls("series").sort("x")
    curve = line.filter(pl.col("key") == key).drop_nulls("y").select("series", "x", "y").sort("x")
    placed = target.join_asof(curve, on="x", by="series", strategy="backward",
                               check_sortedness=False)  # both sorted by x above
    return placed.drop_nulls("y")
