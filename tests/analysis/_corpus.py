"""A healthy and a sick corpus of training runs, written through the real emitter.

Why: detectors tuned on a handful of hand-made curves raised warnings on ordinary runs
(fp16 loss scales at their cap, log-normal gradient noise, a smooth loss's first step).
This module generates many realistic runs with the key sets and schedules real training
scripts log, writes them with ``runlake.init``/``run.log`` into segments, ingests them into
a real DuckDB store and runs the real detectors (``anomalies.detect``). Used by
``tests/analysis/test_corpus.py`` (a small corpus) and ``bench/bench_detectors_corpus.py``
(the full one, >= 200 healthy runs).

A healthy run: ``lr`` with warm-up + cosine, step decay, linear decay or constant;
``train/loss`` falling with training progress (the integral of lr^0.3) and with the lr
itself, with multiplicative log-normal noise (the value logged every k steps is the mean
of those k steps, as HF's Trainer logs it); ``val/loss`` and ``val/acc`` every N steps;
``train/grad_norm`` with log-normal noise (sigma 0.1-0.4) and large first steps; fp16 runs
log ``loss_scale`` (constant at its cap, or GradScaler-like halvings on overflow, where the
grad norm is inf and the step is skipped, and doubling after 2000 clean steps);
``perf/samples_per_sec`` with slow first steps and dips after evaluations;
``sys/gpu_mem`` ramping up then flat; some runs log per-parameter ``grad/norm/<name>``
every 50 steps (like ``runlake.torch.watch``), some are DDP runs (ranks > 0 log their own
loss, throughput and memory), some were killed and resumed (overlapping or missing
steps), some log data lineage (disjoint train/val items).

A sick run is a healthy run with one planted problem (:data:`SICK_KINDS`): the detector
kind that must find it, its key and the step range it must overlap.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROJECT = "corpus"
PARAMS = ("embed.weight", "layers.0.attn.weight", "layers.0.mlp.weight", "layers.1.attn.weight",
          "layers.1.mlp.weight", "head.weight", "head.bias")


@dataclass
class Case:
    """One run of the corpus and, when sick, what must be found."""

    name: str
    kind: str | None = None          # expected finding kind (None: healthy)
    key: str | None = None           # expected key (None: any)
    steps: tuple[int, int] | None = None  # planted step range the finding must overlap
    run_id: str | None = None
    spec: dict = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- series

def _spec(rng: np.random.Generator) -> dict:
    """Random but realistic hyperparameters and logging habits of one run."""
    n = int(rng.choice([800, 1200, 2000, 3000]))
    return {
        "n": n,
        "log_every": int(rng.choice([1, 1, 2, 5, 10])),
        "eval_every": int(rng.choice([50, 100, 200, 250])),
        "schedule": str(rng.choice(["cosine", "cosine", "step", "linear", "constant"])),
        "warmup": int(n * rng.choice([0.0, 0.02, 0.05, 0.1])),
        "peak_lr": float(10 ** rng.uniform(-4.3, -2.5)),
        "loss0": float(rng.choice([2.3, 4.6, 6.9, 10.8])),
        "floor": float(rng.uniform(0.05, 0.5)),
        "tau": float(rng.uniform(0.03, 0.3)),
        "alpha": float(rng.uniform(0.5, 1.5)),
        "lr_term": float(rng.uniform(0.05, 0.3)),
        "loss_sigma": float(rng.uniform(0.01, 0.08)),
        "grad_sigma": float(rng.uniform(0.1, 0.4)),
        "grad_level": float(10 ** rng.uniform(-1, 1)),
        "fp16": str(rng.choice(["none", "none", "cap", "scaler", "scaler_before"])),
        "throughput": float(rng.uniform(200, 5000)),
        "tp_sigma": float(rng.uniform(0.02, 0.08)),
        "mem": float(rng.uniform(2e9, 7e10)),
        "watch": bool(rng.random() < 0.3),
        "world": int(rng.choice([1, 1, 1, 2, 4])),
        "resume": str(rng.choice(["none", "none", "none", "overlap", "gap"])),
        "lineage": bool(rng.random() < 0.25),
    }


def _lr(spec: dict, s: np.ndarray) -> np.ndarray:
    n, w, peak = spec["n"], spec["warmup"], spec["peak_lr"]
    frac = np.clip((s - w) / max(n - w, 1), 0, 1)
    kind = spec["schedule"]
    if kind == "cosine":
        main = peak * 0.5 * (1 + np.cos(np.pi * frac))
    elif kind == "step":
        main = peak * np.where(frac < 0.5, 1.0, np.where(frac < 0.75, 0.1, 0.01))
    elif kind == "linear":
        main = peak * (1 - frac)
    else:
        main = np.full(s.shape, peak)
    if w:
        main = np.where(s < w, peak * (s + 1) / w, main)
    return main


def _loss_curve(spec: dict, s: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """Clean loss: falls with progress (integral of lr / peak) and with the lr itself."""
    progress = np.cumsum((lr / spec["peak_lr"]) ** 0.3) / spec["n"]  # a smaller lr still learns
    excess = spec["loss0"] - spec["floor"]
    trend = spec["floor"] + excess * (1 + progress / spec["tau"]) ** -spec["alpha"]
    rel = np.where(s < spec["warmup"], 1.0, lr / spec["peak_lr"])  # no rise during warm-up
    return trend * (1 + spec["lr_term"] * rel)


def _scaler(spec: dict, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """GradScaler-like loss scale after each step's update, and the overflow steps."""
    scale = np.empty(n)
    overflow = np.zeros(n, bool)
    if spec["fp16"] == "cap":
        scale[:] = 65536.0
        return scale, overflow
    cur, clean = 65536.0, 0
    early = set(range(int(rng.integers(0, 4))))
    rate = rng.uniform(1 / 3000, 1 / 600)
    for i in range(n):
        if i in early or rng.random() < rate:
            overflow[i] = True
            cur, clean = cur / 2, 0
        else:
            clean += 1
            if clean >= 2000:
                cur, clean = min(cur * 2, 2.0 ** 24), 0
        scale[i] = cur
    return scale, overflow


def healthy_series(spec: dict, rng: np.random.Generator) -> dict:
    """Every key of one run as ``{key: (steps, values)}`` plus per-rank extras in ``_ranks``."""
    n = spec["n"]
    s = np.arange(n)
    lr = _lr(spec, s)
    clean = _loss_curve(spec, s, lr)
    loss = clean * np.exp(rng.normal(0, spec["loss_sigma"], n))
    early = 1 + 4 * np.exp(-s / max(0.01 * n, 3))  # large gradients during the first steps
    drift = 1 + 0.5 * s / n
    grad = spec["grad_level"] * early * drift * np.exp(rng.normal(0, spec["grad_sigma"], n))
    tp = spec["throughput"] * (1 + rng.normal(0, spec["tp_sigma"], n))
    tp[: int(rng.integers(3, 10))] *= rng.uniform(0.2, 0.5)
    evals = s[(s % spec["eval_every"] == 0) & (s > 0)]
    tp[np.minimum(evals + 1, n - 1)] *= 0.5
    mem = spec["mem"] * np.minimum(1.0, 0.3 + s / max(0.01 * n, 5)) * (1 + rng.normal(0, 0.002, n))
    mem = np.where(s > spec["eval_every"], mem * 1.05, mem)
    logged = s[s % spec["log_every"] == 0]
    k = spec["log_every"]  # like HF's Trainer: the loss logged is the mean since the last log
    window = np.convolve(loss, np.ones(k) / k)[: n]
    window[: k] = np.cumsum(loss[: k]) / np.arange(1, k + 1)
    out = {
        "train/loss": (logged, window[logged]),
        "lr": (logged, lr[logged]),
        "train/grad_norm": (logged, grad[logged]),
        "perf/samples_per_sec": (logged, tp[logged]),
        "sys/gpu_mem": (s[::10], mem[::10]),
    }
    if spec["fp16"] != "none":
        scale, overflow = _scaler(spec, rng, n)
        if spec["fp16"] == "scaler_before":  # logged before update(): the drop shows one step late
            scale = np.concatenate([[65536.0], scale[:-1]])
        g = grad.copy()
        g[overflow] = np.inf  # unscaled gradients overflowed: the scaler skips this step
        steps = np.union1d(logged, s[overflow])
        out["train/grad_norm"] = (steps, g[steps])
        out["loss_scale"] = (steps, scale[steps])
    ev_clean = np.interp(evals, s, clean) * 1.08
    out["val/loss"] = (evals, ev_clean * np.exp(rng.normal(0, 0.005, len(evals))))
    acc = 1 - (ev_clean - spec["floor"]) / (spec["loss0"] * 1.1) * 0.9 - 0.05
    out["val/acc"] = (evals, np.clip(acc + rng.normal(0, 0.003, len(evals)), 0, 1))
    if spec["watch"]:
        ws = s[(s % 50 == 0) & (s > 0)]
        share = rng.dirichlet(np.ones(len(PARAMS)))
        out["grad/norm"] = (ws, grad[ws])
        for p, w in zip(PARAMS, share):
            out[f"grad/norm/{p}"] = (ws, grad[ws] * np.sqrt(w) * np.exp(rng.normal(0, 0.1, len(ws))))
    ranks = {}
    for r in range(1, spec["world"]):
        rl = clean * np.exp(rng.normal(0, spec["loss_sigma"], n))
        ranks[r] = {"train/loss": (logged, rl[logged]),
                    "perf/samples_per_sec": (logged, tp[logged] * rng.uniform(0.95, 1.05)),
                    "sys/gpu_mem": (s[::10], mem[::10])}
    out["_ranks"] = ranks
    return out


# --------------------------------------------------------------------------- planted problems

def _mod(series, key, fn):
    steps, values = series[key]
    series[key] = (steps, fn(steps, values.astype(float).copy()))


def _at(series, key, frac) -> int:
    """The logged step of ``key`` nearest to ``frac`` of the run."""
    steps = series[key][0]
    return int(steps[min(int(len(steps) * frac), len(steps) - 1)])


def plant(kind: str, series: dict, spec: dict, rng) -> tuple[str, str, tuple[int, int]]:
    """Plant one problem; returns (finding kind, key, step range)."""
    n = spec["n"]
    last = n - 1
    if kind == "nan_loss":
        s0 = _at(series, "train/loss", rng.uniform(0.4, 0.7))
        _mod(series, "train/loss", lambda st, v: np.where(st >= s0, np.nan, v))
        return "nonfinite", "train/loss", (s0, last)
    if kind == "inf_grad":  # an fp32 run: an inf gradient norm is a real problem
        s0 = _at(series, "train/grad_norm", rng.uniform(0.3, 0.8))
        _mod(series, "train/grad_norm", lambda st, v: np.where(st == s0, np.inf, v))
        return "nonfinite", "train/grad_norm", (s0, s0)
    if kind == "loss_spike":
        s0 = _at(series, "train/loss", rng.uniform(0.3, 0.8))
        _mod(series, "train/loss", lambda st, v: np.where(st == s0, v * rng.uniform(3, 6), v))
        return "loss_spike", "train/loss", (s0, s0)
    if kind == "early_spike":  # the 4.36 -> 9.58 within steps 0-3
        steps, v = series["train/loss"]
        v = v.astype(float) * (4.36 / float(v[0]))
        v[2] = 9.58
        series["train/loss"] = (steps, v)
        return "loss_spike", "train/loss", (int(steps[0]), int(steps[3]))
    if kind == "divergence":
        s0 = _at(series, "train/loss", rng.uniform(0.4, 0.7))
        rate = n * rng.uniform(0.04, 0.1)
        _mod(series, "train/loss", lambda st, v: np.where(st >= s0, v * np.exp((st - s0) / rate), v))
        return "divergence", "train/loss", (s0, last)
    if kind == "plateau":
        s0 = _at(series, "train/loss", rng.uniform(0.2, 0.35))
        steps, v = series["train/loss"]
        level = float(np.median(v[(steps >= s0) & (steps < s0 + 50)]))
        sig = spec["loss_sigma"]
        v = np.where(steps >= s0, level * np.exp(rng.normal(0, sig, len(v))), v)
        series["train/loss"] = (steps, v)
        return "plateau", "train/loss", (s0 + (n - s0) // 2, last)
    if kind == "grad_spike":
        s0 = _at(series, "train/grad_norm", rng.uniform(0.3, 0.8))
        _mod(series, "train/grad_norm", lambda st, v: np.where(st == s0, v * rng.uniform(60, 200), v))
        return "gradient_explosion", "train/grad_norm", (s0, s0)
    if kind == "grad_growth":
        s0 = _at(series, "train/grad_norm", rng.uniform(0.4, 0.6))
        rate = n * rng.uniform(0.03, 0.06)
        _mod(series, "train/grad_norm", lambda st, v: np.where(st >= s0, v * np.exp((st - s0) / rate), v))
        return "gradient_explosion", "train/grad_norm", (s0, last)
    if kind == "param_spike":  # one watched step, every parameter's norm explodes: one finding
        spec["watch"] = True
        extra = healthy_series({**spec, "fp16": "none", "world": 1}, rng)
        for k, v in extra.items():
            if k.startswith("grad/norm"):
                series[k] = v
        s0 = _at(series, "grad/norm", rng.uniform(0.4, 0.7))
        for k in [k for k in series if k.startswith("grad/norm")]:
            _mod(series, k, lambda st, v: np.where(st == s0, v * 300, v))
        return "gradient_explosion", "grad/norm", (s0, s0)
    if kind == "vanishing":
        s0 = _at(series, "train/grad_norm", rng.uniform(0.3, 0.6))
        _mod(series, "train/grad_norm", lambda st, v: np.where(st >= s0, v * 1e-7, v))
        return "vanishing_gradients", "train/grad_norm", (s0, last)
    if kind == "lr_zero":
        s0 = _at(series, "lr", rng.uniform(0.3, 0.5))
        s1 = s0 + n // 10
        _mod(series, "lr", lambda st, v: np.where((st >= s0) & (st < s1), 0.0, v))
        return "lr_anomaly", "lr", (s0, s1)
    if kind == "lr_jump":  # a resumed scheduler that restarted: lr x10 at once
        s0 = _at(series, "lr", rng.uniform(0.5, 0.7))
        _mod(series, "lr", lambda st, v: np.where(st >= s0, v * 10, v))
        return "lr_anomaly", "lr", (s0, s0)
    if kind == "throughput_drop":
        s0 = _at(series, "perf/samples_per_sec", rng.uniform(0.3, 0.6))
        s1 = s0 + n // 8
        _mod(series, "perf/samples_per_sec",
             lambda st, v: np.where((st >= s0) & (st < s1), v * 0.4, v))
        return "throughput_drop", "perf/samples_per_sec", (s0, s1)
    if kind == "memory_leak":
        _mod(series, "sys/gpu_mem", lambda st, v: v * (1 + 1.5 * st / n))
        return "memory_growth", "sys/gpu_mem", (n // 5, last)
    if kind == "overfit":
        steps, v = series["val/loss"]
        s0 = int(steps[len(steps) // 3])
        best = float(v[len(steps) // 3])
        v = np.where(steps > s0, best * (1 + 0.6 * (steps - s0) / n), v)
        series["val/loss"] = (steps, v)
        return "overfitting", "val/loss", (s0, last)
    raise ValueError(f"unknown sick kind {kind!r}")


METRIC_KINDS = ("nan_loss", "inf_grad", "loss_spike", "early_spike", "divergence",
                "plateau", "grad_spike", "grad_growth", "param_spike", "vanishing", "lr_zero",
                "lr_jump", "throughput_drop", "memory_leak", "overfit")
RUN_KINDS = ("leakage", "duplicates", "crashed")
SICK_KINDS = METRIC_KINDS + RUN_KINDS


# --------------------------------------------------------------------------- writing

_QUIET = dict(console=False, system_interval=0, capture_logging=False)


def _events(series: dict, lo: int, hi: int):
    """(step, {key: value}) in step order for the steps in [lo, hi]."""
    by_step: dict[int, dict] = {}
    for key, pair in series.items():
        if key.startswith("_"):
            continue
        steps, values = pair
        sel = (steps >= lo) & (steps <= hi)
        for st, v in zip(steps[sel].tolist(), values[sel].tolist()):
            by_step.setdefault(st, {})[key] = v
    return sorted(by_step.items())


def _lineage(run, spec: dict, lo: int, hi: int, sick: str | None) -> None:
    """Train items 0..63 drawn once per epoch (8 per logged batch), val items v0..v15."""
    per_epoch = 8
    for step in range(lo - lo % 25, hi + 1, 25):
        if step < lo:
            continue
        k = step // 25
        epoch, batch = divmod(k, per_epoch)
        items = [f"t{batch * 8 + j}" for j in range(8)]
        if sick == "duplicates" and batch == 3 and epoch == 1:
            items[0] = "t0"  # drawn twice within epoch 1
        run.log_data(items, split="train", epoch=epoch, step=step)
        if step % spec["eval_every"] == 0 and step > 0:
            val = [f"v{j}" for j in range(16)]
            if sick == "leakage":
                val[:3] = ["t5", "t9", "t17"]
            run.log_data(val, split="val", step=step)


def _write(root: Path, name: str, series: dict, spec: dict, sick: str | None) -> str:
    import runlake

    n = spec["n"]
    opts = dict(root=root, **_QUIET)
    config = {"lr": spec["peak_lr"], "schedule": spec["schedule"], "fp16": spec["fp16"]}
    old = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    try:
        for k in old:
            os.environ.pop(k, None)
        if spec["world"] > 1:
            os.environ.update(RANK="0", WORLD_SIZE=str(spec["world"]), LOCAL_RANK="0")
        attempts = [(0, n - 1)]
        if spec["resume"] != "none":
            crash = int(n * 0.55)
            ckpt = crash - crash % 100
            attempts = ([(0, crash), (ckpt, n - 1)] if spec["resume"] == "overlap"
                        else [(0, ckpt - 37), (ckpt, n - 1)])
        run_id = None
        for i, (lo, hi) in enumerate(attempts):
            final = i == len(attempts) - 1
            run = runlake.init(PROJECT, name, config=config, resume=run_id or False, **opts)
            run_id = run.id
            if spec["lineage"] or sick in ("leakage", "duplicates"):
                if i == 0:
                    run.log_dataset("toy", items=64, split="train")
                _lineage(run, spec, lo, hi, sick)
            for step, values in _events(series, lo, hi):
                run.log(values, step=step)
            status = "finished" if final else "killed"
            if final and sick == "crashed":
                status = "failed"
            run.finish(status=status)
        for rank, extra in series["_ranks"].items():
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
            run = runlake.init(PROJECT, name, config=config, run_id=run_id, **opts)
            for step, values in _events(extra, 0, n - 1):
                run.log(values, step=step)
            run.finish()
        return run_id
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build(root: Path, n_healthy: int, sick_per_kind: int = 1, seed: int = 0,
          sick_kinds=SICK_KINDS) -> list[Case]:
    """Write ``n_healthy`` healthy runs and ``sick_per_kind`` runs of each sick kind."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_healthy):
        spec = _spec(rng)
        series = healthy_series(spec, rng)
        case = Case(f"healthy-{i:03d}", spec=spec)
        case.run_id = _write(root, case.name, series, spec, None)
        cases.append(case)
    for kind in sick_kinds:
        for j in range(sick_per_kind):
            spec = _spec(rng)
            spec["resume"] = "none" if kind == "lr_jump" else spec["resume"]
            if kind == "inf_grad":
                spec["fp16"] = "none"
            if kind == "early_spike":
                spec["log_every"] = 1
            if kind == "overfit":  # a rise over the last evaluations needs a few of them
                spec["eval_every"] = min(spec["eval_every"], spec["n"] // 10)
            series = healthy_series(spec, rng)
            if kind in METRIC_KINDS:
                found_kind, key, steps = plant(kind, series, spec, rng)
            else:
                found_kind, key, steps = {
                    "leakage": ("data_leakage", "eval", None),
                    "duplicates": ("data_duplicates", "train", None),
                    "crashed": ("crashed", None, None),
                }[kind]
            case = Case(f"sick-{kind}-{j}", found_kind, key, steps, spec=spec)
            case.run_id = _write(root, case.name, series, spec, kind)
            cases.append(case)
    return cases


# --------------------------------------------------------------------------- scoring

def _overlaps(row: dict, case: Case) -> bool:
    if case.steps is None:
        return True
    lo, hi = case.steps
    tol = max(20, case.spec.get("n", 1000) // 50)
    a = row["step_start"] if row["step_start"] is not None else row["step_end"]
    b = row["step_end"] if row["step_end"] is not None else row["step_start"]
    if a is None:
        return True
    return a <= hi + tol and b >= lo - tol


def score(found, cases: list[Case]) -> dict:
    """Warnings on healthy runs and recall (a warning+ finding of the planted kind, key and
    steps) on sick runs. ``found`` is a polars frame of findings (``anomalies.COLUMNS``)."""
    rows = found.to_dicts()
    by_run: dict[str, list[dict]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
    false_alarms, missed, hits, info = [], [], 0, 0
    for case in cases:
        mine = by_run.get(case.run_id, [])
        loud = [r for r in mine if r["severity"] in ("warning", "critical")]
        if case.kind is None:
            false_alarms += [(case.name, r["kind"], r["key"], r["step_start"], r["message"]) for r in loud]
            info += len(mine) - len(loud)
            continue
        ok = [r for r in loud if r["kind"] == case.kind  # a family finding counts for its key
              and (case.key is None or r["key"] in (case.key, f"{case.key}/*")) and _overlaps(r, case)]
        if ok:
            hits += 1
        else:
            missed.append((case.name, case.kind, case.key, case.steps,
                           [(r["kind"], r["key"], r["severity"], r["step_start"], r["step_end"]) for r in mine]))
    healthy = [c for c in cases if c.kind is None]
    sick = [c for c in cases if c.kind is not None]
    return {
        "healthy_runs": len(healthy), "healthy_warnings": len(false_alarms),
        "healthy_runs_warned": len({f[0] for f in false_alarms}), "healthy_info": info,
        "sick_runs": len(sick), "sick_found": hits,
        "recall": hits / len(sick) if sick else 1.0,
        "false_alarms": false_alarms, "missed": missed,
    }


def run_corpus(workdir: Path, n_healthy: int, sick_per_kind: int = 1, seed: int = 0) -> dict:
    """Generate, ingest into ``workdir/store.duckdb``, detect, score. Returns the score."""
    from runlake.analysis.anomalies import detect, list_anomalies
    from runlake.ingest import ingest
    from runlake.store import read_store

    root = Path(workdir) / "lake"
    db = Path(workdir) / "store.duckdb"
    with warnings.catch_warnings():  # online alerts are counted from the store instead
        warnings.simplefilter("ignore")
        cases = build(root, n_healthy, sick_per_kind, seed)
    ingest(root=root, db=db)
    detect(db)
    with read_store(db) as con:
        found = list_anomalies(con)
        online = con.sql("SELECT run_id, alert, key, step, message FROM alerts "
                         "WHERE source = 'online'").fetchall()
        points = con.sql("SELECT count(*) FROM metrics").fetchall()[0][0]
    result = score(found, cases)
    healthy = {c.run_id: c.name for c in cases if c.kind is None}
    result["online_false_alarms"] = [(healthy[r[0]], *r[1:]) for r in online if r[0] in healthy]
    result["points"] = points
    return result

