"""The W&B mirror's cost on the training thread: Run.log with and without ``wandb=True``.

Run:  .venv/bin/python bench/bench_wandb_mirror.py [--seconds 3]

The mirror runs off the training thread (``wandb`` is imported and ``wandb.init`` called on
the mirror's own thread at the first flush, ``wandb.log`` on the writer thread), so
``Run.log`` on the training thread should cost the same with it. What the training thread
can still feel is the GIL: those threads run W&B's Python while the loop runs. Measured in
one process, W&B in offline mode under a temporary folder:

  1. Run.log of 10 scalars with a 1 ms pause between steps (a fast training loop), timing
     only the call: mean / median / p99 / max and the loop's steps/s, without and with the
     mirror; with it, counted from when ``wandb.init`` (the mirror's thread) is done, the init
     phase reported apart.
  2. The same in a tight loop (mean = wall / calls): far more steps than W&B takes, so the
     mirror thins them (``skipped["thinned"]``).
  3. The mirror's own numbers: W&B rows written, steps thinned, seconds per W&B row.

Prints a table; the figure goes to docs/performance.md by hand (one line).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_emitter import KEYS, random_dicts  # noqa: E402


def _init(root: str, mirror: bool):
    import runlake

    return runlake.init("bench", root=root, console=False, capture_logging=False,
                        system_interval=10.0, wandb={"dir": root} if mirror else False)


def _mirror(run):
    return run._writer.mirror if run._writer is not None else None


def paced(root: str, seconds: float, mirror: bool) -> dict:
    """Timed Run.log calls 1 ms apart; with the mirror, only those after ``wandb.init`` is
    done count (the init phase is reported apart: its GIL share slows the loop)."""
    import random

    run = _init(root, mirror)
    wb = _mirror(run)
    log, ns, rnd = run.log, time.perf_counter_ns, random.Random(2).random
    overhead = min(-(ns() - ns()) for _ in range(1000))
    samples, t_start = [], time.perf_counter()
    init_calls, init_s = 0, 0.0
    started = wb is None
    end = t_start + seconds
    while time.perf_counter() < end or not started:
        if not started and (wb.run is not None or wb.off):
            started, init_calls, init_s = True, len(samples), time.perf_counter() - t_start
            samples, t_start = [], time.perf_counter()
            end = t_start + seconds
        d = {k: rnd() for k in KEYS}
        t0 = ns()
        log(d)
        samples.append(ns() - t0 - overhead)
        time.sleep(0.001)
    wall = time.perf_counter() - t_start
    t0 = time.perf_counter()
    run.finish()
    out = {"mean_us": statistics.fmean(samples) / 1e3, "median_us": statistics.median(samples) / 1e3,
           "p99_us": sorted(samples)[int(len(samples) * 0.99)] / 1e3, "max_us": max(samples) / 1e3,
           "calls": len(samples), "steps_s": len(samples) / wall, "finish_s": time.perf_counter() - t0}
    if wb is not None:
        out.update(rows=wb._rows, thinned=wb.skipped["thinned"], row_ms=wb.row_cost_s * 1e3,
                   off=wb.off, init_s=init_s, init_steps_s=init_calls / max(init_s, 1e-9))
    return out


def tight(root: str, seconds: float, mirror: bool) -> dict:
    data = random_dicts(1000)
    run = _init(root, mirror)
    wb = _mirror(run)
    log, perf = run.log, time.perf_counter
    calls, t_start = 0, perf()
    while perf() < t_start + seconds:
        for d in data:
            log(d)
        calls += len(data)
    wall = perf() - t_start
    t0 = perf()
    run.finish()
    out = {"mean_us": wall / calls * 1e6, "calls": calls, "steps_s": calls / wall,
           "finish_s": perf() - t0}
    if wb is not None:
        out.update(rows=wb._rows, thinned=wb.skipped["thinned"], row_ms=wb.row_cost_s * 1e3,
                   off=wb.off)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-wandb-mirror-") as tmp:
        os.environ["WANDB_DIR"] = tmp
        for name, fn in (("paced (1 ms pause)", paced), ("tight loop", tight)):
            for mirror in (False, True):
                r = fn(os.path.join(tmp, f"{fn.__name__}-{mirror}"), args.seconds, mirror)
                rows.append((name, mirror, r))
    print(f"Python {sys.version.split()[0]} · {os.cpu_count()} CPUs · load {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    print("| loop | wandb= | Run.log mean µs | median / p99 / max µs | loop steps/s | finish s "
          "| W&B rows | thinned | ms / W&B row |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, mirror, r in rows:
        spread = (f"{r['median_us']:.2f} / {r['p99_us']:.2f} / {r['max_us']:.0f}"
                  if "median_us" in r else "")
        extra = (f"{r['rows']:,} | {r['thinned']:,} | {r['row_ms']:.2f}" if mirror else " | | ")
        print(f"| {name} | {'True' if mirror else 'False'} | {r['mean_us']:.3f} | {spread} | "
              f"{r['steps_s']:,.0f} | {r['finish_s']:.2f} | {extra} |")
        if mirror and "init_s" in r:
            print(f"  (before these: wandb.init on the mirror's thread took {r['init_s']:.2f} s, "
                  f"the loop ran {r['init_steps_s']:,.0f} steps/s meanwhile)")
        if mirror and r.get("off"):
            print(f"  mirror off: {r['off']}")


if __name__ == "__main__":
    main()
