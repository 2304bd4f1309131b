"""Runs view: every run with status, heartbeat age, progress, config values and metrics.

Runs are selected by ticking table rows (the selection is the one of ``selection``: in
the session and the URL, read by Charts, Compare, Lineage, Logs and Hyperparameters).
Config columns whose values differ between the shown runs are on by default; any config
value or metric summary (last, min, max of a key) can be a column, a sort key or a filter,
and the table can be grouped by run group or a config value (one collapsible table per
group). Sort, filters, grouping and columns live in the URL (``?sort=-train/loss:min``,
``?filter=cfg:lr>=0.01,status=finished``, ``?group=model.width`` (the Charts view's
grouping too), ``?cols=...``; names in ``runs_table``).

Live: a tiny fragment checks the change token every refresh interval and reruns the page
only when new data arrived (or, with running runs shown, every 30 s so heartbeat ages and
the ``silent`` flag move on); an idle tick costs two ``stat`` calls and sends nothing.
"""

from __future__ import annotations

import hashlib
import time

import polars as pl
import streamlit as st

from runlake.dashboard import data, runs_table, selection, widgets

__all__ = ["MAX_GROUPS", "filter_runs", "prefetch", "render", "status_text"]

TITLE = "Runs"
MAX_GROUPS = 40
"""Groups drawn as tables; more are listed as a notice (filter to see them)."""
AGE_REFRESH_S = 30.0
KEY_RUNS = 100


def status_text(status: str, age_s: float | None, heartbeat_s: float | None = None) -> str:
    """``running · 4s ago``; a running run silent for long is flagged ``silent``."""
    if status != "running":
        return status
    if age_s is None:
        return "running"
    limit = max(3 * (heartbeat_s or 10.0), 60.0)
    if age_s > limit:
        return f"running? silent {widgets.human_duration(age_s)}"
    return f"running · {widgets.human_duration(age_s)} ago"


def filter_runs(runs: pl.DataFrame, *, projects=(), statuses=(), tags=(), text: str = ""
                ) -> pl.DataFrame:
    """Keep runs matching every given filter (each list: any of its values).

    ``text`` matches run id, name, group or project, case-insensitively.
    """
    out = runs
    if projects:
        out = out.filter(pl.col("project").is_in(list(projects)))
    if statuses:
        out = out.filter(pl.col("status").is_in(list(statuses)))
    if tags:
        out = out.filter(
            pl.col("tags").list.eval(pl.element().is_in(list(tags))).list.any().fill_null(False))
    if text:
        hay = pl.concat_str(
            [pl.col(c).cast(pl.String).fill_null("") for c in ("run_id", "name", "group_name", "project")],
            separator=" ").str.to_lowercase()
        out = out.filter(hay.str.contains(text.lower(), literal=True))
    return out


def prefetch(db: str, token: tuple) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """The store reads the Runs view's first draw needs, through the token-keyed caches.

    ``render`` starts with it; the launcher (``runlake.dashboard._serve``) calls it once
    before any browser connects. Returns ``(runs, config frame, metric keys)``: the keys offered
    as columns are those of the :data:`KEY_RUNS` newest runs (a ``DISTINCT key`` over every
    point costs seconds on 200M points; any other key can still be named in ``?cols=``).
    No metric is summarised until a column, sort or filter asks for it.
    """
    runs, _, configs, keys = data.runs_view_data(db, token, KEY_RUNS)
    return runs, configs, keys


def _seed(params: dict, config_options: list[str], differing: list[str]) -> list[str]:
    """Seed the controls from the URL (or the defaults) on the session's first draw;
    returns a notice per URL value that names no column."""
    if "runs_cfg" in st.session_state:
        return []
    notices = []
    cfg = runs_table.CONFIG
    cols = params.get("cols")
    if cols is None:
        st.session_state["runs_cfg"], st.session_state["runs_metrics"] = differing, []
    else:
        bad = [c for c in cols if not runs_table.metric_spec(c)
               and not (c.startswith(cfg) and c[len(cfg):] in config_options)]
        if bad:
            notices.append(f"?cols= names no column {', '.join(map(repr, bad[:5]))}; ignored.")
        st.session_state["runs_cfg"] = [c[len(cfg):] for c in cols
                                        if c.startswith(cfg) and c[len(cfg):] in config_options]
        st.session_state["runs_metrics"] = [c for c in cols if runs_table.metric_spec(c)]
    st.session_state["runs_filter"] = ", ".join(f"{f}{o}{v}" for f, o, v in params.get("filter", []))
    sort, descending = params.get("sort", (None, False))
    st.session_state["runs_sort"], st.session_state["runs_desc"] = sort, descending
    group = params.get("group")
    if group is not None:  # the Charts view's spelling too: "group" or a config key
        group = "group" if selection.GROUP_ALIASES.get(group, group) == "group" else \
            group if group.startswith(cfg) else cfg + group
    st.session_state["runs_group"] = group
    return notices


def _filters(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    out, notices = [], []
    for part in [p.strip() for p in text.split(",") if p.strip()][:selection.MAX_FIELDS]:
        try:
            out.append(selection.parse_filter(part))
        except ValueError as exc:
            notices.append(f"Filter {part!r} ignored: {exc}.")
    return out, notices


def _controls(params: dict, configs: pl.DataFrame, keys: list[str], ids: list[str]) -> tuple[dict, list[str]]:
    """Columns, sort, grouping and filters (seeded from the URL, written back to it)."""
    config_options = [c[len(runs_table.CONFIG):] for c in configs.columns if c != "run_id"]
    differing = runs_table.differing_keys(configs, ids)
    notices = _seed(params, config_options, differing)
    filters, more = _filters(st.session_state.get("runs_filter", ""))
    notices += more
    named = [*st.session_state["runs_metrics"], *(f for f, _, _ in filters),
             st.session_state.get("runs_sort") or ""]
    extra_keys = [runs_table.metric_spec(n)[0] for n in named if runs_table.metric_spec(n)]
    metric_options = [f"{k}:{s}" for k in dict.fromkeys([*keys, *extra_keys]) for s in data.SUMMARIES]
    sortable = [*runs_table.BUILTIN, *(runs_table.CONFIG + k for k in config_options), *metric_options]
    group_options = ["group", *(runs_table.CONFIG + k for k in config_options)]
    for key, options, what in (("runs_sort", sortable, "sorted by start time"),
                               ("runs_group", group_options, "not grouped")):
        value = st.session_state.get(key)
        if value is not None and value not in options:
            notices.append(f"?{key[5:]}= names no column {value!r}; {what}.")
            st.session_state[key] = None
    with st.expander("Columns, sort, filter and grouping", expanded=bool(params)):
        c5, c6 = st.columns(2)
        config_keys = c5.multiselect("Config columns", config_options, key="runs_cfg",
                                     help="By default the keys whose values differ between the shown runs.")
        metric_cols = c6.multiselect("Metric columns (last / min / max of a key)", metric_options,
                                     key="runs_metrics")
        c7, c8, c9 = st.columns([2, 2, 3])
        sort = c7.selectbox("Sort by", sortable, key="runs_sort", placeholder="start time (newest first)")
        descending = c7.checkbox("Descending", key="runs_desc")
        group_by = c8.selectbox("Group by", group_options, key="runs_group", placeholder="no grouping")
        c9.text_input("Filter", key="runs_filter", placeholder="cfg:lr>=0.01, train/loss:min<0.5",
                      help="Comma-separated FIELD OP VALUE; OP is one of = != < <= > >= ~ "
                           "(~: contains, any case). FIELD is a column name.")
    _write_url(config_keys, metric_cols, sort, descending, group_by, filters, differing)
    return {"config_options": config_options, "metric_options": metric_options,
            "config_keys": config_keys, "metric_cols": metric_cols, "sort": sort,
            "descending": descending, "group_by": group_by, "filters": filters}, notices


def _write_url(config_keys, metric_cols, sort, descending, group_by, filters, differing) -> None:
    """Mirror the controls into the URL, so the link reproduces the table."""
    wanted = {
        "sort": None if sort is None else ("-" if descending else "") + sort,
        "group": None if group_by is None else group_by.removeprefix(runs_table.CONFIG),
        "filter": ",".join(f"{f}{o}{v}" for f, o, v in filters) or None,
        "cols": None if (list(config_keys) == differing and not metric_cols) else
        ",".join([*(runs_table.CONFIG + k for k in config_keys), *metric_cols]),
    }
    for name, value in wanted.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != value:
            st.query_params[name] = value


def _table_key(base: str, ids: list[str], chosen: set[str]) -> tuple[str, list[int]]:
    """The widget key of one table and the rows to tick in it.

    The key changes with the rows shown (positions would point at other runs) and when the
    selection changed elsewhere (a new widget starts from the current selection); ticking
    a row keeps the key, so the table keeps its scroll position.
    """
    digest = hashlib.blake2b("\n".join(ids).encode(), digest_size=8).hexdigest()
    rows = [i for i, r in enumerate(ids) if r in chosen]
    seen, gen = f"{base}__{digest}__seen", f"{base}__gen"
    if st.session_state.get(seen) != rows:
        st.session_state[gen] = st.session_state.get(gen, 0) + 1
        st.session_state[seen] = rows
    return f"{base}_{digest}_{st.session_state[gen]}", rows


def _ticked(key: str, ids: list[str], state) -> None:
    """Merge the rows ticked in one table into the selection (runs not in it are kept)."""
    picked = [ids[i] for i in state.selection.rows if 0 <= i < len(ids)]
    shown = set(ids)
    current = selection.selected_runs()
    new = [r for r in current if r not in shown or r in picked]
    new += [r for r in picked if r not in new]
    if new != current:
        selection.set_selected_runs(new)
        digest = key.split("_")[-2]
        base = key.rsplit("_", 2)[0]
        st.session_state[f"{base}__{digest}__seen"] = sorted(ids.index(r) for r in set(picked))
        st.rerun()


def _draw_table(frame: pl.DataFrame, base: str, chosen: set[str], height: int | None = None) -> None:
    ids = frame["run_id"].to_list()
    key, rows = _table_key(base, ids, chosen)
    order = [c for c in runs_table.BUILTIN[:-2] if c in frame.columns]
    order += [c for c in frame.columns if c not in runs_table.BUILTIN]
    order += ["started", "duration_s", "run_id"]
    state = st.dataframe(
        frame, hide_index=True, key=key, on_select="rerun", selection_mode="multi-row",
        selection_default={"selection": {"rows": rows}} if rows else None,
        column_order=[c for c in order if c in frame.columns], height=height or "auto",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
            "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
        })
    if sorted(state.selection.rows) != rows:
        _ticked(key, ids, state)


def _watch(db: str, token: tuple, running: bool) -> None:
    """Rerun the page when new data arrived (or every 30 s while runs are running)."""
    every = st.session_state.get("rl_refresh_s")
    if not every:
        return
    drawn = time.monotonic()

    @st.fragment(run_every=every)
    def _poll() -> None:
        if data.change_token(db) != token or (running and time.monotonic() - drawn > AGE_REFRESH_S):
            st.rerun(scope="app")

    _poll()


def render(db: str, token: tuple) -> None:
    """Draw the Runs view."""
    params, notices = selection.runs_view_params()
    runs, configs, keys = prefetch(db, token)
    if runs.height == 0:
        st.info("No runs in the store yet. Start a run with `runlake.init(...)` and ingest it.")
        _watch(db, token, False)
        return
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    projects = c1.multiselect("Project", sorted(runs["project"].unique().to_list()), key="runs_project")
    statuses = c2.multiselect("Status", sorted(runs["status"].unique().to_list()), key="runs_status")
    tags = c3.multiselect("Tag", sorted({t for ts in runs["tags"].to_list() if ts for t in ts}),
                          key="runs_tags")
    text = c4.text_input("Search", key="runs_text", placeholder="name, id, group or project")
    shown = filter_runs(runs, projects=projects, statuses=statuses, tags=tags, text=text)
    ids = shown["run_id"].to_list()

    ctl, more = _controls(params, configs, keys, ids)
    notices += more
    config_options, metric_options = ctl["config_options"], ctl["metric_options"]
    config_keys, metric_cols, filters = ctl["config_keys"], ctl["metric_cols"], ctl["filters"]
    sort_pick, descending, group_by = ctl["sort"], ctl["descending"], ctl["group_by"]
    spec, cfg = runs_table.metric_spec, runs_table.CONFIG
    named = [f for f, _, _ in filters] + [c for c in (sort_pick, group_by) if c]
    wanted_metrics = list(dict.fromkeys(
        [*metric_cols, *(n for n in named if spec(n) and n in metric_options)]))
    wanted_cfg = list(dict.fromkeys(
        [*config_keys, *(n[len(cfg):] for n in named if n.startswith(cfg) and n[len(cfg):] in config_options)]))
    wanted_keys = tuple(dict.fromkeys(spec(c)[0] for c in wanted_metrics))
    summaries = data.metric_summaries(  # only the shown runs when filters narrowed them
        db, token, wanted_keys, tuple(ids) if len(ids) < runs.height else None)
    logged = set(summaries["key"].unique().to_list())
    notices += [f"No run logged the metric {k!r}: its columns are empty." for k in wanted_keys
                if k not in logged]
    frame = runs_table.table_frame(shown, configs, wanted_cfg, summaries, wanted_metrics,
                                   widgets.utcnow(), status_text)
    frame, more = runs_table.apply_filters(frame, filters)
    notices += more
    frame, _ = runs_table.sort_frame(frame, sort_pick, descending)
    hidden = [c for c in frame.columns if c not in named and (
        (c.startswith(cfg) and c[len(cfg):] not in config_keys) or (spec(c) and c not in metric_cols))]
    for notice in notices:
        st.warning(widgets.escape_md(notice), icon="⚠️")

    chosen = set(selection.selected_runs())
    st.caption(f"{frame.height} of {runs.height} runs · {len(chosen)} selected (tick rows to select)")
    display = frame.drop(hidden)
    if group_by:
        parts = runs_table.groups(display, "group" if group_by == "group" else group_by)
        if len(parts) > MAX_GROUPS:
            st.info(f"{len(parts)} groups; the first {MAX_GROUPS} are shown (filter to narrow).")
        for i, (label, part) in enumerate(parts[:MAX_GROUPS]):
            n_sel = sum(r in chosen for r in part["run_id"].to_list())
            with st.expander(f"{widgets.escape_md(label)} — {part.height} runs"
                             + (f", {n_sel} selected" if n_sel else ""), expanded=False):
                _draw_table(part, f"runs_table_g{i}", chosen)
    else:
        _draw_table(display, "runs_table", chosen)
    _actions(chosen)
    _watch(db, token, bool((shown["status"] == "running").any()))


def _actions(chosen: set[str]) -> None:
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Clear selection", disabled=not chosen, key="runs_clear"):
        selection.set_selected_runs([])
        st.rerun()
    if b2.button("Open charts", disabled=not chosen, key="runs_open_charts"):
        selection.set_view("charts")
        st.rerun()
    if b3.button("Compare", disabled=len(chosen) < 2, key="runs_open_compare"):
        selection.set_view("compare")
        st.rerun()
    if b4.button("Hyperparameters", disabled=len(chosen) < 2, key="runs_open_params"):
        selection.set_view("params")
        st.rerun()
