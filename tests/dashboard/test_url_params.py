"""URL query parameters are user input: every view survives malformed ones, drops them
with a notice, and keeps the well-formed ones."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlake.dashboard.selection import MAX_STEP, VIEWS, parse_step

BAD_STEPS = ["inf", "-inf", "Infinity", "1e400", "-1e400", "nan", "NaN", str(10**400),
             str(MAX_STEP + 1), "9" * 30, "abc", "", " ", "1.5", "0x10", "1_000", "１２",
             "1e3e3", "--1", "10**400"]


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1200", 1200), ("-3", -3), ("+5", 5),
                                             ("1e3", 1000), ("1200.0", 1200), (" 7 ", 7),
                                             (str(MAX_STEP), MAX_STEP)])
def test_parse_step_accepts_integers(text, value):
    """Decimal integers within ±MAX_STEP parse, also written as 1e3 or 1200.0."""
    assert parse_step(text) == value


@pytest.mark.parametrize("text", BAD_STEPS)
def test_parse_step_refuses_the_rest(text):
    """Non-finite, overflowing, fractional and non-numeric steps raise ValueError."""
    with pytest.raises(ValueError, match="expected an integer step"):
        parse_step(text)


def _ok(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return [re.sub(r"\\(.)", r"\1", w.value) for w in at.warning]  # as displayed


@pytest.mark.parametrize("bad", BAD_STEPS)
@pytest.mark.parametrize("name", ["from", "to"])
def test_charts_ignore_a_bad_step_with_a_notice(app, store, name, bad):
    """?from= / ?to= that are no step: the chart draws over the whole range, a notice says
    what was ignored, and the parameter leaves the URL."""
    ids = store["ids"]
    at = app("charts", runs=f"{ids['alpha']},{ids['beta']}", key="loss", **{name: bad})
    notices = _ok(at)
    assert any(f"?{name}=" in n for n in notices), notices
    assert at.get("vega_lite_chart"), "no chart drawn"
    assert name not in at.query_params


def test_charts_keep_a_good_range_and_refuse_a_reversed_one(app, store):
    """A negative but valid ?from= is kept; ?from= after ?to= drops both with a notice."""
    ids = store["ids"]
    at = app("charts", runs=ids["alpha"], key="loss", **{"from": "-5", "to": "50"})
    assert not _ok(at)
    assert at.number_input(key="charts_from").value == -5
    at = app("charts", runs=ids["alpha"], key="loss", **{"from": "90", "to": "10"})
    notices = _ok(at)
    assert any("is after" in n for n in notices), notices
    assert at.number_input(key="charts_from").value is None


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_view_survives_every_bad_parameter(app, view):
    """Every parameter malformed at once: the view renders, one notice per bad parameter."""
    at = app(view, runs="nope,<b>,,", key="no such key", x="sideways", refresh="often",
             **{"from": "inf", "to": "1e400"})
    notices = " ".join(_ok(at))
    for name in ("runs", "x", "refresh", "from", "to"):
        assert f"?{name}=" in notices, (name, notices)


def test_an_unknown_view_falls_back_to_runs_with_a_notice(app):
    """?view=<garbage> shows the Runs view and says so."""
    at = app("<script>")
    notices = _ok(at)
    assert at.title[0].value == "Runs"
    assert any("?view=" in n for n in notices), notices


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.dictionaries(
    st.sampled_from(["view", "runs", "key", "x", "from", "to", "refresh"]),
    st.text(max_size=40) | st.sampled_from(BAD_STEPS) | st.integers().map(str)
    | st.floats().map(str), max_size=7))
def test_random_parameters_never_crash(app, values):
    """Any mix of parameters and values: no exception, no error box."""
    view = values.pop("view", "charts")
    _ok(app(view, **values))
