"""``python -m runlake.dashboard._serve run app.py ...``: ``streamlit run`` with the
dashboard's imports warmed while the server starts.

Why: Streamlit runs the app script only when the first browser session connects, so that
first run paid for importing pandas, pyarrow, polars, DuckDB, Altair and the analysis
modules (about 2 s of CPU on a 2-core VM; pandas alone comes with the first
``st.dataframe``) while the page showed its empty skeleton (docs/performance.md,
"Dashboard: first page load"). This launcher imports them in a daemon thread once the
server is up and until a browser connects (two threads busy at once slowed both), so a
browser that connects a moment later finds them loaded; it also makes Streamlit's
one-time checks of a first element (an ``inspect.stack()`` that costs 0.2 s with these
modules loaded) and reads the Runs view's data into its caches (``view_runs.prefetch``),
the page every visit lands on. The arguments are exactly ``streamlit``'s;
``runlake ui`` execs this module with the argv of ``runlake.cli._ui.streamlit_command``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from typing import Callable

__all__ = ["LANDING_MODULES", "WARM_MODULES", "main", "prime", "warm"]

LANDING_MODULES = (
    "pyarrow", "pandas", "polars", "duckdb", "runlake.store.duck",
    "runlake.analysis.runs", "runlake.analysis.compare",
    "runlake.dashboard.data", "runlake.dashboard.widgets", "runlake.dashboard.selection",
    "runlake.dashboard.runs_table", "runlake.dashboard.view_runs",
)
"""What the Runs view (where every visit lands) imports: warmed first, then primed."""

WARM_MODULES = LANDING_MODULES + (
    "altair", "runlake.analysis.anomalies", "runlake.analysis.curves",
    "runlake.analysis.lineage", "runlake.analysis.sql",
    "runlake.dashboard.view_charts", "runlake.dashboard.view_compare",
    "runlake.dashboard.view_anomalies", "runlake.dashboard.view_lineage",
    "runlake.dashboard.view_logs", "runlake.dashboard.view_sql",
    "runlake.dashboard.view_params", "runlake.analysis.media", "runlake.dashboard.view_media",
)
"""Everything the app's views import: the landing view's first, the other views' after."""


def warm(modules: tuple[str, ...] = WARM_MODULES,
         stop: Callable[[], bool] = lambda: False) -> list[str]:
    """Import ``modules`` until ``stop()`` says so; returns those that failed (a failure
    only costs the warm-up: the app imports the module again and shows its own error)."""
    failed = []
    for name in modules:
        if stop():
            break
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - warm-up is best effort by design
            failed.append(name)
    return failed


def prime(script_args: list[str]) -> None:
    """Streamlit's once-per-process first-element check, then the landing view's reads.

    Best effort: a store that is missing or busy is left to the app, which reports it.
    """
    from streamlit import delta_generator

    getattr(delta_generator, "_maybe_print_use_warning", lambda: None)()
    from runlake.dashboard import data, view_runs

    db = str(data.store_path(script_args))
    try:
        token = data.change_token(db)
        if token != data.MISSING_STORE:
            view_runs.prefetch(db, token)
    except Exception as exc:  # noqa: BLE001 - the app shows the same error on its first run
        logging.getLogger(__name__).debug("warm-up read of %s skipped: %s", db, exc)


def _warm_when_serving(script_args: list[str], poll_s: float = 0.05,
                       give_up_s: float = 120.0) -> None:
    """Wait until Streamlit's runtime has started (the server listens), then :func:`warm`
    and :func:`prime`, stopping as soon as a browser connects: from then on the session's
    own script run imports what it needs, and a second thread busy importing would only
    slow the server's event loop (Python's GIL) while it sends the page's files."""
    import time

    from streamlit.runtime import Runtime, RuntimeState

    def session_connected() -> bool:
        return Runtime.instance().state != RuntimeState.NO_SESSIONS_CONNECTED

    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state != RuntimeState.INITIAL:
            if session_connected():
                return
            if not warm(LANDING_MODULES, stop=session_connected) and not session_connected():
                prime(script_args)
            warm(WARM_MODULES[len(LANDING_MODULES):], stop=session_connected)
            return
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> None:
    """Start the warm-up thread, then run Streamlit's command line with ``argv``."""
    argv = sys.argv[1:] if argv is None else argv
    script_args = argv[argv.index("--") + 1:] if "--" in argv else []
    threading.Thread(target=_warm_when_serving, args=(script_args,), name="runlake-warm-imports",
                     daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", *argv]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
