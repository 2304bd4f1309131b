"""What the user is looking at: the view, the selected runs, the chart focus.

The selection lives in ``st.session_state`` (so widgets keep it while moving between
views) and is mirrored into the URL query parameters (so a link reproduces the view):

    ?view=charts&runs=<id>,<id>&keys=train/loss,val/loss&x=step&from=100&to=400

Every view reads and writes the selection through this module only. The Charts
workspace's parameters (``keys``, ``sections``, ``search``, ``smooth``, ``logy``,
``group``, ``points``) are parsed into one :class:`Workspace` by :func:`workspace`; the
Media view's (``keys``, ``step``) by :func:`media_focus`.

The URL is user input (a link can be edited or forged), so it is parsed here, once, into
checked values: an unknown view, a refresh interval or x axis that is not offered, a step
that is not an integer a browser can hold (``inf``, ``1e400``, ``nan``, ``10**400``,
text), or a ``from`` after ``to`` is dropped from the URL and reported by
:func:`url_notices`, never passed on to a widget or a query. Lists are cut to a bound
(:data:`MAX_URL_RUNS` run ids, :data:`MAX_PANELS` panels) with a notice. What only the
store can check (an unknown run id, metric key or group key) the view reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import math
import re

import streamlit as st

__all__ = [
    "FILTER_OPS",
    "GROUP_ALIASES",
    "MAX_FIELDS",
    "MAX_PANELS",
    "MAX_PANEL_KEYS",
    "MAX_SQL_CHARS",
    "MAX_STEP",
    "MAX_URL_RUNS",
    "POINTS_RANGE",
    "REFRESH_CHOICES",
    "SMOOTH_MAX",
    "SUMMARY_NAMES",
    "VIEWS",
    "Workspace",
    "X_AXES",
    "chart_params",
    "focus",
    "init_selection",
    "media_focus",
    "open_chart",
    "panel_text",
    "parse_filter",
    "parse_step",
    "refresh_label",
    "runs_view_params",
    "selected_runs",
    "set_param",
    "set_selected_runs",
    "set_view",
    "unknown_runs",
    "url_notices",
    "view_url",
    "workspace",
]

VIEWS: dict[str, str] = {
    "runs": "Runs",
    "charts": "Charts",
    "media": "Media",
    "compare": "Compare",
    "params": "Hyperparameters",
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

MAX_URL_RUNS = 1000
"""Most run ids ``?runs=`` may select (a grouped panel of 1,000 runs is the largest view
the dashboard is sized for); the rest are cut with a notice."""

MAX_PANELS = 100
"""Most panels ``?keys=`` may name."""

MAX_PANEL_KEYS = 8
"""Most keys one panel overlays (``?keys=a|b``)."""

SMOOTH_MAX = 0.99
"""Largest EMA weight ``?smooth=`` takes (W&B's slider range, 0 = raw)."""

POINTS_RANGE = (50, 20_000)
"""``?points=``: points per curve, bounds included."""

GROUP_ALIASES = {"group_name": "group"}
"""``?group=`` spellings of the run group (``runlake.analysis.groups.GROUP_KEY``)."""

_MAX_TEXT = 500  # longest key, section, search or group text taken from the URL
_PANEL_SEP = "|"

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
    if "step" in params:  # the Media view's step
        try:
            parse_step(params["step"])
        except ValueError as exc:
            notices.append(f"?step= ignored: {exc}.")
            del params["step"]
    if len(steps) == 2 and steps["from"] > steps["to"]:
        notices.append(f"?from={steps['from']} is after ?to={steps['to']}; both ignored.")
        del params["from"], params["to"]
    return notices + _check_workspace(params)


def _parse_smooth(text: str) -> float:
    value = float(text) if re.fullmatch(r"[0-9]*\.?[0-9]+", text.strip()) else math.nan
    if not 0.0 <= value <= SMOOTH_MAX:
        raise ValueError
    return value


def _parse_points(text: str) -> int:
    value = int(text) if _INTEGER.fullmatch(text.strip()) else -1
    if not POINTS_RANGE[0] <= value <= POINTS_RANGE[1]:
        raise ValueError
    return value


_FLAGS = {"1": True, "true": True, "on": True, "yes": True,
          "0": False, "false": False, "off": False, "no": False}


def _panels(text: str) -> list[tuple[str, ...]]:
    """``a,b|c`` → ``[("a",), ("b", "c")]`` (empty entries and repeats dropped)."""
    out = []
    for entry in _split(text):
        keys = tuple(dict.fromkeys(k for k in entry.split(_PANEL_SEP) if k))
        if keys and keys not in out:
            out.append(keys)
    return out


def panel_text(panels: Iterable[Iterable[str]]) -> str:
    """The ``?keys=`` value for these panels (the inverse of what :func:`workspace` reads)."""
    return ",".join(_PANEL_SEP.join(p) for p in panels)


def _check_workspace(params) -> list[str]:
    """The workspace parameters: malformed ones dropped, lists cut to their bounds."""
    notices = []
    runs = _split(params.get("runs"))
    if len(runs) > MAX_URL_RUNS:
        notices.append(f"?runs= named {len(runs)} run ids; only the first {MAX_URL_RUNS} "
                       f"are selected (group the rest in the Runs view).")
        params["runs"] = ",".join(runs[:MAX_URL_RUNS])
    if "key" in params and "keys" not in params:  # the older single-key link
        params["keys"] = params["key"]
    if "key" in params:
        del params["key"]
    for name in ("keys", "sections"):
        value = params.get(name)
        if value is not None and len(value) > MAX_PANELS * _MAX_TEXT:
            notices.append(f"?{name}= is {len(value)} characters long; ignored.")
            del params[name]
    if "keys" in params:
        panels = _panels(params["keys"])
        kept = [p[:MAX_PANEL_KEYS] for p in panels[:MAX_PANELS] if all(len(k) <= _MAX_TEXT for k in p)]
        if len(panels) > MAX_PANELS:
            notices.append(f"?keys= named {len(panels)} panels; showing the first {MAX_PANELS}.")
        if any(len(p) > MAX_PANEL_KEYS for p in panels):
            notices.append(f"?keys= overlays at most {MAX_PANEL_KEYS} keys in one panel; "
                           f"the rest were dropped.")
        if any(len(k) > _MAX_TEXT for p in panels for k in p):
            notices.append(f"?keys= named a key over {_MAX_TEXT} characters; it was dropped.")
        if kept:
            params["keys"] = panel_text(kept)
        else:
            del params["keys"]
    for name in ("search", "group"):
        if len(params.get(name) or "") > _MAX_TEXT:
            notices.append(f"?{name}= is over {_MAX_TEXT} characters; ignored.")
            del params[name]
    if "smooth" in params:
        try:
            _parse_smooth(params["smooth"])
        except ValueError:
            notices.append(f"?smooth={_shown(params['smooth'])} is not an EMA weight between 0 "
                           f"and {SMOOTH_MAX}; using 0 (no smoothing).")
            del params["smooth"]
    if "logy" in params and params["logy"].strip().lower() not in _FLAGS:
        notices.append(f"?logy={_shown(params['logy'])} is not 1 or 0; using a linear scale.")
        del params["logy"]
    if "points" in params:
        try:
            _parse_points(params["points"])
        except ValueError:
            notices.append(f"?points={_shown(params['points'])} is not an integer from "
                           f"{POINTS_RANGE[0]} to {POINTS_RANGE[1]}; using the default.")
            del params["points"]
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
    """Chart focus from the URL: ``x`` (str), ``from`` and ``to`` (int steps); absent or
    malformed ones omitted (:func:`init_selection` dropped those). The keys are in
    :func:`workspace`."""
    params = st.query_params
    out: dict[str, str | int] = {}
    if params.get("x") in X_AXES:
        out["x"] = params["x"]
    for name in ("from", "to"):
        if name in params:
            try:
                out[name] = parse_step(params[name])
            except ValueError:
                pass  # reported by init_selection
    return out


def media_focus() -> tuple[tuple[str, ...] | None, int | None]:
    """The Media view's URL: the keys ``?keys=`` names (``?key=`` too; None: absent) and
    the ``?step=`` to show (None: absent or malformed)."""
    params = st.query_params
    keys = tuple(k for p in _panels(params["keys"]) for k in p) if "keys" in params else None
    try:
        step = parse_step(params["step"]) if "step" in params else None
    except ValueError:
        step = None  # reported by init_selection
    return keys or None, step


def chart_params(
    run_ids: Iterable[str], key: str, step_from: int | None = None, step_to: int | None = None
) -> dict[str, str]:
    """Query parameters that open the Charts view on these runs, key and step range."""
    params = {"view": "charts", "runs": ",".join(run_ids), "keys": key, "x": "step"}
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


# --- Runs and SQL view parameters (added by helper F) ------------------------------------

MAX_SQL_CHARS = 4000
"""Longest ``?sql=`` the SQL view runs from a link (a longer one is dropped with a notice)."""
MAX_FIELDS = 50
"""At most this many ``?cols=`` entries and ``?filter=`` conditions."""
SUMMARY_NAMES = ("last", "min", "max")
"""Per-run summaries of a metric key (columns of the store's ``metric_summary`` view) that
columns, sorts and filters name as ``<key>:last``."""
FILTER_OPS = ("<=", ">=", "!=", "=", "<", ">", "~")
"""``?filter=`` operators, longest first; ``~`` is a case-insensitive substring match."""
_FIELD = re.compile(r"[^\x00-\x1f,]{1,200}")


def _field_ok(text: str) -> bool:
    return bool(_FIELD.fullmatch(text))


def parse_filter(text: str) -> tuple[str, str, str]:
    """``cfg:lr>=0.01`` → ``("cfg:lr", ">=", "0.01")``.

    Raises:
        ValueError: no operator of :data:`FILTER_OPS`, or an empty or overlong field.
    """
    for op in FILTER_OPS:
        field, sep, value = text.partition(op)
        if sep and _field_ok(field.strip()):
            return field.strip(), op, value.strip()
    raise ValueError(f"expected FIELD OP VALUE (OP one of {' '.join(FILTER_OPS)}), got {_shown(text)}")


def runs_view_params() -> tuple[dict, list[str]]:
    """The Runs and SQL views' URL parameters, checked: ``sort`` (a column, ``-`` first for
    descending), ``filter`` (comma-separated ``FIELD OP VALUE``), ``group`` and ``cols``
    (column names: ``cfg:<key>``, ``<metric key>:last|min|max``, or a built-in column),
    and ``sql`` (at most :data:`MAX_SQL_CHARS` characters).

    Malformed ones are dropped from the URL; returns ``(params, notices)``. Whether a
    column exists is the view's to check (it knows the store).
    """
    params = st.query_params
    out: dict = {}
    notices: list[str] = []
    sort = params.get("sort")
    if sort is not None:
        name = sort[1:] if sort.startswith("-") else sort
        if _field_ok(name):
            out["sort"] = (name, sort.startswith("-"))
        else:
            notices.append(f"?sort={_shown(sort)} is not a column name; sorted by start time.")
            del params["sort"]
    group = params.get("group")
    if group is not None:
        if _field_ok(group):
            out["group"] = group
        else:
            notices.append(f"?group={_shown(group)} is not a column name; not grouped.")
            del params["group"]
    for name in ("cols", "filter"):
        value = params.get(name)
        if value is None:
            continue
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if len(parts) > MAX_FIELDS:
            notices.append(f"?{name}= has {len(parts)} entries; the first {MAX_FIELDS} are used.")
            parts = parts[:MAX_FIELDS]
        kept = []
        for part in parts:
            if name == "cols":
                if _field_ok(part):
                    kept.append(part)
                else:
                    notices.append(f"?cols= entry {_shown(part)} ignored: not a column name.")
                continue
            try:
                kept.append(parse_filter(part))
            except ValueError as exc:
                notices.append(f"?filter= entry {_shown(part)} ignored: {exc}.")
        out[name] = kept
    sql = params.get("sql")
    if sql is not None:
        if len(sql) > MAX_SQL_CHARS:
            notices.append(f"?sql= is {len(sql)} characters, over the {MAX_SQL_CHARS} a link may "
                           "carry; not run (paste it into the console instead).")
            del params["sql"]
        elif sql.strip():
            out["sql"] = sql
    return out, notices


@dataclass(frozen=True)
class Workspace:
    """The Charts workspace as the URL gives it (already checked by :func:`init_selection`).

    Attributes:
        panels: the panels, each a tuple of the keys it overlays; None: a panel per key.
        sections: the open sections; None: the default (every section but ``sys``).
        search: the key filter text ("" = none).
        smooth: EMA weight in [0, SMOOTH_MAX].
        log_y: log scale on y.
        x: one of X_AXES.
        group: the config key to group runs by (``group`` = the run group), or None.
        points: points per curve, or None for the view's default.
    """

    panels: tuple[tuple[str, ...], ...] | None = None
    sections: tuple[str, ...] | None = None
    search: str = ""
    smooth: float = 0.0
    log_y: bool = False
    x: str = "step"
    group: str | None = None
    points: int | None = None


def workspace() -> Workspace:
    """The Charts workspace from the URL; malformed parameters count as absent."""
    params = st.query_params
    panels = tuple(_panels(params["keys"])) if "keys" in params else None
    sections = tuple(_split(params["sections"])) if "sections" in params else None
    try:
        smooth = _parse_smooth(params.get("smooth", "0"))
    except ValueError:
        smooth = 0.0
    try:
        points = _parse_points(params["points"]) if "points" in params else None
    except ValueError:
        points = None
    group = params.get("group") or None
    return Workspace(
        panels=panels or None,
        sections=sections,
        search=params.get("search", ""),
        smooth=smooth,
        log_y=_FLAGS.get(params.get("logy", "0").strip().lower(), False),
        x=params.get("x") if params.get("x") in X_AXES else "step",
        group=GROUP_ALIASES.get(group, group),
        points=points,
    )


def set_param(name: str, value: str | None) -> None:
    """Write one query parameter (None or "" removes it, except ``sections``, where an
    empty value means every section is closed)."""
    if value is None or (value == "" and name != "sections"):
        if name in st.query_params:
            del st.query_params[name]
    else:
        st.query_params[name] = value
