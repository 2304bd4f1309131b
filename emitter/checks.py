"""Online checks: cheap in-process alerts evaluated once per flush, never per point.

Two checks run on the writer thread after each batch is encoded:

* **nonfinite** - a metric became NaN or ±Inf. The encoder already finds these (it has to
  rewrite them as tokens), so the check costs nothing when values are finite. One
  ``alert`` event (severity critical) and one console warning per key, ever.
* **exploding** - for keys that look like a loss or a gradient norm, the latest value of
  the flush is more than :data:`EXPLODE_FACTOR` times the median of that key's values at
  previous flushes (at least :data:`MIN_HISTORY` of them). One alert per episode: the key
  re-arms once it falls back under the threshold.

The store's analysis module runs the thorough, set-based detectors; these checks exist so
that a human watching the console learns about a diverging run within seconds.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque
from typing import Callable

from runlake.schemas.events import Alert, Event, Metrics

__all__ = ["EXPLODE_FACTOR", "MIN_HISTORY", "OnlineChecks", "watched"]

EXPLODE_FACTOR = 10.0
MIN_HISTORY = 3
HISTORY = 32
SCAN_LIMIT = 20_000
"""Events scanned backwards per flush to find the latest value of each watched key."""

_WATCH_RE = re.compile(r"loss|grad[^a-z0-9]?norm", re.IGNORECASE)

NONFINITE_SUGGESTION = (
    "lower the learning rate or enable gradient clipping; check inputs and labels for "
    "NaN/Inf; torch.autograd.set_detect_anomaly(True) finds the operation that produced it"
)
EXPLODING_SUGGESTION = (
    "the value jumped by more than {factor:g}x its recent median: lower the learning rate, "
    "add warmup or gradient clipping, and check the batch that was loaded at this step"
)


def watched(key: str) -> bool:
    """Whether the exploding check follows ``key`` (losses and gradient norms)."""
    return _WATCH_RE.search(key) is not None


class OnlineChecks:
    """Per-run state of the checks; ``review`` is the writer's per-flush hook."""

    def __init__(
        self,
        make_alert: Callable[..., Alert],
        emit: Callable[[list[Event]], None],
        warn: Callable[[str, str], None],
    ) -> None:
        self._make_alert = make_alert
        self._emit = emit
        self._warn = warn
        self._nonfinite_seen: set[str] = set()
        self._history: dict[str, deque[float]] = {}
        self._armed: dict[str, bool] = {}
        self._watch_cache: dict[str, bool] = {}
        self.latest: dict[str, float] = {}
        """Latest value of each watched key (read by the console progress block)."""

    def _is_watched(self, key: str) -> bool:
        hit = self._watch_cache.get(key)
        if hit is None:
            hit = self._watch_cache[key] = watched(key)
        return hit

    def _raise(self, alerts: list[Event], kind: str, severity: str, key: str, value: float,
               step: int | None, message: str, suggestion: str) -> None:
        """One online alert event, and one console warning per (kind, key)."""
        alerts.append(self._make_alert(message, severity=severity, kind=kind, key=key,
                                       value=value, suggestion=suggestion, step=step,
                                       source="online"))
        self._warn(f"{kind}:{key}", f"{message}: {suggestion}")

    def review(self, batch: list[Event], nonfinite: list[tuple[Event, str, float]]) -> None:
        alerts: list[Event] = []
        for ev, key, value in nonfinite:
            if key in self._nonfinite_seen:
                continue
            self._nonfinite_seen.add(key)
            step = getattr(ev, "step", None)
            message = f"{key} is {value!r} at step {step}"
            self._raise(alerts, "nonfinite", "critical", key, value, step, message,
                        NONFINITE_SUGGESTION)
        latest = self._latest(batch)
        for key, (value, step) in latest.items():
            self.latest[key] = value
            if not math.isfinite(value):
                continue
            hist = self._history.get(key)
            if hist is None:
                hist = self._history[key] = deque(maxlen=HISTORY)
            if len(hist) >= MIN_HISTORY:
                median = statistics.median(hist)
                exploded = median != 0 and abs(value) > EXPLODE_FACTOR * abs(median)
                if exploded and self._armed.get(key, True):
                    self._armed[key] = False
                    suggestion = EXPLODING_SUGGESTION.format(factor=EXPLODE_FACTOR)
                    message = (
                        f"{key} = {value:.6g} at step {step}, more than {EXPLODE_FACTOR:g}x "
                        f"its recent median {median:.6g}"
                    )
                    self._raise(alerts, "exploding", "warning", key, value, step, message,
                                suggestion)
                elif not exploded:
                    self._armed[key] = True
            hist.append(value)
        if alerts:
            self._emit(alerts)

    def _latest(self, batch: list[Event]) -> dict[str, tuple[float, int | None]]:
        """Latest value per watched key in the batch (scanning back at most SCAN_LIMIT)."""
        found: dict[str, tuple[float, int | None]] = {}
        done: set[str] = set()
        scanned = 0
        for ev in reversed(batch):
            if ev.__class__ is not Metrics:
                continue
            scanned += 1
            if scanned > SCAN_LIMIT:
                break
            values = ev.values
            if done.issuperset(values):
                continue
            for key, value in values.items():
                if key in done:
                    continue
                done.add(key)
                if self._is_watched(key) and isinstance(value, (int, float)):
                    found[key] = (float(value), ev.step)
        return found
