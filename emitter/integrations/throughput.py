"""Throughput and step time, measured around each training step.

Why it exists: samples/s and tokens/s are the first numbers anyone asks about a training
job, and a per-step timer in user code is easy to get subtly wrong (data loading time
left out, or a GPU step measured before it finished). :class:`Throughput` is a context
manager per step; every ``every`` steps it logs, under ``perf/``:

* ``perf/step_ms``: mean time inside the ``with`` block (the compute of a step);
* ``perf/iter_ms``: mean wall time per step over the window, data loading included;
* ``perf/samples_per_s`` and ``perf/tokens_per_s`` (when counts are given), over the
  window's wall time.

Per step it costs two ``time.perf_counter()`` calls and a few additions. On a GPU, the
block's end does not wait for queued kernels; pass ``sync=torch.cuda.synchronize`` to
measure them (at the cost of a sync per step).

The metrics are logged at the step of the window's last step: the step the block was
expected to record (``run.step + 1`` when it was entered), without moving ``run.step``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from runlake.schemas.errors import ConfigError

__all__ = ["Throughput", "log_at"]


def log_at(run: Any, values: dict[str, float], step: int) -> None:
    """``run.log(values, step=step)`` without moving the run's automatic step counter.

    Hooks log on the user's behalf; if they advanced ``run.step``, a user who relies on
    ``run.log(...)`` without ``step=`` would see steps skipped.
    """
    before = run.step
    run.log(values, step=step)
    run.step = before


class Throughput:
    """Time training steps and log throughput every ``every`` steps.

    Args:
        run: the runlake Run.
        every: steps per logged window (>= 1).
        sync: called before each clock read at the end of a step (e.g.
            ``torch.cuda.synchronize``); default None.

    Raises:
        ConfigError: ``every`` is not a positive int.

    Example::

        tp = Throughput(run, every=20)
        for x, y in loader:
            with tp.step(samples=len(x), tokens=x.numel()):
                train_step(x, y)
    """

    def __init__(self, run: Any, *, every: int = 10, sync: Callable[[], Any] | None = None) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"Throughput(every=...) expects a positive int, got {every!r}")
        self.run = run
        self.every = every
        self.sync = sync
        self._samples: int | None = None
        self._tokens: int | None = None
        self._reset(None)

    def _reset(self, start: float | None) -> None:
        self._window_start = start
        self._n = 0
        self._busy = 0.0
        self._sum_samples = 0
        self._sum_tokens = 0
        self._have_samples = self._have_tokens = False

    def step(self, samples: int | None = None, tokens: int | None = None) -> "Throughput":
        """Use as ``with tp.step(samples=..., tokens=...):`` around one training step."""
        self._samples, self._tokens = samples, tokens
        return self

    def __enter__(self) -> "Throughput":
        self._t0 = time.perf_counter()
        if self._window_start is None:
            self._window_start = self._t0
        self._step = self.run.step + 1
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.sync is not None:
            self.sync()
        t = time.perf_counter()
        if exc_type is not None:
            return
        self._busy += t - self._t0
        self._n += 1
        if self._samples is not None:
            self._sum_samples += int(self._samples)
            self._have_samples = True
        if self._tokens is not None:
            self._sum_tokens += int(self._tokens)
            self._have_tokens = True
        self._samples = self._tokens = None
        if self._n >= self.every:
            self._emit(t)

    def _emit(self, now: float) -> None:
        wall = now - self._window_start
        values = {"perf/step_ms": self._busy / self._n * 1e3, "perf/iter_ms": wall / self._n * 1e3}
        if wall > 0:
            if self._have_samples:
                values["perf/samples_per_s"] = self._sum_samples / wall
            if self._have_tokens:
                values["perf/tokens_per_s"] = self._sum_tokens / wall
        step = max(self._step, self.run.step)
        self._reset(now)
        log_at(self.run, values, step)
