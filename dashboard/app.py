"""The runlake Streamlit app: entry script for ``runlake ui``.

Run it with ``runlake ui`` (or ``streamlit run dashboard/app.py -- --db PATH``). The store
comes from ``--db`` after ``--``, else ``$RUNLAKE_DB``, else ``<$RUNLAKE_DIR or
./runlake-data>/runlake.duckdb``. Each view is reachable by URL (``?view=charts``); the app
only reads the store, through short-lived read-only connections, so ingest keeps writing
while it is open.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import streamlit as st

from runlake.dashboard import data, selection
from runlake.schemas.errors import RunlakeError
from runlake.schemas.segments import default_db

REFRESH_CHOICES = {"off": None, "1 s": 1.0, "2 s": 2.0, "5 s": 5.0, "10 s": 10.0}
DEFAULT_REFRESH = "2 s"


def store_path(argv: list[str] | None = None) -> Path:
    """The store file from ``--db`` (script arguments), ``$RUNLAKE_DB`` or the default."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    parser.add_argument("--root")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.db:
        return Path(args.db)
    if os.environ.get("RUNLAKE_DB"):
        return Path(os.environ["RUNLAKE_DB"])
    return default_db(args.root)


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
    wanted = st.query_params.get("refresh", "")
    for label in REFRESH_CHOICES:
        if wanted in (label, label.split()[0]):
            return label
    return DEFAULT_REFRESH


def _sidebar_status(db: Path) -> float | None:
    choices = list(REFRESH_CHOICES)
    picked = st.sidebar.selectbox(
        "Live refresh", choices, index=choices.index(_refresh_from_url()), key="rl_refresh",
        help="How often live parts (runs table, charts) check the store for new data.",
    )
    st.sidebar.caption(f"Store: `{db}`")
    chosen = selection.selected_runs()
    if chosen:
        st.sidebar.caption(f"{len(chosen)} run(s) selected")
    return REFRESH_CHOICES[picked]


def main() -> None:
    st.set_page_config(page_title="runlake", layout="wide")
    db = store_path()
    view = _navigation(selection.init_selection())
    refresh = _sidebar_status(db)
    st.session_state["rl_refresh_s"] = refresh
    st.title(selection.VIEWS[view])
    try:
        token = data.change_token(db)
    except RunlakeError as exc:
        st.error(str(exc))
        return
    if token == data.MISSING_STORE:
        st.info(
            f"No store at `{db}` yet. Run `runlake ingest` (or `runlake ingest --watch`) and "
            f"this page picks it up."
        )
        _wait_for_store(db, refresh)
        return
    module = importlib.import_module(f"runlake.dashboard.view_{view}")
    try:
        module.render(str(db), token)
    except RunlakeError as exc:
        st.error(str(exc))


def _wait_for_store(db: Path, refresh: float | None) -> None:
    @st.fragment(run_every=refresh or 2.0)
    def _poll() -> None:
        if data.change_token(db) != data.MISSING_STORE:
            st.rerun(scope="app")

    _poll()


main()
