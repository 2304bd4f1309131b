"""Charts view: the workspace a W&B or TensorBoard user expects.

A panel per metric key (or the panels ``?keys=`` names, ``a|b`` overlaying two keys),
in collapsible sections by prefix (``train/``, ``val/``, ``sys/``; keys without a ``/`` in
"metrics"); closed sections are not queried. A search box filters panels; every panel
shares the x axis (step, time, epoch when the runs logged epochs), EMA smoothing
(bias-corrected, 0..0.99), log scale, and optional grouping of the runs by a config key
or run group (mean line, std and min/max bands). Resumed attempts, anomaly ranges and
checkpoints are drawn on the step axis. Every control lives in the URL (see
``selection.workspace``), so a link reproduces the workspace and a refresh keeps it.

Panels are built by ``workspace.panel_chart`` from cached fetches: an idle rerun with no
new data issues no store query.
"""

from __future__ import annotations

from typing import Any, Callable

import polars as pl
import streamlit as st

from runlake.analysis.context import has_epochs
from runlake.analysis.groups import group_options
from runlake.dashboard import data, selection, widgets, workspace
from runlake.dashboard.workspace import curves

__all__ = ["curves", "render", "zoom_points"]

TITLE = "Charts"
X_AXES = selection.X_AXES
MAX_POINTS = 20_000
DEFAULT_POINTS = 500
NO_GROUP = "(none)"
_EPOCH_MISSING = ("x = epoch is offered when a run logs epochs (`run.log(..., epoch=)`); "
                  "these runs logged none.")


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


def _synced(key: str, url_value: Any) -> None:
    """Set widget ``key`` from the URL when the URL changed since the widget last wrote it
    (a link, a refresh, another view's jump), else leave the user's value."""
    mark = f"{key}__url"
    if key not in st.session_state or st.session_state.get(mark) != url_value:
        st.session_state[key] = url_value
        st.session_state[mark] = url_value


def _writer(key: str, name: str, encode: Callable[[Any], str | None]) -> Callable[[], None]:
    """An on_change callback: the widget's value into ``?name=``."""
    def _changed() -> None:
        value = st.session_state[key]
        st.session_state[f"{key}__url"] = value
        selection.set_param(name, encode(value))
    return _changed


def _known_panels(ws: selection.Workspace, keys: list[str]) -> tuple[list[tuple[str, ...]] | None, list[str]]:
    """The URL's panels restricted to logged keys; the unknown keys."""
    if ws.panels is None:
        return None, []
    known = set(keys)
    unknown = list(dict.fromkeys(k for p in ws.panels for k in p if k not in known))
    panels = [tuple(k for k in p if k in known) for p in ws.panels]
    return [p for p in panels if p] or None, unknown


def _controls(db: str, token: tuple, run_ids: list[str], keys: list[str], ws: selection.Workspace):
    """The workspace controls, bound to the URL; returns (panels, options, group notices)."""
    panels, unknown = _known_panels(ws, keys)
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        st.warning(widgets.escape_md(f"?keys= names key(s) these runs did not log, ignored: {shown}"), icon="⚠️")
    epochs = data.fetch(has_epochs, db, token, run_ids)
    axes = [a for a in X_AXES if a != "epoch" or epochs]
    x = ws.x
    if x not in axes:
        st.warning(f"?x=epoch: {_EPOCH_MISSING} Showing step.", icon="⚠️")
        x = "step"
    groups = [NO_GROUP, *data.fetch(group_options, db, token, run_ids)]
    group = ws.group or NO_GROUP
    if group not in groups:
        st.warning(widgets.escape_md(f"?group={group!r} is not a config key of these runs; "
                                     f"showing them ungrouped."), icon="⚠️")
        group = NO_GROUP
    panel_options = list(dict.fromkeys([selection.panel_text([p]) for p in panels or []] + keys))

    c1, c2, c3 = st.columns([2, 3, 2])
    _synced("charts_search", ws.search)
    search = c1.text_input("Search keys", key="charts_search", placeholder="filter panels by key",
                           on_change=_writer("charts_search", "search", str))
    _synced("charts_keys", [selection.panel_text([p]) for p in panels or []])
    c2.multiselect("Panels", panel_options, key="charts_keys",
                   format_func=lambda p: p.replace("|", " + "),
                   placeholder="every logged key (pick some to pin them)",
                   on_change=_writer("charts_keys", "keys", lambda v: ",".join(v)))
    _synced("charts_group", group)
    c3.selectbox("Group runs by", groups, key="charts_group",
                 help="A config key or `group` (the run group): one mean line per group with "
                      "a mean ± std band and a min/max band.",
                 on_change=_writer("charts_group", "group", lambda v: None if v == NO_GROUP else v))
    c4, c5, c6, c7 = st.columns([2, 2, 1, 1])
    _synced("charts_x", x)
    c4.radio("x axis", axes, key="charts_x", horizontal=True,
             on_change=_writer("charts_x", "x", lambda v: None if v == "step" else v))
    if not epochs:
        c4.caption(_EPOCH_MISSING)
    _synced("charts_smooth", ws.smooth)
    smooth = c5.slider("Smoothing (EMA)", 0.0, selection.SMOOTH_MAX, key="charts_smooth", step=0.01,
                       help="Exponential moving average weight, bias corrected (0 = raw).",
                       on_change=_writer("charts_smooth", "smooth", lambda v: f"{v:g}" if v else None))
    _synced("charts_log", ws.log_y)
    log_y = c6.checkbox("Log scale", key="charts_log",
                        on_change=_writer("charts_log", "logy", lambda v: "1" if v else None))
    _synced("charts_points", ws.points or DEFAULT_POINTS)
    points = c7.number_input("Points", *selection.POINTS_RANGE, key="charts_points", step=50,
                             help="Per curve. Buckets keep each bucket's first, min, max and "
                                  "last, so spikes survive.",
                             on_change=_writer("charts_points", "points",
                                               lambda v: None if v == DEFAULT_POINTS else str(int(v))))
    with st.expander("Add a panel overlaying several keys"):
        combine = st.multiselect("Keys", keys, key="charts_combine", max_selections=selection.MAX_PANEL_KEYS)
        if st.button("Add panel", key="charts_add", disabled=len(combine) < 2):
            current = panels if panels is not None else [(k,) for k in keys]
            selection.set_param("keys", selection.panel_text([tuple(combine), *current]))
            st.rerun()
    focus = selection.focus()
    bound = {"min_value": -selection.MAX_STEP, "max_value": selection.MAX_STEP, "step": 1}
    c8, c9, _ = st.columns([1, 1, 4])
    lo = c8.number_input("From step", value=focus.get("from"), key="charts_from", **bound)
    hi = c9.number_input("To step", value=focus.get("to"), key="charts_to", **bound)
    runs = data.run_index(db, token).filter(pl.col("run_id").is_in(run_ids))
    last_step = runs["last_step"].max() if runs.height else None
    x = st.session_state["charts_x"]
    opts = workspace.PanelOptions(
        x=x, smooth=float(smooth), log_y=bool(log_y), x_range=(lo, hi),
        points=zoom_points(int(points), lo, hi, last_step) if x == "step" else int(points),
        group=None if st.session_state["charts_group"] == NO_GROUP else st.session_state["charts_group"])
    chosen = [tuple(p.split("|")) for p in st.session_state["charts_keys"]] or [(k,) for k in keys]
    return workspace.filter_panels(chosen, search), opts


def _write_sections(shown: list[str], opened: list[str]) -> None:
    """Put the open sections into ``?sections=`` when they differ from the URL (sections
    the search hides keep their state); the default state writes nothing."""
    current = st.query_params.get("sections")
    if current is None and opened == [s for s in shown if workspace.default_open(s)]:
        return
    hidden = [s for s in (current or "").split(",") if s and s not in shown]
    want = ",".join([*opened, *hidden])
    if current != want:
        selection.set_param("sections", want)


def render(db: str, token: tuple) -> None:
    """Draw the Charts view."""
    run_ids = widgets.run_picker(db, token, label="Runs", key="charts_runs")
    if not run_ids:
        st.info("Select runs here or in the Runs view to draw their curves.")
        return
    keys = data.metric_keys(db, token, tuple(run_ids))
    if not keys:
        st.info("These runs logged no metrics yet.")
        return
    ws = selection.workspace()
    panels, opts = _controls(db, token, run_ids, keys, ws)
    if not panels:
        st.info("No panel matches the search.")
        return
    if len(run_ids) > len(workspace.palette.PALETTE) and not opts.group:
        st.caption(f"{len(run_ids)} runs share {len(workspace.palette.PALETTE)} distinct colours: "
                   "group them (Group runs by) for one line per group.")
    labels = widgets.run_labels(db, token)
    sections = workspace.layout(panels)

    def _draw(db_: str, token_: tuple) -> None:
        ctx = workspace.context(db_, token_, run_ids) if opts.x == "step" else None
        if opts.x != "step":
            st.caption("Resumes, anomaly ranges and checkpoints are marked on the step axis.")
        opened: list[str] = []
        for name in sections:
            _synced(f"charts_sec:{name}",
                    name in ws.sections if ws.sections is not None else workspace.default_open(name))
            if st.session_state[f"charts_sec:{name}"]:
                opened.append(name)
        wanted = [k for name in opened for panel in sections[name] for k in panel]
        fetched = workspace.fetch_curves(db_, token_, run_ids, wanted, opts) if wanted else {}
        for name, members in sections.items():
            # the label stays fixed: a changed label is a new widget, whose state resets
            box = st.expander(widgets.escape_md(name), key=f"charts_sec:{name}", on_change="rerun")
            if not box.open:
                continue
            with box:
                cols = st.columns(2)
                for i, panel in enumerate(members):
                    with cols[i % 2]:
                        _panel(db_, token_, run_ids, panel, labels, opts, ctx, fetched)
        _write_sections(list(sections), opened)

    widgets.live(db, _draw)


def _panel(db, token, run_ids, panel, labels, opts, ctx, fetched) -> None:
    st.markdown(f"**{widgets.escape_md(' + '.join(panel))}**")
    spec, captions = workspace.panel_chart(db, token, run_ids, panel, labels, opts, ctx, fetched)
    if spec is not None:
        st.vega_lite_chart(spec)
    for text in captions:
        st.caption(widgets.escape_md(text))
