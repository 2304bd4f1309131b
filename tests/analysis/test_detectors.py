"""Planted-anomaly suite: each anomaly kind is found at its step; healthy runs stay quiet."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from runlake.analysis import anomalies
from runlake.analysis.anomalies import CATALOG, Roles, detect, find, list_anomalies
from runlake.store import read_store

from . import _planted

SUITE_RESULTS: dict = {}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from .conftest import StoreBuilder

    builder = StoreBuilder(tmp_path_factory.mktemp("planted") / "store.duckdb")
    cases = _planted.build(builder)
    db = builder.build()
    with read_store(db) as con:
        found = find(con, now=_planted.NOW)
    return db, cases, found


def _covers(row, planted) -> bool:
    if planted is None:
        return True
    lo, hi = planted
    start = row["step_start"] if row["step_start"] is not None else row["step_end"]
    end = row["step_end"] if row["step_end"] is not None else row["step_start"]
    if start is None:
        return True
    return start <= hi and end >= lo  # the finding's range overlaps the planted range


@pytest.mark.parametrize("case", [c[0] for c in _planted.METRIC_CASES] +
                         ["crashed", "stalled", "dupes", "leaky", "unseen", "samples"])
def test_planted_anomaly_is_found(suite, case):
    """Each planted anomaly yields a finding of the right kind, key and step range."""
    _, cases, found = suite
    name, kind, key, planted = next(c for c in cases if c[0] == case)
    mine = found.filter(pl.col("run_id") == name)
    hits = [r for r in mine.filter(pl.col("kind") == kind).iter_rows(named=True)
            if (key is None or r["key"] == key) and _covers(r, planted)]
    assert hits, f"{case}: expected {kind} on {key} around {planted}; got\n{mine.select('kind', 'key', 'step_start', 'step_end', 'message')}"
    assert all(h["message"] and h["suggestion"] for h in hits)


def test_healthy_runs_have_no_warning(suite):
    """Several seeds of a healthy run (noise, warmup+cosine lr, flat memory) raise no warning."""
    _, _, found = suite
    bad = found.filter(pl.col("run_id").str.starts_with("healthy") | (pl.col("run_id") == "samples-ok"))
    bad = bad.filter(pl.col("severity") != "info")
    assert bad.is_empty(), bad.select("run_id", "kind", "key", "step_start", "message")


def test_precision_and_recall(suite):
    """Over the whole suite, recall is 100% and precision (warning+) at least 90%."""
    _, cases, found = suite
    tp, fp = 0, 0
    for name, kind, key, planted in cases:
        mine = found.filter((pl.col("run_id") == name) & (pl.col("severity") != "info"))
        ok = [r for r in mine.iter_rows(named=True)
              if r["kind"] == kind and (key is None or r["key"] == key) and _covers(r, planted)]
        hit_any = any(r["kind"] == kind for r in found.filter(pl.col("run_id") == name).iter_rows(named=True))
        tp += 1 if hit_any else 0
        fp += mine.height - len(ok)
    fp += found.filter(pl.col("run_id").str.starts_with("healthy") & (pl.col("severity") != "info")).height
    recall = tp / len(cases)
    precision = tp / max(tp + fp, 1)
    SUITE_RESULTS.update(cases=len(cases), tp=tp, fp=fp, precision=precision, recall=recall)
    print(f"\nplanted-anomaly suite: {len(cases)} cases, recall {recall:.0%}, precision {precision:.0%}")
    assert recall == 1.0
    assert precision >= 0.9


def test_findings_have_the_documented_columns(suite):
    """Every finding carries the documented columns, a known severity and a catalog detector."""
    _, _, found = suite
    assert found.columns == anomalies.COLUMNS
    assert set(found["severity"].unique()) <= {"info", "warning", "critical"}
    assert set(found["detector"].unique()) <= {d.name for d in CATALOG}


def test_consecutive_flagged_steps_merge_into_one_finding(suite):
    """Five consecutive NaN steps are one nonfinite finding spanning 500-504."""
    _, _, found = suite
    nf = found.filter((pl.col("run_id") == "nan_loss") & (pl.col("kind") == "nonfinite"))
    assert nf.height == 1
    assert (nf["step_start"][0], nf["step_end"][0]) == (500, 504)


def test_detect_replaces_rows_and_list_filters_severity(suite, tmp_path):
    """detect() stores findings idempotently; list_anomalies filters by minimum severity."""
    import shutil

    db = tmp_path / "copy.duckdb"
    shutil.copy(suite[0], db)
    n1 = detect(db)
    n2 = detect(db)
    with read_store(db) as con:
        all_rows = list_anomalies(con)
        crit = list_anomalies(con, severity="critical")
        one = list_anomalies(con, ["loss_spike"])
    assert n1 == n2 == all_rows.height > 0
    assert set(crit["severity"].unique()) == {"critical"}
    assert set(one["run_id"].unique()) == {"loss_spike"}
    n3 = detect(db, ["loss_spike"])  # replaces only that run's rows
    with read_store(db) as con:
        after = list_anomalies(con)
    assert n3 == one.height
    assert after.height == all_rows.height
    assert after.filter(pl.col("run_id") != "loss_spike").drop("detected_at").equals(
        all_rows.filter(pl.col("run_id") != "loss_spike").drop("detected_at"))


def test_list_anomalies_rejects_unknown_severity(suite):
    """An unknown severity level is a clear ConfigError."""
    from runlake.schemas.errors import ConfigError

    with read_store(suite[0]) as con, pytest.raises(ConfigError, match="severity must be one of"):
        list_anomalies(con, severity="bad")


def test_custom_roles_change_what_is_a_loss(builder):
    """With Roles(loss=("objective*",)) a spike in 'objective' is a loss spike; default misses it."""
    rng = np.random.default_rng(0)
    values = 1 + rng.normal(0, 0.01, 500)
    values[250] = 5.0
    builder.run("r").metric("r", "objective", values)
    db = builder.build()
    with read_store(db) as con:
        default = find(con)
        custom = find(con, roles=Roles(loss=("objective*",)))
    assert "loss_spike" not in default["kind"].to_list()
    hit = custom.filter(pl.col("kind") == "loss_spike")
    assert hit["step_start"].to_list() == [250]


@pytest.mark.parametrize("key,role", [
    ("train/loss", "train_loss"), ("loss", "train_loss"), ("val/loss", "val_loss"),
    ("eval_loss", "val_loss"), ("grad_norm", "grad_norm"), ("lr", "lr"), ("optim/lr", "lr"),
    ("lr-Adam", "lr"), ("perf/samples_per_s", "throughput"), ("sys/rss_bytes", "memory"),
    ("sys/gpu0/mem_allocated", "memory"), ("val/acc", "accuracy"), ("sys/cpu_pct", None),
])
def test_default_roles(key, role):
    """Default Roles classify conventional metric names."""
    assert Roles().role_of(key) == role


def test_high_lr_run_is_flagged_and_stable_runs_are_not(builder):
    """A run whose loss spikes, diverges then goes NaN gets critical findings; stable seeds none."""
    rng = np.random.default_rng(7)
    steps = np.arange(300)
    for seed in range(3):
        loss = (2.3 * np.exp(-steps / 60) + 0.1) * (1 + rng.normal(0, 0.05, 300))
        builder.run(f"stable-{seed}").metric(f"stable-{seed}", "train/loss", loss)
    loss = (2.3 * np.exp(-steps / 60) + 0.1) * (1 + rng.normal(0, 0.05, 300))
    loss[120] *= 8
    loss[150:] = loss[150] * np.exp((steps[150:] - 150) / 20)
    loss[230:] = np.nan
    builder.run("unstable").metric("unstable", "train/loss", loss)
    db = builder.build()
    with read_store(db) as con:
        found = find(con)
    unstable = found.filter(pl.col("run_id") == "unstable")
    assert {"nonfinite", "divergence"} <= set(unstable.filter(pl.col("severity") == "critical")["kind"])
    assert found.filter(pl.col("run_id").str.starts_with("stable") & (pl.col("severity") != "info")).is_empty()


def test_find_on_empty_store(builder):
    """An empty store gives an empty frame with the documented columns."""
    db = builder.build()
    with read_store(db) as con:
        found = find(con)
    assert found.is_empty() and found.columns == anomalies.COLUMNS
