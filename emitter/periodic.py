"""The writer thread's periodic events for a run: heartbeat and system sample.

Each task is a callable ``task(now) -> list[Event]`` that
:class:`runlake.emitter.writer.Periodic` calls on the writer thread, so none of this runs on
the training thread. A task reads the run's public counters (plain attributes written by
the training thread; a slightly stale value is fine for progress reporting) and keeps what
it measured (steps/s, ETA, the latest system values) on itself, for the console block
(:meth:`runlake.emitter.run.Run.progress`): the run owns its tasks, no task writes into it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from runlake.schemas.events import Event, Heartbeat, System

__all__ = ["HeartbeatTask", "RunView", "SystemTask"]


class RunView(Protocol):
    """What a task reads from its run."""

    step: int
    total_steps: int | None

    @property
    def dropped(self) -> dict[str, int]: ...


class HeartbeatTask:
    """Heartbeats with step, total steps, steps/s since the previous beat and ETA.

    Args:
        run: the run it beats for.
        interval: seconds between beats (stored in each heartbeat).
        envelope: the run's envelope factory (a fresh ``seq`` each call).
        default_step: the step an event without one is recorded at.
    """

    def __init__(self, run: RunView, interval: float, envelope: Callable[[], tuple],
                 default_step: Callable[[], int | None]) -> None:
        self.run, self.interval = run, interval
        self._envelope, self._default_step = envelope, default_step
        self._last = (time.monotonic(), run.step)
        self.rate: float | None = None
        """Steps per second over the last beat (None before the second)."""
        self.eta: float | None = None
        """Seconds left at that rate (None without ``total_steps``)."""

    def __call__(self, now: float) -> list[Event]:
        run = self.run
        step, total = run.step, run.total_steps
        t0, s0 = self._last
        rate = (step - s0) / (now - t0) if now > t0 else None
        self._last = (now, step)
        eta = max(0.0, (total - step) / rate) if rate and total is not None else None
        self.rate, self.eta = rate, eta
        env = self._envelope()
        return [Heartbeat(*env, step=self._default_step(), total_steps=total,
                          steps_per_s=rate, eta_s=eta, interval_s=self.interval,
                          events=env[3] + 1, dropped=run.dropped)]


class SystemTask:
    """``system`` events from a :class:`runlake.emitter.system.SystemSampler`."""

    def __init__(self, sampler: Any, envelope: Callable[[], tuple],
                 default_step: Callable[[], int | None]) -> None:
        self.sampler = sampler
        self._envelope, self._default_step = envelope, default_step
        self.latest: dict[str, float] = {}
        """The latest sample (for the console block)."""

    def __call__(self, now: float) -> list[Event]:
        values = self.latest = self.sampler.sample()
        return [System(*self._envelope(), values=values, step=self._default_step())]
