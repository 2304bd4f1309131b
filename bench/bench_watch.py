"""Overhead of runlake.torch.watch() at its default interval on a small CPU MLP.

One command:  .venv/bin/python bench/bench_watch.py [--reps 30] [--steps 200] [--every 50] [--histograms]

A = the training loop logging its loss with run.log every step; B = the same loop with
watch(model, run) installed. Repetitions alternate A/B/A/B so drift in machine load hits
both alike; the script prints the median step time of each and the ratio B/A. On a
machine shared with other work the medians swing by more than the effect measured, so it
also measures B's two costs in isolation (best of 60 interleaved short rounds): the idle
hooks on an unwatched step and the extra time of one watched step, and derives the
overhead per step at the interval. Target: <= 2% (docs/performance.md). ``--histograms``
measures ``watch(log_histograms=True)`` (per-tensor quantiles and histogram events) instead.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="repetitions per variant")
    parser.add_argument("--steps", type=int, default=200, help="training steps per repetition")
    parser.add_argument("--every", type=int, default=50, help="watch interval (default: watch's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--histograms", action="store_true", help="watch(log_histograms=True)")
    args = parser.parse_args()

    import torch

    import runlake
    from runlake.torch import watch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64, 64)
    y = torch.randint(0, 10, (64,))

    with tempfile.TemporaryDirectory() as root:
        run = runlake.init("bench", "watch", root=root, console=False, system_interval=0,
                           capture_logging=False, online_checks=False)
        step = 0

        def loop(n: int) -> float:
            nonlocal step
            t0 = time.perf_counter()
            for _ in range(n):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                run.log({"train/loss": loss.item()}, step=step)
                step += 1
            return (time.perf_counter() - t0) / n

        loop(100)  # warm-up
        a, b = [], []
        for _ in range(args.reps):
            a.append(loop(args.steps))
            handle = watch(model, run, every=args.every, log_histograms=args.histograms)
            b.append(loop(args.steps))
            handle.remove()
        # The parts of B's cost in isolation, best of interleaved rounds (robust to load
        # from other processes): optimizer.step() bare, with idle hooks, and watched.
        def steps(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                opt.step()
            return (time.perf_counter() - t0) / n

        bare, hooked, watched = [], [], []
        idle = watch(model, run, every=10**9)  # hooks installed, never due
        idle.remove()
        for _ in range(60):
            bare.append(steps(20))
            idle = watch(model, run, every=10**9)
            hooked.append(steps(20))
            idle.remove()
            handle = watch(model, run, every=1, log_histograms=args.histograms)
            watched.append(steps(3))
            handle.remove()
        bare, hooked, watched = min(bare), min(hooked), min(watched) - min(bare)
        run.finish()

    ma, mb = statistics.median(a), statistics.median(b)
    print(f"model: MLP 64-256-256-10 ({sum(p.numel() for p in model.parameters()):,} params), batch 64, "
          f"Adam, {args.threads} thread(s); {args.reps} x {args.steps} steps per variant, interleaved")
    print(f"A  without watch        median step {ma * 1e6:8.1f} us   (min {min(a) * 1e6:.1f})")
    print(f"B  watch(every={args.every:<4d}{', histograms' if args.histograms else ''})    median step {mb * 1e6:8.1f} us   (min {min(b) * 1e6:.1f})")
    print(f"ratio B/A (median) {mb / ma:.4f}   overhead {100 * (mb / ma - 1):+.2f}%   target <= +2%")
    print(f"ratio B/A (best repetition) {min(b) / min(a):.4f}")
    per_step = max(hooked - bare, 0.0) + watched / args.every
    print(f"parts: hooks on an unwatched step {1e6 * (hooked - bare):.2f} us; one watched step "
          f"{1e6 * watched:.0f} us -> {1e6 * per_step:.2f} us/step at every={args.every} "
          f"= {100 * per_step / min(a):.2f}% of A's fastest repetition")


if __name__ == "__main__":
    main()
