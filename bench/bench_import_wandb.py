"""Benchmark: `runlake import wandb` on a 1M-point offline run written by the real wandb.

One command (from the repository root):

    .venv/bin/python bench/bench_import_wandb.py            # 100k steps x 10 keys = 1M points
    .venv/bin/python bench/bench_import_wandb.py --steps 20000 --repeat 1

The run is written once by wandb itself in offline mode (``WANDB_MODE=offline``, a
subprocess; ~1-3 minutes) and cached under ``/tmp/runlake-bench-wandb-<steps>``, so reruns
only time the import. Each repeat imports into a fresh root and reports, separately:

* parse: reading the ``.wandb`` file (block log, CRCs, W&B's protobuf records, the
  history rows' values) into plain Python (:func:`runlake.ingest.wandb_run.read_run`);
* import: the whole ``import_wandb(..., ingest=False)`` (parse + events + the sealed segment);
* ingest: ``runlake.ingest.ingest()`` of that root into a fresh store;

and points/s for import + ingest (the target: >= 500k points/s), with this process's CPU
seconds beside each (on a loaded machine wall time says little). Median of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WRITE = """
import os, random, sys
os.environ.update(WANDB_MODE="offline", WANDB_DIR=sys.argv[1], WANDB_SILENT="true", WANDB_CONSOLE="off")
import wandb
steps, keys = int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(0)
names = [f"train/metric_{k}" for k in range(keys)]
run = wandb.init(project="bench", name="bench", config={"steps": steps})
for step in range(steps):
    run.log({n: rng.random() for n in names}, step=step)
run.finish()
"""


def wandb_run(steps: int, keys: int) -> Path:
    """The cached offline run's wandb/ folder (written by wandb on first use)."""
    cache = Path(tempfile.gettempdir()) / f"runlake-bench-wandb-{steps}x{keys}"
    done = cache / "done"
    if not done.exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WRITE, str(cache), str(steps), str(keys)], check=True)
        print(f"wrote the W&B run with wandb in {time.perf_counter() - t:.1f} s -> {cache}")
        done.write_text("ok")
    return cache / "wandb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from runlake.ingest import ingest
    from runlake.ingest.import_wandb import find_wandb_files, import_wandb
    from runlake.ingest.wandb_run import read_run

    wdir = wandb_run(args.steps, args.keys)
    (path,) = find_wandb_files(wdir)
    points = args.steps * args.keys
    print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, {points:,} points, load "
          f"{os.getloadavg()[0]:.1f}")
    parse, imp, ing, cpu = [], [], [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        run = read_run(path)
        parse.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        assert sum(len(r[2]) for r in run.rows) == points, "the parse lost points"
        del run
        with tempfile.TemporaryDirectory(prefix="bench-wandb-") as tmp:
            root = Path(tmp) / "root"
            t, c = time.perf_counter(), time.process_time()
            (result,) = import_wandb(wdir, root=root, ingest=False)
            imp.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            assert result.counts["points"] == points, result.counts
            t, c = time.perf_counter(), time.process_time()
            ingest(root=root, db=root / "runlake.duckdb")
            ing.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    p, i, g = (statistics.median(x) for x in (parse, imp, ing))
    pc, ic, gc = (statistics.median(cpu[k::3]) for k in range(3))
    print(f"parse   {p:6.2f} s  {points / p / 1e3:7.0f}k points/s   (cpu {pc:.2f} s; runs: "
          f"{', '.join(f'{x:.2f}' for x in parse)})")
    print(f"import  {i:6.2f} s  {points / i / 1e3:7.0f}k points/s   (cpu {ic:.2f} s; parse + events + segment)")
    print(f"ingest  {g:6.2f} s  {points / g / 1e3:7.0f}k points/s   (cpu {gc:.2f} s in this process)")
    print(f"total   {i + g:6.2f} s  {points / (i + g) / 1e3:7.0f}k points/s   (target >= 500k) "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
