"""Online checks use the shared key rule: fp16 loss scales, overflow steps, noisy grad
norms and per-parameter norms raise no false alert; real problems still do."""

from __future__ import annotations

import warnings

import pytest

import runlake
from runlake.emitter.checks import watched


def _alerts(rl, run):
    return [(a.alert, a.key, a.step) for a in rl.of_kind(rl.read_run(run.dir), "alert")]


def _run(root, quiet, flushes):
    """Log each list of (step, values) as one flush; returns the finished run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with runlake.init("p", root=root, flush_interval=60, **quiet) as run:
            for batch in flushes:
                for step, values in batch:
                    run.log(values, step=step)
                run.flush()
    return run


@pytest.mark.parametrize("key,watch", [
    ("train/loss", True), ("val/loss", True), ("train/grad_norm", True), ("grad/norm", True),
    ("loss_scale", False), ("train/loss_scale", False), ("grad/norm/layer1.weight", False),
    ("lr", False), ("perf/samples_per_sec", False),
])
def test_watched_keys(key, watch):
    """Losses and aggregate grad norms are watched; a loss scale or a per-parameter norm is not."""
    assert watched(key) is watch


def test_loss_scale_regrowth_is_not_exploding(rl, root, quiet):
    """A GradScaler scale growing back from 1 to 2**16 is no exploding loss."""
    flushes = [[(i, {"loss_scale": v, "train/loss": 1.0})] for i, v in enumerate([1.0, 1.0, 1.0, 2.0 ** 16])]
    assert _alerts(rl, _run(root, quiet, flushes)) == []


def test_fp16_overflow_is_no_alert_but_a_plain_inf_is(rl, root, quiet):
    """inf grad norm where the loss scale halves (same step, or the next one when the
    scale is logged before update()) or on the first step: no alert. Without a scale
    drop: one critical nonfinite alert."""
    flushes = [
        [(0, {"train/grad_norm": float("inf"), "loss_scale": 32768.0})],  # calibrating
        [(1, {"train/grad_norm": 1.0, "loss_scale": 32768.0}),
         (2, {"train/grad_norm": float("inf"), "loss_scale": 16384.0})],  # same step
        [(3, {"train/grad_norm": float("inf"), "loss_scale": 16384.0})],  # drop logged next flush
        [(4, {"train/grad_norm": 1.0, "loss_scale": 8192.0})],
        [(5, {"train/grad_norm": 1.0, "loss_scale": 8192.0})],
    ]
    assert _alerts(rl, _run(root, quiet, flushes)) == []
    real = flushes + [[(6, {"train/grad_norm": float("inf"), "loss_scale": 8192.0}),
                       (7, {"train/grad_norm": 1.0, "loss_scale": 8192.0})]]
    run = _run(root, quiet, real)
    assert _alerts(rl, run) == [("nonfinite", "train/grad_norm", 6)]


def test_inf_grad_without_loss_scale_alerts_at_once(rl, root, quiet):
    """An fp32 run (no loss scale) alerts an inf grad norm in the same flush."""
    run = _run(root, quiet, [[(0, {"train/grad_norm": 1.0}), (1, {"train/grad_norm": float("inf")})]])
    assert _alerts(rl, run) == [("nonfinite", "train/grad_norm", 1)]


def test_noisy_grad_norm_is_judged_on_its_own_noise(rl, root, quiet):
    """A grad norm swinging 10x between flushes is noisy, not exploding at 18x its median;
    a smooth one jumping 15x is exploding."""
    noisy = [[(i, {"train/grad_norm": v})] for i, v in enumerate([0.3, 3.0, 0.3, 3.0, 0.3, 3.0, 30.0])]
    assert _alerts(rl, _run(root, quiet, noisy)) == []
    smooth = [[(i, {"train/grad_norm": v})] for i, v in enumerate([1.0, 1.1, 0.9, 1.0, 15.0])]
    assert _alerts(rl, _run(root, quiet, smooth)) == [("exploding", "train/grad_norm", 4)]


def test_per_parameter_norms_are_left_to_their_aggregate(rl, root, quiet):
    """One bad watched step: one alert on grad/norm, none on grad/norm/<param>."""
    params = [f"grad/norm/layer{i}.weight" for i in range(7)]
    flushes = []
    for i, scale in enumerate([1.0, 1.0, 1.0, 1.0, 100.0]):
        flushes.append([(i, {"grad/norm": scale, **{p: 0.3 * scale for p in params}})])
    assert _alerts(rl, _run(root, quiet, flushes)) == [("exploding", "grad/norm", 4)]
