"""What a metric key is: its role (loss, gradient norm, learning rate, ...), its direction
(is smaller better?) and its family (per-parameter keys under one prefix).

Why it lives here: the emitter's online checks, the store's anomaly detectors and run
comparison all need the same answer for the same key, and the emitter must not import the
analysis package (it stays light inside training processes). This module imports only the
stdlib and ``schemas.errors``; ``runlake.analysis.roles`` re-exports it.

The rule, in order (first match wins; ``fnmatch`` globs, case-insensitive):

1. ``sys/*`` keys are system stats: ``memory`` when they name memory, else no role.
2. ``loss_scale`` (fp16 loss scaling), ``grad_norm``, ``lr``, ``throughput``, ``memory``
   are checked before losses: ``loss_scale`` contains "loss" but is not one.
3. ``*loss*``, ``*nll*``, ``*perplexity*``, ``*ppl*`` are losses: ``val_loss`` when the key
   also matches a validation pattern, else ``train_loss``.
4. ``accuracy`` (acc, top1/top5), ``score`` (f1, bleu, auc, reward, ...) are higher-better;
   ``error`` (err, wer, mse, fid, latency, ...) is lower-better.

Direction follows the role: losses, errors, gradient norms and memory are better small;
accuracy, scores and throughput better large; a learning rate or a loss scale has no
better side (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Iterable

from runlake.schemas.errors import ConfigError

__all__ = [
    "DEFAULT_ROLES",
    "DIRECTIONS",
    "ROLE_NAMES",
    "Roles",
    "SYSTEM_PREFIX",
    "direction",
    "is_system_key",
    "lower_is_better",
    "system_key",
]

SYSTEM_PREFIX = "sys/"
"""The prefix of system stats among metric keys (``sys/cpu_pct``). Added only by
:func:`system_key` (the emitter's sampler, ingest, the TensorBoard mirror): applied in three
places it once came out twice (``sys/sys/cpu_pct``)."""


def system_key(name: str) -> str:
    """``name`` as a system metric key: ``sys/`` added unless it is already there.

    Example:
        >>> system_key("cpu_pct"), system_key("sys/cpu_pct")
        ('sys/cpu_pct', 'sys/cpu_pct')
    """
    return name if name.startswith(SYSTEM_PREFIX) else SYSTEM_PREFIX + name


def is_system_key(key: str) -> bool:
    """True for a system stat's key (``sys/...``, any case)."""
    return key[:len(SYSTEM_PREFIX)].lower() == SYSTEM_PREFIX

ROLE_NAMES = (
    "train_loss", "val_loss", "grad_norm", "lr", "loss_scale", "throughput", "memory",
    "accuracy", "score", "error",
)

DIRECTIONS = {
    "train_loss": "min", "val_loss": "min", "error": "min", "grad_norm": "min", "memory": "min",
    "accuracy": "max", "score": "max", "throughput": "max", "lr": None, "loss_scale": None,
}
"""Which side is better per role: "min", "max" or None (neither)."""

# roles checked before losses, in this order (a learning rate or loss scale is no loss)
_BEFORE_LOSS = ("loss_scale", "grad_norm", "lr", "throughput", "memory")
_AFTER_LOSS = ("accuracy", "score", "error")


@dataclass(frozen=True)
class Roles:
    """Glob patterns deciding the role of each metric key (see the module docstring).

    Replace any field to fit your naming, e.g. ``Roles(loss=("nll*",), val=("dev/*",))``.
    """

    loss: tuple[str, ...] = ("*loss*", "*nll*", "*perplexity*", "*ppl*")
    val: tuple[str, ...] = ("val/*", "*val*", "valid*", "eval*", "*/eval*", "test/*", "*_test*")
    loss_scale: tuple[str, ...] = (
        "*loss_scale*", "*loss-scale*", "*lossscale*", "*loss/scale*", "*grad_scale*",
        "*scaler/scale*", "*amp/scale*",
    )
    grad_norm: tuple[str, ...] = ("*grad_norm*", "*grad-norm*", "*gradnorm*", "*grad/norm*")
    lr: tuple[str, ...] = (
        "lr", "*/lr", "lr-*", "lr_*", "*_lr", "lr/*", "*learning_rate*", "*learning-rate*",
    )
    throughput: tuple[str, ...] = (
        "*samples_per_s*", "*throughput*", "*tokens_per_s*", "*it_per_s*", "*steps_per_s*",
        "*examples_per_s*", "*samples/s*", "*tokens/s*",
    )
    memory: tuple[str, ...] = (
        "sys/rss_bytes", "sys/gpu*/mem*", "sys/*gpu_mem*", "sys/*mem_bytes*", "*memory_allocated*",
        "*mem_bytes*", "*/mem_allocated", "*/mem_reserved",
    )
    accuracy: tuple[str, ...] = (
        "acc", "*/acc", "*_acc", "*-acc", "acc_*", "acc/*", "*/acc_*", "*/acc/*", "*_acc_*",
        "*acc@*", "*accuracy*", "*top1*", "*top5*", "*top-1*", "*top-5*",
    )
    score: tuple[str, ...] = (
        "*f1*", "*bleu*", "*rouge*", "*auc*", "*auroc*", "iou*", "*/iou*", "*_iou*", "*miou*",
        "dice*", "*/dice*", "*_dice*", "*psnr*", "*ssim*", "*precision*", "*recall*", "*reward*",
        "*score*", "r2", "*/r2", "*_r2", "*meteor*", "*cider*",
        "*ndcg*", "*mrr*", "*map@*", "*/map", "*kappa*", "*win_rate*", "*pass@*",
        "*exact_match*", "*spearman*", "*pearson*",
    )
    error: tuple[str, ...] = (
        "*err*", "wer", "*/wer", "*_wer", "cer", "*/cer", "*_cer", "fid*", "*/fid*", "*_fid*",
        "*mse*", "*mae*",
        "*distance*", "*lpips*", "*regret*", "*latency*", "*mape*",
    )

    @staticmethod
    def _match(key: str, patterns: Iterable[str]) -> bool:
        low = key.lower()
        return any(fnmatchcase(low, p.lower()) for p in patterns)

    def role_of(self, key: str) -> str | None:
        """The role of one key (one of ``ROLE_NAMES``) or None."""
        if is_system_key(key):
            return "memory" if self._match(key, self.memory) else None
        for role in _BEFORE_LOSS:
            if self._match(key, getattr(self, role)):
                return role
        if self._match(key, self.loss):
            return "val_loss" if self._match(key, self.val) else "train_loss"
        for role in _AFTER_LOSS:
            if self._match(key, getattr(self, role)):
                return role
        return None

    def classify(self, keys: Iterable[str]) -> dict[str, str]:
        """``{key: role}`` for the keys that have a role."""
        out = {}
        for key in keys:
            role = self.role_of(key)
            if role is not None:
                out[key] = role
        return out

    def direction(self, key: str) -> str | None:
        """"min" (smaller is better), "max", or None (neither, or an unknown key)."""
        role = self.role_of(key)
        return None if role is None else DIRECTIONS[role]

    def family(self, key: str) -> str | None:
        """The prefix a per-parameter key belongs to, else None.

        ``grad/norm/layer1.weight`` belongs to ``grad/norm`` because the prefix itself has
        the key's role (a gradient norm); ``train/grad_norm`` belongs to no family
        (``train`` has no role). Findings on many members at once are one finding.
        """
        if "/" not in key:
            return None
        base = key.rsplit("/", 1)[0]
        role = self.role_of(key)
        return base if role is not None and self.role_of(base) == role else None


DEFAULT_ROLES = Roles()


def direction(key: str, mode: str | None = None) -> str | None:
    """"min", "max" or None for ``key`` by the default rule; ``mode`` ("min"/"max") overrides.

    Raises:
        ConfigError: ``mode`` is neither None, "min" nor "max".
    """
    if mode is not None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        return mode
    return DEFAULT_ROLES.direction(key)


def lower_is_better(key: str, mode: str | None = None) -> bool:
    """Whether smaller values of ``key`` are better (keys with no better side: False).

    Raises:
        ConfigError: ``mode`` is neither None, "min" nor "max".
    """
    return direction(key, mode) == "min"
