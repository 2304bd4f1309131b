"""The runlake dashboard: a Streamlit app over the store, started by ``runlake ui``.

``app.py`` is the entry script; one module per view (``view_runs``, ``view_charts``,
``view_media``, ``view_compare``, ``view_anomalies``, ``view_lineage``, ``view_logs``,
``view_sql``) draws that view from ``runlake.analysis`` results; ``data`` holds the
short-lived, cached store access and ``selection`` the state shared between views (session
state and URL). Importing this package is light: Streamlit loads only when the app runs.
"""

from __future__ import annotations

from pathlib import Path as _Path

__all__ = ["APP"]

APP = _Path(__file__).with_name("app.py")
"""The entry script to pass to ``streamlit run``."""
