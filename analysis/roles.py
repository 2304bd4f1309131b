"""Which metric key plays which role (loss, val loss, grad norm, learning rate, ...).

Detectors do not guess from hard-coded names: they ask a :class:`Roles` object, whose glob
patterns (case-insensitive, ``fnmatch`` syntax) default to common conventions and can be
replaced by the user, e.g. ``Roles(loss=("nll*",), val=("dev/*",))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Iterable

__all__ = ["ROLE_NAMES", "Roles"]

ROLE_NAMES = (
    "train_loss", "val_loss", "grad_norm", "lr", "throughput", "memory", "accuracy",
)


@dataclass(frozen=True)
class Roles:
    """Glob patterns deciding the role of each metric key.

    A key matching ``loss`` is a loss; it is a validation loss when it also matches ``val``,
    else a training loss. The other roles are matched in the order grad_norm, lr,
    throughput, memory, accuracy; the first match wins.
    """

    loss: tuple[str, ...] = ("*loss*", "*nll*", "*perplexity*")
    val: tuple[str, ...] = ("val/*", "*val*", "valid*", "eval*", "*/eval*", "test/*", "*_test*")
    grad_norm: tuple[str, ...] = ("*grad_norm*", "*grad-norm*", "*gradnorm*", "*grad/norm*")
    lr: tuple[str, ...] = (
        "lr", "*/lr", "lr-*", "lr_*", "*_lr", "lr/*", "*learning_rate*", "*learning-rate*",
    )
    throughput: tuple[str, ...] = (
        "*samples_per_s*", "*throughput*", "*tokens_per_s*", "*it_per_s*", "*steps_per_s*",
        "*examples_per_s*",
    )
    memory: tuple[str, ...] = ("sys/rss_bytes", "sys/gpu*/mem*", "*memory_allocated*", "*mem_bytes*")
    accuracy: tuple[str, ...] = ("*acc*", "*top1*", "*top5*")

    @staticmethod
    def _match(key: str, patterns: Iterable[str]) -> bool:
        low = key.lower()
        return any(fnmatchcase(low, p.lower()) for p in patterns)

    def role_of(self, key: str) -> str | None:
        """The role of one key (one of ``ROLE_NAMES``) or None."""
        if self._match(key, self.grad_norm):
            return "grad_norm"
        if self._match(key, self.loss):
            return "val_loss" if self._match(key, self.val) else "train_loss"
        for role in ("lr", "throughput", "memory", "accuracy"):
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
