"""The catalog of anomaly detectors: what each finds, how bad it is, what to do about it.

Each :class:`Detector` words its findings: ``message(f)`` and ``suggestion(f)`` receive the
raw finding as a dict (run_id, key, step_start, step_end, value, ref) and return plain
English. ``severity`` is the usual level; a detector may raise or lower it per finding
(e.g. a divergence that never recovers is critical).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from runlake.schemas.severity import severity_rank

__all__ = ["CATALOG", "Detector", "by_name"]


def _g(x) -> str:
    if x is None:
        return "?"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _steps(f) -> str:
    a, b = f.get("step_start"), f.get("step_end")
    if a is None and b is None:
        return "the run"
    if a is None or a == b:
        return f"step {_g(b if a is None else a)}"
    return f"steps {_g(a)}–{_g(b)}"


def _ratio(f) -> str:
    v, r = f.get("value"), f.get("ref")
    if v is None or r is None or r == 0:
        return "?"
    return f"{v / r:.3g}"


def _times_level(f) -> str:
    """'5.2× its local level 0.7' or 'from a local level of 0'."""
    r = f.get("ref")
    if r is None or r == 0:
        return f"from a local level of {_g(r if r is not None else 0.0)}"
    return f"{_ratio(f)}× its local level {_g(r)}"


@dataclass(frozen=True)
class Detector:
    """One detector: its name, the kind of anomaly, default severity, and wording."""

    name: str
    kind: str
    severity: str
    description: str
    message: Callable[[dict], str] = field(repr=False, compare=False)
    suggestion: Callable[[dict], str] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        severity_rank(self.severity)  # a typo in the catalog fails at import, not in a report

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "severity": self.severity,
                "description": self.description}


CATALOG: list[Detector] = [
    Detector(
        "nonfinite", "nonfinite", "critical",
        "NaN or ±Inf values in a metric (critical for losses and gradient norms).",
        lambda f: f"{f['key']} is {_g(f['value'])} at {_steps(f)} ({int(f['ref'] or 0)} non-finite points).",
        lambda f: (f"Restart from the last checkpoint before step {_g(f['step_start'])} with the learning rate "
                   "lowered 2–10×, enable gradient clipping (max_norm=1.0), check the batch at step "
                   f"{_g(f['step_start'])} for bad inputs or labels, and with mixed precision use a loss scaler "
                   "or bf16."),
    ),
    Detector(
        "loss_spike", "loss_spike", "warning",
        "A loss point > 8 robust sigmas and 5% above its neighbours on both sides.",
        lambda f: f"{f['key']} spiked to {_g(f['value'])} at {_steps(f)}, {_times_level(f)}.",
        lambda f: (f"Inspect the batch at step {_g(f['step_start'])} (corrupt or mislabelled samples); if spikes "
                   "repeat, lower the learning rate 2×, enable gradient clipping (max_norm=1.0) or lengthen warmup."),
    ),
    Detector(
        "divergence", "divergence", "warning",
        "Training loss sustained well above its running best (3+ buckets, or into NaN).",
        lambda f: (f"{f['key']} rose to {_g(f['value'])} over {_steps(f)} against a best of {_g(f['ref'])} "
                   "earlier: training is diverging."),
        lambda f: (f"Resume from a checkpoint before step {_g(f['step_start'])} with the learning rate lowered "
                   "2–10×, enable gradient clipping (max_norm=1.0), and add or lengthen warmup."),
    ),
    Detector(
        "plateau", "plateau", "info",
        "Training loss not improving beyond noise over the last quarter (or half) of the run.",
        lambda f: (f"{f['key']} has not improved beyond noise over {_steps(f)} (best {_g(f['value'])} vs "
                   f"{_g(f['ref'])} before)."),
        lambda f: ("If the run is not converged: raise the learning rate or use a schedule with restarts, check "
                   "that the data and labels vary, and compare with a larger model; if it is converged, stop "
                   "earlier to save compute."),
    ),
    Detector(
        "grad_spike", "gradient_explosion", "warning",
        "Gradient norm spike: a point ≥3× its neighbours and > 6 robust sigmas above them (log scale).",
        lambda f: f"{f['key']} spiked to {_g(f['value'])} at {_steps(f)}, {_times_level(f)}.",
        lambda f: (f"Enable gradient clipping (max_norm=1.0), lower the learning rate 2–10×, and check the batch "
                   f"at step {_g(f['step_start'])}."),
    ),
    Detector(
        "grad_growth", "gradient_explosion", "critical",
        "Gradient norm staying above 10× its lowest earlier level, beyond its noise.",
        lambda f: (f"{f['key']} grew to {_g(f['value'])} over {_steps(f)}, {_ratio(f)}× its earlier minimum "
                   "(exploding gradients)."),
        lambda f: ("Lower the learning rate 2–10×, enable gradient clipping (max_norm=1.0), add normalisation "
                   "layers or weight decay, and check for a learning-rate schedule that increases."),
    ),
    Detector(
        "vanishing_gradients", "vanishing_gradients", "warning",
        "Gradient norm below 1/1000 of its early level (or ~0) for a window.",
        lambda f: (f"{f['key']} fell to {_g(f['value'])} over {_steps(f)} (early level {_g(f['ref'])}): "
                   "gradients are vanishing."),
        lambda f: ("Check for dead activations (use LeakyReLU/GELU), saturated sigmoids/tanh, a too-small "
                   "learning rate or a detached graph; use residual connections and proper initialisation."),
    ),
    Detector(
        "lr_zero", "lr_anomaly", "warning",
        "Learning rate zero (or negative) while the run is still training.",
        lambda f: f"{f['key']} is {_g(f['value'])} over {_steps(f)} while training continues.",
        lambda f: ("Check the scheduler: warmup/decay lengths must match the total number of steps, and "
                   "scheduler.step() must be called once per optimizer step."),
    ),
    Detector(
        "lr_jump", "lr_anomaly", "warning",
        "Learning rate jumping >2× in one step against its recent schedule (a >10× drop is info).",
        lambda f: (f"{f['key']} changed from {_g(f['ref'])} to {_g(f['value'])} at {_steps(f)} "
                   f"(×{_ratio(f)} in one step)."),
        lambda f: ("Check the scheduler and any resume logic (a restored optimizer with a fresh scheduler "
                   "restarts warmup); ignore if you use warm restarts or a step schedule on purpose."),
    ),
    Detector(
        "throughput_drop", "throughput_drop", "warning",
        "Throughput below 70% of the run's usual level.",
        lambda f: (f"{f['key']} dropped to {_g(f['value'])} over {_steps(f)} (usual {_g(f['ref'])}, "
                   f"{_ratio(f)}×)."),
        lambda f: ("Check data loading (num_workers, I/O, cache misses), other jobs on the machine, thermal "
                   "throttling, and evaluation or checkpointing running inside the training loop."),
    ),
    Detector(
        "memory_growth", "memory_growth", "warning",
        "Memory rising steadily (r² ≥ 0.8, +20% or more): a likely leak.",
        lambda f: (f"{f['key']} grew steadily from {_g(f['ref'])} to {_g(f['value'])} over {_steps(f)} "
                   f"({_ratio(f)}×)."),
        lambda f: ("Look for tensors kept across steps (append loss.item() not loss, detach logged tensors), "
                   "growing caches or lists, and DataLoader workers holding references."),
    ),
    Detector(
        "overfitting", "overfitting", "warning",
        "Validation loss rising from its minimum while the training loss keeps falling.",
        lambda f: (f"{f['key']} rose from its minimum {_g(f['ref'])} at step {_g(f['step_start'])} to "
                   f"{_g(f['value'])} by step {_g(f['step_end'])} while the training loss kept falling."),
        lambda f: (f"Use the checkpoint near step {_g(f['step_start'])} (early stopping), add regularisation "
                   "(weight decay, dropout, augmentation) or more data."),
    ),
    Detector(
        "crashed_run", "crashed", "critical",
        "Run ended as crashed or failed (critical) or killed (warning).",
        lambda f: f"The run ended with status '{f['key']}' at {_steps(f)}.",
        lambda f: ("Read the traceback and last log lines (`runlake logs RUN`), then resume from the latest "
                   "checkpoint with `runlake.init(..., resume=True)`."),
    ),
    Detector(
        "stalled_run", "stalled", "warning",
        "Run still marked running but silent for longer than max(10 min, 10 heartbeats).",
        lambda f: f"The run has sent nothing for {_g((f['value'] or 0) / 60)} minutes (last at {_steps(f)}).",
        lambda f: ("Check whether the process is alive (deadlock in a collective, hung data loader, full disk); "
                   "if it died, resume from the latest checkpoint."),
    ),
    Detector(
        "duplicate_items", "data_duplicates", "warning",
        "Items drawn more than once within the same epoch of a training split.",
        lambda f: (f"{int(f['value'] or 0)} items of split '{f['key']}' were drawn more than once within an "
                   f"epoch ({int(f['ref'] or 0)} extra draws, {_steps(f)})."),
        lambda f: ("Check the sampler: use DistributedSampler with set_epoch(), shuffle without replacement, "
                   "and make sure ranks do not read the same shard."),
    ),
    Detector(
        "train_eval_overlap", "data_leakage", "critical",
        "Items used both for training and for evaluation in the same run.",
        lambda f: (f"{int(f['value'] or 0)} of {int(f['ref'] or 0)} evaluation items were also used for "
                   "training: evaluation scores are optimistic."),
        lambda f: ("Split by a stable id (or content hash) before training, deduplicate near-duplicates, and "
                   "list the overlapping items with `runlake lineage run RUN`."),
    ),
    Detector(
        "never_seen_items", "data_unseen", "warning",
        "Items of the registered dataset never drawn although a second epoch started.",
        lambda f: (f"{int(f['value'] or 0)} of {int(f['ref'] or 0)} dataset items were never drawn, although "
                   "the run went past its first epoch."),
        lambda f: ("Check the sampler and filters (drop_last, length filters, failed decodes skipped silently) "
                   "and that the registered dataset size matches the loader."),
    ),
    Detector(
        "sample_degradation", "sample_degradation", "warning",
        "A sample quality score whose last evaluations fell well below its best.",
        lambda f: (f"Sample score {f['key']} fell from {_g(f['ref'])} (step {_g(f['step_start'])}) to "
                   f"{_g(f['value'])} (step {_g(f['step_end'])})."),
        lambda f: (f"Keep the checkpoint near step {_g(f['step_start'])}; check for overfitting or mode "
                   "collapse (lower the learning rate, add regularisation or EMA weights)."),
    ),
]


def by_name() -> dict[str, Detector]:
    return {d.name: d for d in CATALOG}
