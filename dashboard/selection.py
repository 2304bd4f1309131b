"""What the user is looking at: the view, the selected runs, the chart focus.

The selection lives in ``st.session_state`` (so widgets keep it while moving between
views) and is mirrored into the URL query parameters (so a link reproduces the view):

    ?view=charts&runs=<id>,<id>&key=loss&x=step&from=100&to=400

Every view reads and writes the selection through this module only.

The URL is user input (a link can be edited or forged), so it is parsed here, once, into
checked values: an unknown view, a refresh interval or x axis that is not offered, a step
that is not an integer a browser can hold (``inf``, ``1e400``, ``nan``, ``10**400``,
text), or a ``from`` after ``to`` is dropped from the URL and reported by
:func:`url_notices`, never passed on to a widget or a query.
"""

from __future__ import annotations

from typing import Iterable

import math
import re

import streamlit as st

__all__ = [
    "MAX_STEP",
    "REFRESH_CHOICES",
    "VIEWS",
    "X_AXES",
    "chart_params",
    "focus",
    "init_selection",
    "open_chart",
    "parse_step",
    "refresh_label",
    "selected_runs",
    "set_selected_runs",
    "set_view",
    "unknown_runs",
    "url_notices",
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

X_AXES = ("step", "time", "epoch")
"""The Charts view's x axes (``?x=``)."""

REFRESH_CHOICES: dict[str, float | None] = {
    "off": None, "1 s": 1.0, "2 s": 2.0, "5 s": 5.0, "10 s": 10.0}
"""Live refresh label → seconds (``?refresh=off`` or ``?refresh=5``)."""
DEFAULT_REFRESH = "2 s"

MAX_STEP = 2**53 - 1
"""Largest |step| a URL may focus on: what a browser number input holds exactly
(JavaScript's ``Number.MAX_SAFE_INTEGER``)."""

_RUNS = "rl_selected_runs"
_NOTICES = "rl_url_notices"
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_DECIMAL = re.compile(r"[+-]?[0-9]{1,20}(\.0*)?([eE][+]?[0-9]{1,2})?")


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


def parse_step(text: str) -> int:
    """A step from the URL: a decimal integer (``1200``, ``-3``, ``1.2e3``) with
    ``|step| <= MAX_STEP``.

    Raises:
        ValueError: anything else (``inf``, ``nan``, ``1e400``, ``10**400``, text); the
            message says what was expected.
    """
    value = str(text).strip()
    number: int | None = None
    if _INTEGER.fullmatch(value):
        number = int(value)
    elif _DECIMAL.fullmatch(value):
        as_float = float(value)
        if math.isfinite(as_float) and as_float.is_integer():
            number = int(as_float)
    if number is None or abs(number) > MAX_STEP:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ValueError(f"expected an integer step within ±{MAX_STEP}, got {shown!r}")
    return number


def refresh_label(text: str | None) -> str | None:
    """The :data:`REFRESH_CHOICES` label that ``?refresh=`` names (``off``, ``5``, ``5 s``),
    or None when it names none."""
    for label in REFRESH_CHOICES:
        if text in (label, label.split()[0]):
            return label
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _check_url() -> list[str]:
    """Drop every malformed parameter from the URL; one notice per dropped one."""
    params = st.query_params
    notices = []
    view = params.get("view")
    if view is not None and view not in VIEWS:
        notices.append(f"?view={_shown(view)} is not a view ({', '.join(VIEWS)}); showing Runs.")
        params["view"] = "runs"
    refresh = params.get("refresh")
    if refresh is not None and refresh_label(refresh) is None:
        notices.append(f"?refresh={_shown(refresh)} is not offered "
                       f"({', '.join(REFRESH_CHOICES)}); using {DEFAULT_REFRESH}.")
        del params["refresh"]
    x = params.get("x")
    if x is not None and x not in X_AXES:
        notices.append(f"?x={_shown(x)} is not an x axis ({', '.join(X_AXES)}); using step.")
        del params["x"]
    steps = {}
    for name in ("from", "to"):
        if name in params:
            try:
                steps[name] = parse_step(params[name])
            except ValueError as exc:
                notices.append(f"?{name}= ignored: {exc}.")
                del params[name]
    if len(steps) == 2 and steps["from"] > steps["to"]:
        notices.append(f"?from={steps['from']} is after ?to={steps['to']}; both ignored.")
        del params["from"], params["to"]
    return notices


def init_selection() -> str:
    """Check the URL, load the selection from it on the first run of a session; return
    the view.

    Malformed parameters are dropped from the URL (an unknown ``?view=`` falls back to
    the Runs view) and reported once by :func:`url_notices`.
    """
    params = st.query_params
    st.session_state[_NOTICES] = _check_url()
    if _RUNS not in st.session_state:
        st.session_state[_RUNS] = _split(params.get("runs"))
    return params.get("view", "runs")


def url_notices() -> list[str]:
    """What :func:`init_selection` dropped from the URL in this script run (plain text)."""
    return list(st.session_state.get(_NOTICES, []))


def unknown_runs(known: Iterable[str]) -> list[str]:
    """Drop selected run ids that are not in ``known`` (from a URL or a store that lost
    them); returns the dropped ids."""
    known = set(known)
    chosen = selected_runs()
    dropped = [r for r in chosen if r not in known]
    if dropped:
        set_selected_runs([r for r in chosen if r in known])
    return dropped


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


def focus() -> dict[str, str | int]:
    """Chart focus from the URL: ``key`` and ``x`` (str), ``from`` and ``to`` (int steps);
    absent or malformed ones omitted (:func:`init_selection` dropped those)."""
    params = st.query_params
    out: dict[str, str | int] = {}
    if "key" in params:
        out["key"] = params["key"]
    if params.get("x") in X_AXES:
        out["x"] = params["x"]
    for name in ("from", "to"):
        if name in params:
            try:
                out[name] = parse_step(params[name])
            except ValueError:
                pass  # reported by init_selection
    return out


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
