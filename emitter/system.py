"""System sampling: CPU, memory and (when torch already runs CUDA) GPU stats under ``sys/``.

Keys are made by :func:`runlake.schemas.metric_keys.system_key` (the one place adding the
prefix); :data:`CPU_KEY`, :data:`RSS_KEY` and :data:`RAM_KEY` name the stats for readers
such as the console.

Called by the writer thread every ``system_interval`` seconds, so it needs no thread of its
own. Uses psutil when it is importable, else ``/proc`` (Linux); torch is consulted only if
it is already in ``sys.modules`` and ``torch.cuda.is_initialized()`` - sampling never
initialises CUDA or imports torch.
"""

from __future__ import annotations

import os
import sys
import time

from runlake.schemas.metric_keys import system_key

__all__ = ["CPU_KEY", "RAM_KEY", "RSS_KEY", "SystemSampler"]

CPU_KEY = system_key("cpu_pct")
RSS_KEY = system_key("rss_bytes")
RAM_KEY = system_key("ram_used_pct")


class SystemSampler:
    """Produces one dict of system stats (``sys/...`` keys to floats) per :meth:`sample`."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError:
            psutil = None
        self._psutil = psutil
        self._proc = psutil.Process() if psutil is not None else None
        if self._proc is not None:
            self._proc.cpu_percent(None)  # prime: the first call always returns 0.0
        self._last_cpu = (time.monotonic(), os.times())
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def sample(self) -> dict[str, float]:
        """Current stats. Keys: sys/cpu_pct, sys/rss_bytes, sys/ram_used_pct, sys/gpu{i}/*."""
        out: dict[str, float] = {}
        if self._proc is not None:
            out[CPU_KEY] = float(self._proc.cpu_percent(None))
            out[RSS_KEY] = float(self._proc.memory_info().rss)
            out[RAM_KEY] = float(self._psutil.virtual_memory().percent)
        else:
            out.update(self._proc_stats())
        out.update(self._gpu_stats())
        return out

    def _proc_stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        now, times = time.monotonic(), os.times()
        last_t, last = self._last_cpu
        self._last_cpu = (now, times)
        busy = (times.user + times.system) - (last.user + last.system)
        if now > last_t:
            out[CPU_KEY] = 100.0 * busy / (now - last_t)
        try:
            with open("/proc/self/statm") as f:
                out[RSS_KEY] = float(int(f.read().split()[1]) * self._page)
            mem = {}
            with open("/proc/meminfo") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    mem[name] = int(rest.split()[0])
            total, avail = mem.get("MemTotal"), mem.get("MemAvailable")
            if total and avail is not None:
                out[RAM_KEY] = 100.0 * (total - avail) / total
        except (OSError, ValueError, IndexError):
            pass  # not Linux: CPU % above is all we can tell without psutil
        return out

    @staticmethod
    def _gpu_stats() -> dict[str, float]:
        torch = sys.modules.get("torch")
        if torch is None:
            return {}
        cuda = getattr(torch, "cuda", None)
        try:
            if cuda is None or not cuda.is_initialized():
                return {}
            out: dict[str, float] = {}
            for i in range(cuda.device_count()):
                p = system_key(f"gpu{i}/")
                out[p + "mem_allocated"] = float(cuda.memory_allocated(i))
                out[p + "mem_reserved"] = float(cuda.memory_reserved(i))
                out[p + "max_allocated"] = float(cuda.max_memory_allocated(i))
                try:
                    out[p + "util"] = float(cuda.utilization(i))
                except (RuntimeError, ModuleNotFoundError, AttributeError, ValueError):
                    pass  # needs pynvml; memory stats above still stand
            return out
        except (RuntimeError, AssertionError, AttributeError):
            return {}
