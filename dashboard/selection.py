"""What the user is looking at: the view, the selected runs, the chart focus.

The selection lives in ``st.session_state`` (so widgets keep it while moving between
views) and is mirrored into the URL query parameters (so a link reproduces the view):

    ?view=charts&runs=<id>,<id>&key=loss&x=step&from=100&to=400

Every view reads and writes the selection through this module only.
"""

from __future__ import annotations

from typing import Iterable

import streamlit as st

__all__ = [
    "VIEWS",
    "chart_params",
    "focus",
    "init_selection",
    "open_chart",
    "selected_runs",
    "set_selected_runs",
    "set_view",
    "view_url",
]

VIEWS: dict[str, str] = {
    "runs": "Runs",
    "charts": "Charts",
    "compare": "Compare",
    "anomalies": "Anomalies",
    "lineage": "Lineage",
    "logs": "Logs",
    "sql": "SQL",
}
"""URL name → title, in navigation order."""

_RUNS = "rl_selected_runs"


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def init_selection() -> str:
    """Load the selection from the URL on the first run of a session; return the view.

    An unknown ``?view=`` falls back to the Runs view (and the URL is corrected).
    """
    params = st.query_params
    if _RUNS not in st.session_state:
        st.session_state[_RUNS] = _split(params.get("runs"))
    view = params.get("view", "runs")
    if view not in VIEWS:
        view = "runs"
        params["view"] = view
    return view


def selected_runs() -> list[str]:
    """The run ids selected for comparison, in selection order."""
    return list(st.session_state.get(_RUNS, []))


def set_selected_runs(run_ids: Iterable[str]) -> None:
    """Replace the selection (session state and the ``runs`` query parameter)."""
    ids = list(dict.fromkeys(run_ids))
    st.session_state[_RUNS] = ids
    if ids:
        st.query_params["runs"] = ",".join(ids)
    elif "runs" in st.query_params:
        del st.query_params["runs"]


def set_view(view: str) -> None:
    """Switch the view in the URL (the caller reruns)."""
    st.query_params["view"] = view


def focus() -> dict[str, str]:
    """Chart focus from the URL: ``key``, ``x``, ``from``, ``to`` (absent ones omitted)."""
    return {k: st.query_params[k] for k in ("key", "x", "from", "to") if k in st.query_params}


def chart_params(
    run_ids: Iterable[str], key: str, step_from: int | None = None, step_to: int | None = None
) -> dict[str, str]:
    """Query parameters that open the Charts view on these runs, key and step range."""
    params = {"view": "charts", "runs": ",".join(run_ids), "key": key, "x": "step"}
    if step_from is not None:
        params["from"] = str(int(step_from))
    if step_to is not None:
        params["to"] = str(int(step_to))
    return params


def view_url(params: dict[str, str]) -> str:
    """A relative URL (``?a=b&...``) for these query parameters."""
    from urllib.parse import urlencode

    return "?" + urlencode(params)


def open_chart(
    run_ids: Iterable[str], key: str, step_from: int | None = None, step_to: int | None = None
) -> None:
    """Jump to the Charts view focused on ``key`` over ``[step_from, step_to]``; reruns."""
    params = chart_params(list(run_ids), key, step_from, step_to)
    st.session_state[_RUNS] = _split(params["runs"])
    st.query_params.clear()
    st.query_params.update(params)
    st.rerun()
