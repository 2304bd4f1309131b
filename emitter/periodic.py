"""The writer thread's periodic events for a run: heartbeat, system sample, console snapshot.

Each factory returns a function ``f(now) -> list[Event]`` that
:class:`runlake.emitter.writer.Periodic` calls on the writer thread, so none of this runs on
the training thread. They read the run's counters (plain attributes written by the training
thread; a slightly stale value is fine for progress reporting).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from runlake.schemas.events import Event, Heartbeat, System

__all__ = ["heartbeat_task", "snapshot", "system_task"]


def heartbeat_task(run, interval: float) -> Callable[[float], list[Event]]:
    """Heartbeats with step, total steps, steps/s since the previous beat and ETA."""
    last = [time.monotonic(), run.step]
    run._rate = run._eta = None

    def beat(now: float) -> list[Event]:
        step = run.step
        t0, s0 = last
        rate = (step - s0) / (now - t0) if now > t0 else None
        last[0], last[1] = now, step
        eta = None
        if rate and run.total_steps is not None:
            eta = max(0.0, (run.total_steps - step) / rate)
        run._rate, run._eta = rate, eta
        env = run._envelope()
        return [Heartbeat(*env, step=run._default_step(), total_steps=run.total_steps,
                          steps_per_s=rate, eta_s=eta, interval_s=interval,
                          events=env[3] + 1, dropped=run.dropped)]

    return beat


def system_task(run, sampler) -> Callable[[float], list[Event]]:
    """``system`` events from a :class:`runlake.emitter.system.SystemSampler`."""

    def sample(now: float) -> list[Event]:
        values = sampler.sample()
        run._system_latest = values
        return [System(*run._envelope(), values=values, step=run._default_step())]

    return sample


def snapshot(run) -> dict[str, Any]:
    """Counters for the console progress block."""
    losses = {}
    if run._checks is not None:
        losses = {k: v for k, v in run._checks.latest.items() if "loss" in k.lower()}
    return {"run_id": run.id, "step": run.step, "epoch": run.epoch,
            "total_steps": run.total_steps, "items": run._items,
            "augmented": run._augmented, "losses": losses,
            "system": run._system_latest, "steps_per_s": getattr(run, "_rate", None),
            "eta_s": getattr(run, "_eta", None), "dropped": run.dropped}
