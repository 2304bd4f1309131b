"""The Hyperparameters view on the real test store, through AppTest: parallel coordinates,
metric vs parameter, and the importance figures of analysis.compare.hparam_impact."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import workspace_store as wss  # noqa: E402

from runlake.analysis.compare import hparam_impact
from runlake.dashboard.view_params import parallel_frame

HEADS = ["Parallel coordinates", "Metric vs parameter", "Importance"]




@pytest.fixture
def four(store):
    ids = store["ids"]
    return [ids[n] for n in ("alpha", "beta", "beta-s2", "gamma")]


def test_params_view_draws_the_three_figures(app, four):
    """Over the selected runs: a parallel-coordinates line per run across every varying
    config value plus the metric axis, a scatter point per run, and the importance bars."""
    at = app("params", runs=",".join(four))
    assert not wss.page_ok(at)
    assert [h.value for h in at.subheader] == HEADS
    parallel, scatter, importance = wss.chart_rows(at)
    parallel = [r for r in parallel if "run" in r]  # the lines (the other dataset: axis labels)
    axes = {r["axis"] for r in parallel}
    assert {"lr", "seed", "model.width", "loss (last)"} <= axes
    assert {r["run"] for r in parallel} == {f"vision/{n}" for n in ("alpha", "beta", "beta-s2", "gamma")}
    assert all(0 <= r["norm"] <= 1 for r in parallel if r["norm"] is not None)
    assert len(scatter) == 4


def test_importance_is_hparam_impact(app, store, four):
    """The importance figures are analysis.compare.hparam_impact's, for the chosen metric."""
    at = app("params", runs=",".join(four))
    wss.page_ok(at)
    shown = at.dataframe[0].value
    with duckdb.connect(str(store["db"]), read_only=True) as con:
        expected = hparam_impact(con, four, "loss")
    assert list(shown["param"]) == expected["param"].to_list()
    assert list(shown["importance"]) == pytest.approx(expected["importance"].to_list())
    bars = wss.chart_rows(at)[2]
    assert {r["param"]: r["importance"] for r in bars} == pytest.approx(
        dict(zip(expected["param"].to_list(), expected["importance"].to_list())))


def test_summary_and_parameter_choices(app, four, store):
    """Choosing the max summary and another parameter redraws the scatter with those."""
    at = app("params", runs=",".join(four))
    at.selectbox(key="params_metric").set_value("acc").run()
    at.radio(key="params_summary").set_value("max").run()
    at.selectbox(key="params_x").set_value("seed").run()
    wss.page_ok(at)
    scatter = wss.chart_rows(at)[1]
    assert sorted(r["param"] for r in scatter) == [1.0, 1.0, 2.0, 2.0]
    assert max(r["metric"] for r in scatter) == pytest.approx(199 / 200)


def test_params_view_without_a_selection_uses_the_newest_runs(app, page_text):
    """No selection: the view covers the newest runs and says so."""
    at = app("params")
    wss.page_ok(at)
    assert "newest runs" in page_text(at)
    assert [h.value for h in at.subheader] == HEADS


def test_params_view_with_bad_parameters(app):
    """Unknown run ids and malformed steps: notices, the figures still drawn, no error."""
    at = app("params", runs="nope,<b>", **{"from": "inf"})
    notices = " ".join(wss.page_ok(at))
    assert "?runs=" in notices and "?from=" in notices


def test_parallel_frame_scales_each_axis():
    """Numeric axes scale min..max onto 0..1; text axes spread their sorted values; a run
    without a metric value is left out."""
    configs = {"a": {"lr": 0.1, "opt": "sgd"}, "b": {"lr": 0.3, "opt": "adam"},
               "c": {"lr": 0.2, "opt": "sgd"}, "d": {"lr": 9.0, "opt": "x"}}
    rows = parallel_frame(configs, {"a": 1.0, "b": 3.0, "c": 2.0}, {}, ["lr", "opt"], "m")
    norm = {(r["run"], r["axis"]): r["norm"] for r in rows.iter_rows(named=True)}
    assert norm[("a", "lr")] == 0 and norm[("b", "lr")] == 1
    assert norm[("c", "lr")] == pytest.approx(0.5)
    assert norm[("b", "opt")] == 0 and norm[("a", "opt")] == 1
    assert norm[("c", "m")] == pytest.approx(0.5)
    assert "d" not in {r for r, _ in norm}
