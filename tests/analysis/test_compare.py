"""Comparison statistics checked against numpy/scipy computed independently in the test."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from runlake.analysis import compare, curves
from runlake.analysis._stats import t_ppf
from runlake.store import read_store
from runlake.schemas.errors import ConfigError, RunNotFoundError

LRS = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001]


@pytest.fixture
def sweep(builder):
    """7 runs: lr in {0.1 x3, 0.01 x3, 0.001}, seeds, nested config; loss depends on lr."""
    rng = np.random.default_rng(3)
    truth = {}
    for i, lr in enumerate(LRS):
        rid = f"run{i}"
        loss = 1.0 + 10 * lr + np.exp(-np.arange(100) / 20) + rng.normal(0, 0.02, 100)
        acc = 1 - loss / 3
        builder.run(rid, config={"opt": {"lr": lr, "name": "adam"}, "seed": i % 3, "bs": 32})
        builder.metric(rid, "val/loss", loss, epochs=np.arange(100) // 25)
        builder.metric(rid, "val/acc", acc)
        truth[rid] = {"loss": loss, "acc": acc, "lr": lr}
    return builder.build(), truth


def test_metric_table_matches_numpy(sweep):
    """final, best (min for loss, max for acc), best_step and last-k mean equal numpy's."""
    db, truth = sweep
    with read_store(db) as con:
        table = compare.metric_table(con, None, k=7)
    for row in table.iter_rows(named=True):
        values = truth[row["run_id"]]["loss" if row["key"] == "val/loss" else "acc"]
        assert row["final"] == pytest.approx(values[-1])
        assert row["last_k_mean"] == pytest.approx(values[-7:].mean())
        if row["key"] == "val/loss":
            assert (row["mode"], row["best"], row["best_step"]) == ("min", pytest.approx(values.min()), values.argmin())
        else:
            assert (row["mode"], row["best"], row["best_step"]) == ("max", pytest.approx(values.max()), values.argmax())


def test_metric_table_mode_override_and_bad_k(sweep):
    """modes={key: 'max'} flips best; k < 1 is a ConfigError."""
    db, truth = sweep
    with read_store(db) as con:
        t = compare.metric_table(con, ["run0"], ["val/loss"], modes={"val/loss": "max"})
        assert t["best"][0] == pytest.approx(truth["run0"]["loss"].max())
        with pytest.raises(ConfigError):
            compare.metric_table(con, None, k=0)


def test_config_diff_lists_only_differing_flattened_keys(sweep):
    """Only opt.lr and seed differ; nested keys are dotted; values are JSON text."""
    db, _ = sweep
    with read_store(db) as con:
        diff = compare.config_diff(con, ["run0", "run1", "run3"])
    assert diff["key"].to_list() == ["opt.lr", "seed"]
    assert diff.row(0) == ("opt.lr", "0.1", "0.1", "0.01")
    assert diff.row(1) == ("seed", "0", "1", "0")


def test_config_diff_unknown_run(sweep):
    """An unknown run id raises RunNotFoundError naming it."""
    with read_store(sweep[0]) as con, pytest.raises(RunNotFoundError, match="nope"):
        compare.config_diff(con, ["run0", "nope"])


def test_seed_groups_match_scipy_t_interval(sweep):
    """Runs identical except seed form groups; mean, std, 95% t CI equal scipy's."""
    db, truth = sweep
    with read_store(db) as con:
        groups = compare.seed_groups(con, None, "val/loss", k=10)
    assert groups["n"].sort().to_list() == [1, 3, 3]
    for row in groups.iter_rows(named=True):
        vals = np.array([truth[r]["loss"][-10:].mean() for r in row["run_ids"]])
        assert row["mean"] == pytest.approx(vals.mean())
        if len(vals) > 1:
            lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=stats.sem(vals))
            assert row["std"] == pytest.approx(vals.std(ddof=1))
            assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
        else:
            assert row["std"] is None and row["ci_low"] is None


def test_seed_groups_by_config_key(sweep):
    """by='opt.lr' groups by that key's value."""
    with read_store(sweep[0]) as con:
        groups = compare.seed_groups(con, None, "val/loss", by="opt.lr")
    assert sorted(groups["group"].to_list()) == ["opt.lr=0.001", "opt.lr=0.01", "opt.lr=0.1"]


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 30, 100])
def test_t_quantile_matches_scipy(df):
    """The pure-Python t quantile equals scipy.stats.t.ppf."""
    assert t_ppf(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)
    assert t_ppf(0.05, df) == pytest.approx(stats.t.ppf(0.05, df), rel=1e-9)


def test_hparam_impact_matches_scipy_spearman(sweep):
    """Spearman rho of opt.lr vs best loss equals scipy's; seed is ignored; importance sums to 1."""
    db, truth = sweep
    with read_store(db) as con:
        impact = compare.hparam_impact(con, None, "val/loss")
    runs = sorted(truth)
    rho, p = stats.spearmanr([truth[r]["lr"] for r in runs], [truth[r]["loss"].min() for r in runs])
    row = impact.filter(pl.col("param") == "opt.lr").row(0, named=True)
    assert row["spearman"] == pytest.approx(rho)
    assert row["p_value"] == pytest.approx(p, rel=1e-6)
    assert row["effect"] == "lower is better" and row["rank"] == 1
    assert "seed" not in impact["param"].to_list()
    assert impact["importance"].sum() == pytest.approx(1.0)


def test_best_config(sweep):
    """best_config returns the run with the lowest loss and its nested config."""
    db, truth = sweep
    with read_store(db) as con:
        best = compare.best_config(con, None, "val/loss")
        assert compare.best_config(con, None, "missing/key") == {}
    expected = min(truth, key=lambda r: truth[r]["loss"].min())
    assert best["run_id"] == expected and best["mode"] == "min"
    assert best["config"]["opt"]["lr"] == truth[expected]["lr"]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 0.99])
def test_ema_bias_corrected(alpha):
    """ema equals the debiased recursion s=a*s+(1-a)*x, s/(1-a^t); NaNs are skipped."""
    xs = [3.0, 1.0, float("nan"), 4.0, 1.0, 5.0]
    out = curves.ema(xs, alpha)
    s, t, expected = 0.0, 0, []
    for x in xs:
        if math.isnan(x):
            expected.append(None)
            continue
        t += 1
        s = alpha * s + (1 - alpha) * x
        expected.append(s / (1 - alpha ** t))
    assert [None if e is None else pytest.approx(e) for e in expected] == out
    series = curves.ema(pl.Series(xs), alpha)
    assert isinstance(series, pl.Series) and series.len() == len(xs)


def test_ema_rejects_bad_alpha():
    """alpha outside [0, 1) is a ConfigError."""
    with pytest.raises(ConfigError):
        curves.ema([1.0], 1.0)


@pytest.fixture
def long_runs(builder):
    rng = np.random.default_rng(5)
    series = {}
    for i in range(3):
        v = 1 + rng.normal(0, 0.01, 20_000)
        v[7_777 + i] = 50.0          # a one-point spike
        v[12_345] = float("nan")     # a NaN
        series[f"L{i}"] = v
        builder.run(f"L{i}").metric(f"L{i}", "loss", v, epochs=np.arange(20_000) // 5000, dt_s=0.5)
    return builder.build(), series


@pytest.mark.parametrize("method", ["minmax", "lttb"])
def test_downsample_keeps_spikes_and_nans(long_runs, method):
    """Downsampling 20k points to ~1000 per run keeps the spike, the NaN, the ends, x order."""
    db, series = long_runs
    with read_store(db) as con:
        ds = curves.downsample(con, None, "loss", points=1000, method=method)
    for i, (rid, v) in enumerate(series.items()):
        part = ds.filter(pl.col("run_id") == rid)
        assert part.height <= 1100
        xs = part["x"].to_list()
        assert xs == sorted(xs) and xs[0] == 0 and xs[-1] == 19_999
        assert 7_777 + i in xs and part.filter(pl.col("x") == 7_777 + i)["value"][0] == 50.0
        assert 12_345 in xs and math.isnan(part.filter(pl.col("x") == 12_345)["value"][0])
        values = part.filter(pl.col("value").is_finite())["value"]
        assert values.max() == 50.0
        if method == "minmax":  # LTTB keeps visually important points, not every extreme
            assert values.min() == pytest.approx(np.nanmin(v))


def test_downsample_minmax_keeps_bucket_extremes(long_runs):
    """Each of the 250 buckets contributes its min and max: all local extremes survive."""
    db, series = long_runs
    with read_store(db) as con:
        ds = curves.downsample(con, ["L0"], "loss", points=1000)
    v = series["L0"]
    edges = np.linspace(0, 20_000, 251)
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = v[int(np.ceil(lo)):int(np.ceil(hi))]
        finite = chunk[np.isfinite(chunk)]
        got = ds.filter((pl.col("x") >= lo) & (pl.col("x") < hi) & pl.col("value").is_finite())["value"]
        assert got.max() == finite.max() and got.min() == finite.min()


@pytest.mark.parametrize("x", ["step", "time", "epoch"])
def test_downsample_x_axes(long_runs, x):
    """x='time' is seconds since the first point, x='epoch' a fractional epoch."""
    db, _ = long_runs
    with read_store(db) as con:
        ds = curves.downsample(con, ["L0"], "loss", points=100, x=x)
    last = ds["x"].max()
    assert {"step": 19_999, "time": 19_999 * 0.5}.get(x, last) == pytest.approx(last)
    if x == "epoch":
        assert 3.99 < last < 4.0


def test_downsample_short_series_returned_whole(sweep):
    """A series shorter than `points` comes back point for point."""
    db, truth = sweep
    with read_store(db) as con:
        ds = curves.downsample(con, ["run0"], "val/loss", points=1000)
    assert ds["value"].to_list() == pytest.approx(list(truth["run0"]["loss"]))


@pytest.mark.parametrize("x", ["step", "time", "epoch"])
@pytest.mark.parametrize("method", ["minmax", "lttb"])
def test_downsample_keys_is_each_key_alone_in_one_query(sweep, long_runs, x, method):
    """Several keys in one scan (a workspace's panels) give, key by key, exactly what
    ``downsample`` gives for that key alone; a key nobody logged adds no rows."""
    for db in (sweep[0], long_runs[0]):
        with read_store(db) as con:
            keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM metrics ORDER BY key").fetchall()]
            both = curves.downsample_keys(con, None, [*keys, "no/such/key"], points=40, x=x,
                                          method=method)
            assert set(both["key"].unique()) <= set(keys) and both.height
            for key in keys:  # (with x=epoch, a key logged without epochs has no points)
                alone = curves.downsample(con, None, key, points=40, x=x, method=method)
                got = both.filter(pl.col("key") == key).drop("key")
                assert got.equals(alone), key


@pytest.mark.parametrize("bad", [dict(x="wall"), dict(method="random"), dict(points=2)])
def test_downsample_rejects_bad_arguments(sweep, bad):
    """Unknown x/method or too few points are ConfigErrors."""
    with read_store(sweep[0]) as con, pytest.raises(ConfigError):
        curves.downsample(con, None, "val/loss", **bad)


def test_align_long_and_wide(sweep):
    """align returns every point on a shared x axis, long or pivoted wide."""
    db, truth = sweep
    with read_store(db) as con:
        long = curves.align(con, ["run0", "run1"], "val/loss")
        wide = curves.align(con, ["run0", "run1"], "val/loss", wide=True)
    assert long.height == 200
    assert wide.columns == ["x", "run0", "run1"] and wide.height == 100
    assert wide["run1"].to_list() == pytest.approx(list(truth["run1"]["loss"]))
