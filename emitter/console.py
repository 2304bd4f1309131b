"""The console progress block: a few lines on stderr every N seconds while a run is live.

Rendered on the writer thread (no extra thread, nothing on the hot path) from counters the
run keeps anyway. By default it is on only when stderr is a TTY, every 30 s.

Example::

    [runlake 2025-01-31 12:00:05.123] run 20250131-115900-a1b2c3 step 1200/10000 epoch 3
      data: 38,400 items (12,800 augmented)
      loss: train/loss=0.4312 val/loss=0.5120
      mem: rss 3.1 GiB, gpu0 10.2 GiB alloc
      speed: 12.4 steps/s, ETA 11m49s
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from runlake.emitter.system import RAM_KEY, RSS_KEY
from runlake.schemas.metric_keys import SYSTEM_PREFIX

__all__ = ["DEFAULT_INTERVAL_S", "Progress", "console_interval", "format_duration"]

DEFAULT_INTERVAL_S = 30.0


def console_interval(console: bool | float | None, stream: TextIO | None = None) -> float | None:
    """Interval in seconds for the ``console`` option of init(), or None for off.

    None -> 30 s when the stream (stderr) is a TTY, else off; a number -> that interval;
    False -> off; True -> 30 s.
    """
    if console is None:
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return DEFAULT_INTERVAL_S if callable(isatty) and isatty() else None
    if console is False:
        return None
    if console is True:
        return DEFAULT_INTERVAL_S
    interval = float(console)
    return interval if interval > 0 else None


def format_duration(seconds: float) -> str:
    """``3h02m``, ``11m49s``, ``42s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


class Progress:
    """Builds and prints the block; ``snapshot`` returns the run's current counters."""

    def __init__(self, snapshot: Callable[[], dict], stream: TextIO | None = None) -> None:
        self._snapshot = snapshot
        self._stream = stream

    def render(self, now_wall: float | None = None) -> str:
        s = self._snapshot()
        now_wall = time.time() if now_wall is None else now_wall
        whole_ms = int(round(now_wall * 1000))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole_ms // 1000))
        ms = whole_ms % 1000
        total = s.get("total_steps")
        step = s.get("step")
        head = f"[runlake {stamp}.{ms:03d}] run {s['run_id']} step {step}"
        if total:
            head += f"/{total}"
        if s.get("epoch") is not None:
            head += f" epoch {s['epoch']}"
        lines = [head]
        if s.get("items"):
            lines.append(f"  data: {s['items']:,} items ({s.get('augmented', 0):,} augmented)")
        losses = s.get("losses") or {}
        if losses:
            shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(losses.items())[:6])
            lines.append(f"  loss: {shown}")
        sysv = s.get("system") or {}
        mem = []
        if RSS_KEY in sysv:
            mem.append(f"rss {_gib(sysv[RSS_KEY])}")
        if RAM_KEY in sysv:
            mem.append(f"ram {sysv[RAM_KEY]:.0f}%")
        for k, v in sorted(sysv.items()):
            if k.endswith("/mem_allocated"):
                mem.append(f"{k[len(SYSTEM_PREFIX):].split('/')[0]} {_gib(v)} alloc")
        if mem:
            lines.append("  mem: " + ", ".join(mem))
        rate = s.get("steps_per_s")
        if rate:
            speed = f"  speed: {rate:.3g} steps/s"
            if s.get("eta_s") is not None:
                speed += f", ETA {format_duration(s['eta_s'])}"
            lines.append(speed)
        dropped = s.get("dropped")
        if dropped:
            lines.append(f"  dropped: {dropped}")
        return "\n".join(lines) + "\n"

    def print(self, now: float | None = None) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(self.render())
            stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed (daemonised job): the progress block is best effort
