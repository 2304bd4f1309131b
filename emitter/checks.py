"""Online checks: cheap in-process alerts evaluated once per flush, never per point.

Two checks run on the writer thread after each batch is encoded:

* **nonfinite** - a metric became NaN or ±Inf. The encoder already finds these (it has to
  rewrite them as tokens), so the check costs nothing when values are finite. One
  ``alert`` event (severity critical) and one console warning per key, ever.
* **exploding** - for losses and gradient norms, the latest value of the flush is more
  than :data:`EXPLODE_FACTOR` times the median of that key's values at previous flushes
  (at least :data:`MIN_HISTORY` of them); for a gradient norm also more than
  ``exp(8 sigma)`` times it, sigma being the robust spread of its log history (log-normal
  noise of sigma 0.35 is healthy). One alert per episode: the key re-arms once it falls
  back under the threshold.

Which key is a loss or a gradient norm is the one rule of ``runlake.schemas.metric_keys``
(shared with the store's detectors): ``loss_scale`` is no loss, and per-parameter keys
(``grad/norm/<name>``) are left to their aggregate (``grad/norm``), so one bad step is one
alert. In an fp16 run (it logs a loss scale), a non-finite gradient norm where the loss
scale drops (at the same or the next logged scale, or before the first one: the scaler
calibrating) is an overflow the scaler skipped: no alert. The verdict may wait for the
next flush when the scale is logged after the gradient norm.

The store's analysis module runs the thorough, set-based detectors; these checks exist so
that a human watching the console learns about a diverging run within seconds.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from typing import Callable

from runlake.schemas.events import Alert, Event, Metrics
from runlake.schemas.metric_keys import DEFAULT_ROLES

__all__ = ["EXPLODE_FACTOR", "MIN_HISTORY", "NOISE_Z", "OnlineChecks", "watched"]

EXPLODE_FACTOR = 10.0
MIN_HISTORY = 3
HISTORY = 32
SCAN_LIMIT = 20_000
"""Events scanned backwards per flush to find the latest value of each watched key."""
NOISE_Z = 8.0
"""Robust log-sigmas of its own history a gradient norm must exceed to be exploding."""
PENDING_FLUSHES = 2
"""Flushes a possible fp16 overflow waits for the loss scale before it is alerted."""
MAX_JUDGED = 32
"""Possible fp16 overflows judged per key and flush."""

_WATCHED_ROLES = ("train_loss", "val_loss", "grad_norm")

NONFINITE_SUGGESTION = (
    "lower the learning rate or enable gradient clipping; check inputs and labels for "
    "NaN/Inf; torch.autograd.set_detect_anomaly(True) finds the operation that produced it"
)
EXPLODING_SUGGESTION = (
    "the value jumped by more than {factor:g}x its recent median: lower the learning rate, "
    "add warmup or gradient clipping, and check the batch that was loaded at this step"
)


def _kind(key: str) -> str | None:
    """"watch" (a loss or an aggregate gradient norm), "scale" (a loss scale) or None."""
    role = DEFAULT_ROLES.role_of(key)
    if role == "loss_scale":
        return "scale"
    if role in _WATCHED_ROLES and DEFAULT_ROLES.family(key) is None:
        return "watch"
    return None


def watched(key: str) -> bool:
    """Whether the exploding check follows ``key`` (losses and aggregate gradient norms)."""
    return _kind(key) == "watch"


def _log_sigma(values) -> float:
    """Robust standard deviation of log(values) (MAD / 0.6745); 0 with non-positive values."""
    if any(v <= 0 for v in values):
        return 0.0
    logs = [math.log(v) for v in values]
    mid = statistics.median(logs)
    return statistics.median(abs(x - mid) for x in logs) / 0.6745


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
        self._kind_cache: dict[str, str | None] = {}
        self._grad_cache: dict[str, bool] = {}
        self._scale_last: float | None = None  # latest loss scale of earlier flushes
        self._pending: list[tuple[str, float, int | None, float | None, int]] = []
        self.latest: dict[str, float] = {}
        """Latest value of each watched key (read by the console progress block)."""

    def _key_kind(self, key: str) -> str | None:
        try:
            return self._kind_cache[key]
        except KeyError:
            kind = self._kind_cache[key] = _kind(key)
            return kind

    def _is_grad(self, key: str) -> bool:
        hit = self._grad_cache.get(key)
        if hit is None:
            hit = self._grad_cache[key] = DEFAULT_ROLES.role_of(key) == "grad_norm"
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
        latest = self._latest(batch)
        scales = [v for k, (v, _) in latest.items() if self._key_kind(k) == "scale"]
        fp16 = self._scale_last is not None or bool(scales)
        maybe_overflow = []
        for ev, key, value in nonfinite:
            if key in self._nonfinite_seen:
                continue
            step = getattr(ev, "step", None)
            if fp16 and self._is_grad(key):
                maybe_overflow.append((key, value, step, None, 0))
                continue
            self._nonfinite(alerts, key, value, step)
        if maybe_overflow or self._pending:
            self._judge_overflows(alerts, batch, maybe_overflow)
        for key, (value, step) in latest.items():
            if self._key_kind(key) == "scale":
                continue
            self.latest[key] = value
            if not math.isfinite(value):
                continue
            hist = self._history.get(key)
            if hist is None:
                hist = self._history[key] = deque(maxlen=HISTORY)
            if len(hist) >= MIN_HISTORY:
                median = statistics.median(hist)
                factor = EXPLODE_FACTOR
                if self._is_grad(key):
                    factor = max(factor, math.exp(NOISE_Z * _log_sigma(hist)))
                exploded = median != 0 and abs(value) > factor * abs(median)
                if exploded and self._armed.get(key, True):
                    self._armed[key] = False
                    suggestion = EXPLODING_SUGGESTION.format(factor=float(f"{factor:.3g}"))
                    message = (
                        f"{key} = {value:.6g} at step {step}, more than {factor:.3g}x "
                        f"its recent median {median:.6g}"
                    )
                    self._raise(alerts, "exploding", "warning", key, value, step, message,
                                suggestion)
                elif not exploded:
                    self._armed[key] = True
            hist.append(value)
        if scales:
            self._scale_last = min(scales)
        if alerts:
            self._emit(alerts)

    def _nonfinite(self, alerts: list[Event], key: str, value: float, step: int | None) -> None:
        if key in self._nonfinite_seen:
            return
        self._nonfinite_seen.add(key)
        message = f"{key} is {value!r} at step {step}"
        self._raise(alerts, "nonfinite", "critical", key, value, step, message,
                    NONFINITE_SUGGESTION)

    def _judge_overflows(self, alerts: list[Event], batch: list[Event], new: list) -> None:
        """Alert the non-finite gradient norms that were no fp16 overflow; keep undecided ones.

        At most :data:`MAX_JUDGED` candidates per key and flush are judged (a run whose
        gradients are all NaN is decided by its first ones), each by binary search.
        """
        points = []  # (step, scale) of the loss-scale values in this batch
        for ev in batch:
            if ev.__class__ is Metrics and ev.step is not None:
                for key, value in ev.values.items():
                    if self._key_kind(key) == "scale" and isinstance(value, (int, float)):
                        points.append((ev.step, float(value)))
        points.sort()
        steps = [st for st, _ in points]
        per_key: dict[str, int] = {}
        pending, self._pending = self._pending + new, []
        for key, value, step, prev, waited in pending:
            if key in self._nonfinite_seen or per_key.get(key, 0) >= MAX_JUDGED:
                continue
            per_key[key] = per_key.get(key, 0) + 1
            if step is None:
                self._nonfinite(alerts, key, value, step)
                continue
            i = bisect.bisect_left(steps, step)
            if prev is None:
                prev = points[i - 1][1] if i > 0 else self._scale_last
            j = bisect.bisect_right(steps, step)
            at = [v for _, v in points[i:j]]
            later = [points[j][1]] if j < len(points) else []
            verdict = self._overflow(prev, at, later)
            if verdict is None and waited < PENDING_FLUSHES:
                self._pending.append((key, value, step, prev, waited + 1))
            elif not verdict:
                self._nonfinite(alerts, key, value, step)

    @staticmethod
    def _overflow(prev: float | None, at: list[float], later: list[float]) -> bool | None:
        """True: the loss scale dropped (or none was logged before: the scaler calibrates);
        False: it did not; None: not known yet (no scale logged at or after the step)."""
        if prev is None:
            return True
        if not at and not later:
            return None
        low = min(at + later)
        if prev > low >= 1:
            return True
        return None if not later else False

    def _latest(self, batch: list[Event]) -> dict[str, tuple[float, int | None]]:
        """Latest value per watched or loss-scale key in the batch (scanning back at most
        SCAN_LIMIT events)."""
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
                if self._key_kind(key) is not None and isinstance(value, (int, float)):
                    found[key] = (float(value), ev.step)
        return found
