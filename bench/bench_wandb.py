"""W&B surface benchmark: ``runlake.wandb`` ``log()`` of 10 scalars vs ``Run.log`` vs W&B.

Run:  .venv/bin/python bench/bench_wandb.py [--seconds 2] [--wandb-calls 3000] [--json]

Measures, in one process, the training-thread cost of logging one row of 10 float scalars
(the dict built beforehand, as in bench_emitter.py's tight loop; medians of 100-call batch
means, several flushes of the writer thread included):

  1. ``runlake.Run.log(d)``;
  2. ``runlake.wandb.log(d)`` (``import runlake.wandb as wandb``): the fast path;
  3. ``runlake.wandb.log(d, step=i)``: W&B's explicit-step pattern (each call commits the
     previous pending row: the slow path);
  4. the real ``wandb.log(d)`` in offline mode (``WANDB_MODE=offline``, ``WANDB_DIR`` in a
     temp folder, never network).

Targets (issue 12): (2) <= 2x (1), and (4) / (2) >= 10.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

KEYS = [f"train/metric_{i}" for i in range(10)]
TARGETS = {"vs_run_log": 2.0, "vs_wandb": 10.0}


def rows(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{k: rng.random() for k in KEYS} for _ in range(n)]


def timed(log, data, seconds: float, *, step: bool = False, max_calls: int | None = None
          ) -> float:
    """Median µs per call over 100-call batches, for ``seconds`` (or ``max_calls``)."""
    perf = time.perf_counter
    means, calls, i = [], 0, 0
    end = perf() + seconds
    while perf() < end and (max_calls is None or calls < max_calls):
        batch = data[(calls % len(data)):(calls % len(data)) + 100]
        t0 = perf()
        if step:
            for d in batch:
                log(d, step=i)
                i += 1
        else:
            for d in batch:
                log(d)
        means.append((perf() - t0) / len(batch))
        calls += len(batch)
    return statistics.median(means) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--wandb-calls", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    data = rows(1000)
    tmp = tempfile.mkdtemp(prefix="bench-wandb-")
    opts = dict(console=False, capture_logging=False, system_interval=10.0)

    import runlake
    import runlake.wandb as rwandb

    run = runlake.init(project="bench", root=f"{tmp}/rl", **opts)
    run.log(data[0])
    t_run = timed(run.log, data, args.seconds)
    run.finish()

    rwandb.init(project="bench", root=f"{tmp}/rw", runlake=opts)
    rwandb.log(data[0])
    t_rw = timed(rwandb.log, data, args.seconds)
    rwandb.finish()
    rwandb.init(project="bench", root=f"{tmp}/rw", runlake=opts)
    t_rw_step = timed(rwandb.log, data, args.seconds, step=True)
    rwandb.finish()

    os.environ.update(WANDB_MODE="offline", WANDB_DIR=f"{tmp}/wandb", WANDB_SILENT="true",
                      WANDB_CONSOLE="off")
    os.makedirs(f"{tmp}/wandb", exist_ok=True)
    import wandb

    wrun = wandb.init(project="bench")
    wrun.log(data[0])
    t_w = timed(wrun.log, data, args.seconds, max_calls=args.wandb_calls)
    wrun.finish()

    result = {
        "run_log_us": round(t_run, 3), "runlake_wandb_log_us": round(t_rw, 3),
        "runlake_wandb_log_step_us": round(t_rw_step, 3), "wandb_log_us": round(t_w, 3),
        "vs_run_log": round(t_rw / t_run, 2), "wandb_vs_runlake_wandb": round(t_w / t_rw, 1),
        "wandb_version": wandb.__version__, "python": sys.version.split()[0],
    }
    ok = result["vs_run_log"] <= TARGETS["vs_run_log"] and \
        result["wandb_vs_runlake_wandb"] >= TARGETS["vs_wandb"]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Run.log (10 scalars)                {t_run:8.2f} µs")
        print(f"runlake.wandb.log                   {t_rw:8.2f} µs  "
              f"({result['vs_run_log']}x Run.log; target <= {TARGETS['vs_run_log']}x)")
        print(f"runlake.wandb.log(step=i)           {t_rw_step:8.2f} µs")
        print(f"wandb {wandb.__version__} log (offline)          {t_w:8.2f} µs  "
              f"({result['wandb_vs_runlake_wandb']}x runlake.wandb; target >= "
              f"{TARGETS['vs_wandb']:.0f}x)")
        print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
