"""Cost of console capture on the training thread: print() of a 60-character line.

One command:  .venv/bin/python bench/bench_console.py [--lines 200000] [--reps 5]

A = ``print(line)`` with ``sys.stdout`` a buffered text file on /dev/null; B = the same
while a run is live with console capture on: its tee in front of that stream, the writer
not draining during the loop (``flush_interval`` 1 h), so B - A is what the training thread
itself pays per line (target: <= 1 µs, docs/performance.md). The lines are then drained,
encoded and written by ``run.flush()``, timed: the work the writer thread does per line,
off the training thread. C = B with the default 1 s flush interval, the writer draining
while the loop prints: in a flood of prints the writer's share of the GIL shows up here.
Repetitions alternate A/B/C so drift in machine load hits all alike; medians (and minima,
steadier on a loaded machine) are printed. Last, the steadiest estimate of the tee's cost
on a busy machine: best of 30 interleaved short rounds (20,000 lines) of A and B.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def _loop(n: int, line: str) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        print(line)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="print() calls per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per variant")
    args = parser.parse_args()

    import runlake

    line = "step 000123 loss 0.123456 lr 3.0e-04 grad_norm 1.2345 ok...."
    assert len(line) == 60
    report = sys.stdout
    times: dict[str, list[float]] = {"A": [], "B": [], "C": [], "writer": []}
    opts = dict(console=False, system_interval=0, capture_logging=False, online_checks=False)
    with tempfile.TemporaryDirectory() as root, open(os.devnull, "w") as devnull:
        try:
            for _ in range(args.reps):
                sys.stdout = devnull
                times["A"].append(_loop(args.lines, line))
                run = runlake.init("bench", "console", root=root, flush_interval=3600, **opts)
                times["B"].append(_loop(args.lines, line))
                t0 = time.perf_counter()
                run.flush()
                times["writer"].append((time.perf_counter() - t0) / args.lines * 1e6)
                run.finish()
                run = runlake.init("bench", "console", root=root, flush_interval=1.0, **opts)
                times["C"].append(_loop(args.lines, line))
                run.finish()
                sys.stdout = report
            best = {"A": float("inf"), "B": float("inf")}
            sys.stdout = devnull
            run = runlake.init("bench", "console-rounds", root=root, flush_interval=3600, **opts)
            tee = sys.stdout
            for _ in range(30):
                sys.stdout = devnull
                best["A"] = min(best["A"], _loop(20_000, line))
                sys.stdout = tee
                best["B"] = min(best["B"], _loop(20_000, line))
                run.flush()  # drain (untimed), so every round starts alike
            run.finish()
        finally:
            sys.stdout = report

    def show(label: str, key: str) -> None:
        runs = ", ".join(f"{x:.3f}" for x in times[key])
        print(f"  {label}: median {statistics.median(times[key]):.3f} µs/line, "
              f"min {min(times[key]):.3f}   (runs: {runs})")

    print(f"print() of a {len(line)}-char line to /dev/null, {args.lines:,} lines, "
          f"{args.reps} repetitions:")
    show("A without capture      ", "A")
    show("B with capture         ", "B")
    show("C capture, writer busy ", "C")
    a, b, c = (statistics.median(times[k]) for k in "ABC")
    print(f"  training thread, B - A: {b - a:+.3f} µs/line median, "
          f"{min(times['B']) - min(times['A']):+.3f} by minima  (target <= 1 µs)")
    print(f"  flood with the writer draining, C - A: {c - a:+.3f} µs/line median")
    print(f"  best of 30 short rounds: A {best['A']:.3f}, B {best['B']:.3f} µs/line, "
          f"B - A {best['B'] - best['A']:+.3f}")
    print(f"  writer thread per line (split, event, encode, write): "
          f"{statistics.median(times['writer']):.3f} µs median")


if __name__ == "__main__":
    main()
