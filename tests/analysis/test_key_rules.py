"""The findings issue 9 measured as wrong, one by one, on real stores; and the one key rule
(role, direction, family) that detectors, compare and the emitter share."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from runlake.analysis import compare
from runlake.analysis.anomalies import find
from runlake.analysis.roles import Roles, direction, lower_is_better
from runlake.store import read_store


def _loud(found: pl.DataFrame) -> pl.DataFrame:
    return found.filter(pl.col("severity") != "info")


def _healthy_loss(rng, n=1000):
    s = np.arange(n)
    return (2.0 * np.exp(-s / 250) + 0.3) * np.exp(rng.normal(0, 0.03, n))


@pytest.mark.parametrize("key,role", [
    ("loss_scale", "loss_scale"), ("train/loss_scale", "loss_scale"), ("amp/loss-scale", "loss_scale"),
    ("grad_norm/layer1.weight", "grad_norm"), ("grad/norm/layer1.weight", "grad_norm"),
    ("lr", "lr"), ("train/lr", "lr"), ("perf/samples_per_sec", "throughput"),
    ("sys/gpu_mem", "memory"), ("sys/gpu0/mem_allocated", "memory"), ("sys/loss_bytes", None),
    ("sys/cpu_pct", None), ("train/loss", "train_loss"), ("val/perplexity", "val_loss"),
    ("val/acc", "accuracy"), ("val/f1", "score"), ("bleu", "score"), ("val/wer", "error"),
    ("train/accum_steps", None), ("tower/power", None),
])
def test_roles_of_common_keys(key, role):
    """Loss scales, learning rates, grad norms, throughput, memory and sys/* are no losses."""
    assert Roles().role_of(key) == role


@pytest.mark.parametrize("key,best", [
    ("train/loss", "min"), ("val/perplexity", "min"), ("val/error", "min"), ("val/wer", "min"),
    ("train/grad_norm", "min"), ("sys/gpu_mem", "min"), ("val/acc", "max"), ("val/f1", "max"),
    ("val/bleu", "max"), ("perf/samples_per_sec", "max"), ("lr", None), ("loss_scale", None),
])
def test_direction_follows_the_role(key, best):
    """Losses, errors, grad norms and memory are better small; scores and throughput large."""
    assert direction(key) == best
    assert lower_is_better(key) == (best == "min")


def test_family_of_per_parameter_keys():
    """grad/norm/<param> belongs to grad/norm; train/grad_norm belongs to no family."""
    roles = Roles()
    assert roles.family("grad/norm/layer1.weight") == "grad/norm"
    assert roles.family("grad_norm/layer1.weight") == "grad_norm"
    assert roles.family("train/grad_norm") is None
    assert roles.family("train/loss") is None


def test_compare_best_grad_norm_is_the_smallest(builder):
    """compare's "best" uses the same rule: the best grad norm is the minimum, not the max."""
    builder.run("a").metric("a", "train/grad_norm", [3.0, 1.0, 2.0])
    builder.run("b").metric("b", "val/acc", [0.5, 0.9, 0.7])
    with read_store(builder.build()) as con:
        table = compare.metric_table(con, ["a", "b"], ["train/grad_norm", "val/acc"])
    rows = {r["key"]: r for r in table.iter_rows(named=True)}
    assert (rows["train/grad_norm"]["best"], rows["train/grad_norm"]["mode"]) == (1.0, "min")
    assert (rows["val/acc"]["best"], rows["val/acc"]["mode"]) == (0.9, "max")


def test_constant_loss_scale_is_no_plateau(builder):
    """fp16 loss scale constant at its cap next to a healthy loss: no finding at all on it."""
    rng = np.random.default_rng(0)
    for i in range(5):
        builder.run(f"r{i}").metric(f"r{i}", "loss_scale", np.full(1000, 65536.0))
        builder.metric(f"r{i}", "train/loss", _healthy_loss(rng))
    with read_store(builder.build()) as con:
        found = find(con)
    assert found.filter(pl.col("key") == "loss_scale").is_empty(), found
    assert _loud(found).is_empty(), found


def test_constant_loss_is_no_plateau(builder):
    """A series that never changes is a placeholder, not a stalled trajectory."""
    builder.run("c").metric("c", "train/loss", np.full(800, 0.5))
    with read_store(builder.build()) as con:
        found = find(con)
    assert found.filter(pl.col("kind") == "plateau").is_empty(), found


def test_smooth_decaying_loss_has_no_spike_at_step_0(builder):
    """A smooth 1/(s+1) loss: its first point is the start of a fall, not a spike."""
    s = np.arange(1000)
    builder.run("smooth").metric("smooth", "train/loss", 1.0 / (s + 1))
    with read_store(builder.build()) as con:
        found = find(con)
    assert found.filter(pl.col("kind") == "loss_spike").is_empty(), found
    assert _loud(found).is_empty(), found


def test_real_early_spike_is_found(builder):
    """4.36 -> 9.58 -> back to 4.3 within steps 0-3 is a spike, found at step 2."""
    rng = np.random.default_rng(3)
    loss = _healthy_loss(rng) * 4.36 / 2.3
    loss[0], loss[1], loss[2], loss[3] = 4.36, 4.33, 9.58, 4.30
    builder.run("early").metric("early", "train/loss", loss)
    with read_store(builder.build()) as con:
        found = find(con)
    spikes = found.filter(pl.col("kind") == "loss_spike")
    assert spikes.select("step_start", "step_end").rows() == [(2, 2)], found


def test_lognormal_grad_noise_is_no_explosion(builder):
    """Grad norms with log-normal noise (sigma 0.35) around a drifting level: 40 runs, 2000
    steps each, no gradient_explosion finding."""
    rng = np.random.default_rng(5)
    s = np.arange(2000)
    for i in range(40):
        level = (1 + 4 * np.exp(-s / 20)) * (1 + 0.5 * s / 2000)
        builder.run(f"g{i}").metric(f"g{i}", "train/grad_norm", level * np.exp(rng.normal(0, 0.35, 2000)))
    with read_store(builder.build()) as con:
        found = find(con)
    assert found.filter(pl.col("kind") == "gradient_explosion").is_empty(), found


def test_sustained_grad_growth_is_an_explosion(builder):
    """The same noise with exponential growth from step 1000 is found as gradient_explosion."""
    rng = np.random.default_rng(6)
    s = np.arange(2000)
    g = np.exp(rng.normal(0, 0.35, 2000)) * np.where(s >= 1000, np.exp((s - 1000) / 80.0), 1.0)
    builder.run("grow").metric("grow", "train/grad_norm", g)
    with read_store(builder.build()) as con:
        found = find(con)
    hits = found.filter((pl.col("kind") == "gradient_explosion") & (pl.col("severity") == "critical"))
    assert hits.height >= 1 and hits["step_start"].min() >= 1000, found


def test_one_watched_step_on_many_parameters_is_one_finding(builder):
    """grad/norm and 7 per-parameter norms exploding at one watched step: one finding on
    grad/norm that names the parameters."""
    rng = np.random.default_rng(8)
    params = [f"layer{i}.weight" for i in range(7)]
    steps = np.arange(0, 2000, 50)
    builder.run("w")
    for key in ["grad/norm"] + [f"grad/norm/{p}" for p in params]:
        v = np.exp(rng.normal(0, 0.2, len(steps)))
        v[steps == 1000] *= 200
        builder.metric("w", key, v, steps)
    with read_store(builder.build()) as con:
        found = find(con)
    boom = found.filter(pl.col("kind") == "gradient_explosion")
    assert boom.height == 1, boom
    row = boom.row(0, named=True)
    assert row["key"] == "grad/norm" and row["step_start"] == 1000
    assert all(p in row["message"] for p in params)


def test_dead_layer_zero_gradients_are_no_explosion(builder):
    """A per-parameter grad norm that is 0 most of the time ("from a local level of 0") is
    no gradient explosion."""
    rng = np.random.default_rng(9)
    steps = np.arange(0, 230, 10)
    builder.run("dead")
    builder.metric("dead", "grad/norm", np.exp(rng.normal(-1.5, 0.3, len(steps))), steps)
    for p in ("0.weight", "0.bias", "2.weight"):
        v = np.where(rng.random(len(steps)) < 0.6, 0.0, rng.uniform(0.005, 0.3, len(steps)))
        builder.metric("dead", f"grad/norm/{p}", v, steps)
    with read_store(builder.build()) as con:
        found = find(con)
    assert found.filter(pl.col("kind") == "gradient_explosion").is_empty(), found


def test_fp16_overflow_is_info_but_a_plain_inf_grad_is_critical(builder):
    """An inf grad norm where the loss scale halves is an overflow the scaler skipped
    (info); the same inf without a loss-scale drop is critical."""
    rng = np.random.default_rng(10)
    scale = np.full(1000, 65536.0)
    scale[400:] = 32768.0
    grad = np.exp(rng.normal(0, 0.2, 1000))
    grad[400] = np.inf
    builder.run("fp16").metric("fp16", "loss_scale", scale).metric("fp16", "train/grad_norm", grad)
    bad = grad.copy()
    bad[700] = np.inf
    builder.run("fp16-bad").metric("fp16-bad", "loss_scale", scale).metric("fp16-bad", "train/grad_norm", bad)
    with read_store(builder.build()) as con:
        found = find(con).filter(pl.col("kind") == "nonfinite")
    rows = {(r["run_id"], r["step_start"]): r for r in found.iter_rows(named=True)}
    assert rows[("fp16", 400)]["severity"] == "info"
    assert "fp16 overflow" in rows[("fp16", 400)]["message"]
    assert rows[("fp16-bad", 700)]["severity"] == "critical"
