"""A dependency-free progress line on stderr for long ingest passes."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Bytes done of a known total, redrawn at most 5 times a second.

    Args:
        total: bytes to read in this pass.
        enabled: draw at all (ingest enables it on a TTY or when asked).
        stream: where to draw (stderr by default).
    """

    def __init__(self, total: int, enabled: bool, stream=None) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.points = 0
        self._start = time.monotonic()
        self._drawn = 0.0

    def update(self, nbytes: int, points: int = 0) -> None:
        self.done += nbytes
        self.points += points
        now = time.monotonic()
        if self.enabled and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = self.points / max(now - self._start, 1e-9)
        self.stream.write(
            f"\ringest [{bar:<30}] {frac:6.1%} {self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB"
            f"  {rate / 1e6:,.2f}M points/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
