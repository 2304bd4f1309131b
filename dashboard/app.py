"""The runlake Streamlit app: entry script for ``runlake ui``.

Run it with ``runlake ui`` (or ``streamlit run dashboard/app.py -- --db PATH``, which reads
``dashboard/.streamlit/config.toml``: loopback only, no usage statistics; a server bound
beyond loopback anyway shows a refusal, never the store: see ``exposure``). The store
comes from ``--db`` after ``--``, else ``$RUNLAKE_DB``, else ``<$RUNLAKE_DIR or
./runlake-data>/runlake.duckdb``. Each view is reachable by URL (``?view=charts``); the app
only reads the store, through short-lived read-only connections, so ingest keeps writing
while it is open.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import streamlit as st

from runlake.dashboard import data, exposure, selection
from runlake.dashboard.widgets import escape_md
from runlake.schemas.errors import RunlakeError

REFRESH_CHOICES = selection.REFRESH_CHOICES


def _navigation(view: str) -> str:
    """Sidebar radio synced with ``?view=``; returns the view to show."""
    names = list(selection.VIEWS)
    if st.session_state.get("rl_nav") != view:
        st.session_state["rl_nav"] = view

    def _moved() -> None:
        selection.set_view(st.session_state["rl_nav"])

    st.sidebar.radio(
        "View",
        names,
        key="rl_nav",
        format_func=selection.VIEWS.__getitem__,
        on_change=_moved,
    )
    return st.session_state["rl_nav"]


def _refresh_from_url() -> str:
    """``?refresh=off`` or ``?refresh=5`` picks the initial live refresh interval."""
    return selection.refresh_label(st.query_params.get("refresh")) or selection.DEFAULT_REFRESH


def _sidebar_status(db: Path) -> float | None:
    choices = list(REFRESH_CHOICES)
    picked = st.sidebar.selectbox(
        "Live refresh", choices, index=choices.index(_refresh_from_url()), key="rl_refresh",
        help="How often live parts (runs table, charts) check the store for new data.",
    )
    st.sidebar.caption(f"Store: {escape_md(db)}")
    chosen = selection.selected_runs()
    if chosen:
        st.sidebar.caption(f"{len(chosen)} run(s) selected")
    return REFRESH_CHOICES[picked]


def _refuse_if_exposed() -> None:
    """Stop here, showing why, when this server listens beyond loopback unintended.

    Only a real server is checked: bare ``python app.py`` has no runtime, and AppTest's is
    a stand-in (a mock of ``Runtime``); neither listens anywhere. See
    ``runlake.dashboard.exposure``.
    """
    from streamlit.runtime import Runtime

    if not Runtime.exists() or type(Runtime.instance()) is not Runtime:
        return
    problem = exposure.exposure_problem(st.get_option("server.address"),
                                        allow_remote=data.script_args().allow_remote)
    if problem:
        st.error(problem)
        st.stop()
    if st.get_option("browser.gatherUsageStats"):
        st.sidebar.warning("Streamlit usage statistics are on for this server "
                           "(`--browser.gatherUsageStats false` turns them off).")


def main() -> None:
    st.set_page_config(page_title="runlake", layout="wide")
    _refuse_if_exposed()
    db = data.store_path()
    view = _navigation(selection.init_selection())
    refresh = _sidebar_status(db)
    st.session_state["rl_refresh_s"] = refresh
    st.title(selection.VIEWS[view])
    notices = selection.url_notices()
    try:
        token = data.change_token(db)
    except RunlakeError as exc:
        st.error(escape_md(exc))
        return
    if token != data.MISSING_STORE and selection.selected_runs():
        dropped = selection.unknown_runs(data.run_index(db, token)["run_id"].to_list())
        if dropped:
            shown = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
            notices.append(f"?runs= named {len(dropped)} run id(s) not in the store, ignored: {shown}")
    for notice in notices:
        st.warning(escape_md(notice), icon="⚠️")
    if token == data.MISSING_STORE:
        st.info(
            f"No store at {escape_md(db)} yet. Run `runlake ingest` (or `runlake ingest --watch`) and "
            f"this page picks it up."
        )
        _wait_for_store(db, refresh)
        return
    module = importlib.import_module(f"runlake.dashboard.view_{view}")
    try:
        module.render(str(db), token)
    except RunlakeError as exc:
        st.error(escape_md(exc))


def _wait_for_store(db: Path, refresh: float | None) -> None:
    @st.fragment(run_every=refresh or 2.0)
    def _poll() -> None:
        if data.change_token(db) != data.MISSING_STORE:
            st.rerun(scope="app")

    _poll()


main()
