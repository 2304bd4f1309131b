"""Synthetic training runs with one planted anomaly each (and healthy controls).

Each case is (name, expected kind, key, planted step range, builder function). A healthy
run: loss decaying exponentially with 3% Gaussian noise, val loss every 50 steps, grad
norms around 1, lr with 50 warmup steps then cosine to 0, flat memory, steady throughput.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

N = 1000
STEPS = np.arange(N)
VAL_STEPS = STEPS[::50]


def healthy(rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    base = 2.0 * np.exp(-STEPS / 250) + 0.3
    lr = np.where(STEPS < 50, 1e-3 * STEPS / 50,
                  1e-3 * 0.5 * (1 + np.cos(np.pi * (STEPS - 50) / (N - 50))))
    return {
        "train/loss": (STEPS, base * (1 + rng.normal(0, 0.03, N))),
        "val/loss": (VAL_STEPS, (2.0 * np.exp(-VAL_STEPS / 250) + 0.35) * (1 + rng.normal(0, 0.01, len(VAL_STEPS)))),
        "train/grad_norm": (STEPS, np.abs(1.5 * np.exp(-STEPS / 400) + 0.5 + rng.normal(0, 0.15, N))),
        "lr": (STEPS, lr),
        "sys/rss_bytes": (STEPS, 2e9 * (1 + rng.normal(0, 0.005, N))),
        "perf/samples_per_s": (STEPS, 1200 * (1 + rng.normal(0, 0.05, N))),
    }


def _set(series, key, fn):
    steps, values = series[key]
    series[key] = (steps, fn(steps, values.copy()))


def nan_loss(s):
    _set(s, "train/loss", lambda st, v: np.where((st >= 500) & (st < 505), np.nan, v))


def inf_grad(s):
    _set(s, "train/grad_norm", lambda st, v: np.where(st == 640, np.inf, v))


def loss_spike(s):
    _set(s, "train/loss", lambda st, v: np.where(st == 400, v * 5, v))


def divergence(s):
    _set(s, "train/loss", lambda st, v: np.where(st >= 600, v * np.exp((st - 600) / 80.0), v))


def plateau(s):
    _set(s, "train/loss", lambda st, v: np.where(st >= 300, v[300] * (1 + 0.03 * np.sin(st)), v))


def grad_spike(s):
    _set(s, "train/grad_norm", lambda st, v: np.where(st == 700, v * 25, v))


def grad_growth(s):
    _set(s, "train/grad_norm", lambda st, v: np.where(st >= 500, v * np.exp((st - 500) / 60.0), v))


def vanishing(s):
    _set(s, "train/grad_norm", lambda st, v: np.where(st >= 500, v * 1e-7, v))


def lr_zero(s):
    _set(s, "lr", lambda st, v: np.where((st >= 400) & (st < 450), 0.0, v))


def lr_jump(s):
    _set(s, "lr", lambda st, v: np.where(st >= 600, v * 10, v))


def throughput(s):
    _set(s, "perf/samples_per_s", lambda st, v: np.where((st >= 500) & (st < 620), v * 0.4, v))


def memory_leak(s):
    _set(s, "sys/rss_bytes", lambda st, v: v * (1 + st / N * 1.5))


def overfit(s):
    _set(s, "val/loss", lambda st, v: np.where(st > 500, v[10] * (1 + (st - 500) / 400), v))


METRIC_CASES = [
    # name, expected kind, key, planted (start, end), modifier
    ("nan_loss", "nonfinite", "train/loss", (500, 504), nan_loss),
    ("inf_grad", "nonfinite", "train/grad_norm", (640, 640), inf_grad),
    ("loss_spike", "loss_spike", "train/loss", (400, 400), loss_spike),
    ("divergence", "divergence", "train/loss", (700, 999), divergence),
    ("plateau", "plateau", "train/loss", (750, 999), plateau),
    ("grad_spike", "gradient_explosion", "train/grad_norm", (700, 700), grad_spike),
    ("grad_growth", "gradient_explosion", "train/grad_norm", (800, 999), grad_growth),
    ("vanishing", "vanishing_gradients", "train/grad_norm", (520, 999), vanishing),
    ("lr_zero", "lr_anomaly", "lr", (400, 449), lr_zero),
    ("lr_jump", "lr_anomaly", "lr", (600, 600), lr_jump),
    ("throughput", "throughput_drop", "perf/samples_per_s", (520, 600), throughput),
    ("memory_leak", "memory_growth", "sys/rss_bytes", (200, 999), memory_leak),
    ("overfit", "overfitting", "val/loss", (600, 950), overfit),
]

NOW = dt.datetime(2024, 1, 2)


def build(builder, *, healthy_seeds: int = 5):
    """Add every planted case and the healthy controls to a StoreBuilder; returns cases."""
    rng = np.random.default_rng(1234)
    cases = []
    for name, kind, key, rng_steps, modify in METRIC_CASES:
        series = healthy(rng)
        modify(series)
        builder.run(name, config={"case": name})
        for k, (steps, values) in series.items():
            builder.metric(name, k, values, steps)
        cases.append((name, kind, key, rng_steps))
    for seed in range(healthy_seeds):
        rid = f"healthy-{seed}"
        builder.run(rid, config={"seed": seed})
        for k, (steps, values) in healthy(np.random.default_rng(seed)).items():
            builder.metric(rid, k, values, steps)
    # run-level and data cases
    builder.run("crashed", status="crashed", config={"case": "crashed"})
    cases.append(("crashed", "crashed", None, None))
    builder.run("stalled", status="running", last_seen=NOW - dt.timedelta(hours=2),
                config={"case": "stalled"})
    cases.append(("stalled", "stalled", None, None))
    builder.run("dupes", config={"case": "dupes"})
    builder.items("dupes", 1, ["a", "b", "c"], epoch=0)
    builder.items("dupes", 2, ["a", "d"], epoch=0)
    builder.items("dupes", 3, ["a", "b", "c", "d"], epoch=1)
    cases.append(("dupes", "data_duplicates", "train", (1, 2)))
    builder.run("leaky", config={"case": "leaky"})
    builder.items("leaky", 1, ["x1", "x2", "x3"], epoch=0)
    builder.items("leaky", 5, ["x3", "v1"], split="val", epoch=0)
    cases.append(("leaky", "data_leakage", "eval", (1, 5)))
    builder.run("unseen", config={"case": "unseen"})
    builder.dataset("unseen", "ds", 10, split="train")
    builder.items("unseen", 1, [f"i{k}" for k in range(8)], epoch=0)
    builder.items("unseen", 2, [f"i{k}" for k in range(8)], epoch=1)
    cases.append(("unseen", "data_unseen", "train", None))
    builder.run("samples", config={"case": "samples"})
    for step, score in enumerate([0.5, 0.6, 0.7, 0.8, 0.82, 0.6, 0.55, 0.5]):
        builder.sample("samples", step * 100, "gen", "clip_score", score)
    cases.append(("samples", "sample_degradation", "clip_score", (300, 700)))
    builder.run("samples-ok", config={"case": "samples-ok"})
    for step, score in enumerate([0.5, 0.6, 0.7, 0.8, 0.82, 0.83, 0.82, 0.84]):
        builder.sample("samples-ok", step * 100, "gen", "clip_score", score)
    return cases
