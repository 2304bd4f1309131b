"""Benchmark the analysis layer on a 40M-point store (100 runs x 100k steps x 4 keys).

    .venv/bin/python bench/bench_analysis.py [--store /tmp/runlake-bench/analysis.duckdb] [--repeat 3]

The store is generated directly in DuckDB (INSERT ... SELECT from range() with random
noise; a few runs get planted spikes, a divergence and NaNs) and cached at --store; it is
reused when present. Timed, each as the median of --repeat runs:

* baseline: ``SELECT count(*), avg(value) FROM metrics`` (one full scan)
* all detectors over every run (``anomalies.find``), target <= 15 s
* downsampled curves of one key for 100 runs, 1000 points per run, target <= 0.5 s
* a 20-run HTML report (``build_report`` + ``write_report``), target <= 10 s

Prints medians, the ratio to the baseline scan, and whether each target is met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RUNS, STEPS = 100, 100_000
KEYS = ("train/loss", "val/loss", "train/grad_norm", "lr")


def generate(db: Path) -> None:
    from runlake.store.duck import write_store

    tmp = db.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with write_store(tmp) as con:
        con.execute(f"""
            INSERT INTO runs (run_id, project, name, status, started_at, ended_at, last_seen_at, config, last_step)
            SELECT printf('run-%03d', r), 'bench', printf('bench-%03d', r), 'finished',
                   TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-02', TIMESTAMP '2024-01-02',
                   json_object('lr', [1e-4, 3e-4, 1e-3, 3e-3][r % 4 + 1], 'seed', r // 4,
                               'model', json_object('width', 256)), {STEPS - 1}
            FROM range({RUNS}) t(r)""")
        con.execute(f"""
            INSERT INTO metrics
            SELECT printf('run-%03d', r), 0, s, (s // 10000)::INTEGER,
                   TIMESTAMP '2024-01-01' + to_milliseconds(s * 100 + r), k.key,
                   CASE k.key
                     WHEN 'train/loss' THEN (2.0 * exp(-s / 20000.0) + 0.3) * (1 + 0.06 * (random() - 0.5))
                     WHEN 'val/loss' THEN (2.0 * exp(-s / 20000.0) + 0.35) * (1 + 0.02 * (random() - 0.5))
                     WHEN 'train/grad_norm' THEN 1.0 + 0.4 * random()
                     ELSE 1e-3 * least(1.0, s / 1000.0) * (0.5 + 0.5 * cos(pi() * s / {STEPS}))
                   END
            FROM range({RUNS}) t1(r), range({STEPS}) t2(s),
                 (VALUES {', '.join(f"('{k}')" for k in KEYS)}) k(key)""")
        # planted trouble: spikes in runs 0-9, divergence + NaN in runs 90-99
        con.execute("""UPDATE metrics SET value = value * 8
                       WHERE key = 'train/loss' AND step % 25000 = 12345 AND run_id < 'run-010'""")
        con.execute("""UPDATE metrics SET value = CASE WHEN step >= 95000 THEN 'nan'::DOUBLE
                                                      ELSE value * exp((step - 80000) / 4000.0) END
                       WHERE key = 'train/loss' AND step >= 80000 AND run_id >= 'run-090'""")
        con.execute("CHECKPOINT")
    tmp.rename(db)
    print(f"generated {db} ({RUNS * STEPS * len(KEYS) / 1e6:.0f}M points) in {time.perf_counter() - t0:.1f}s")


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/runlake-bench/analysis.duckdb")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from runlake.analysis.anomalies import find
    from runlake.analysis.curves import downsample
    from runlake.analysis.report import build_report, write_report
    from runlake.store import read_store

    db = Path(args.store)
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        generate(db)
    print(f"store {db}: {os.path.getsize(db) / 1e6:.0f} MB, cpus={os.cpu_count()}, repeat={args.repeat}")
    rows = []
    with read_store(db) as con:
        n = con.execute("SELECT count(*) FROM metrics").fetchall()[0][0]
        base, _ = timed(lambda: con.execute("SELECT count(*), avg(value) FROM metrics").fetchall(), args.repeat)
        rows.append(("baseline: full scan count/avg", base, None))
        t, found = timed(lambda: find(con), args.repeat)
        rows.append((f"all detectors, {RUNS} runs ({found.height} findings)", t, 15.0))
        t, ds = timed(lambda: downsample(con, None, "train/loss", points=1000), max(args.repeat, 5))
        rows.append((f"downsample train/loss, {RUNS} runs x 1000 pts ({ds.height} rows)", t, 0.5))
    ids = [f"run-{i:03d}" for i in range(0, RUNS, RUNS // 20)]
    out = Path(tempfile.mkdtemp()) / "report.html"
    t, _ = timed(lambda: write_report(build_report(db, ids), out), args.repeat)
    rows.append((f"report, {len(ids)} runs, html ({out.stat().st_size / 1e3:.0f} kB)", t, 10.0))
    print(f"\n{n / 1e6:.0f}M points\n{'what':62} {'median s':>9} {'x scan':>8} {'target':>8}")
    for what, secs, target in rows:
        verdict = "" if target is None else ("ok" if secs <= target else "MISSED")
        tgt = "" if target is None else f"<={target:g}s {verdict}"
        print(f"{what:62} {secs:9.3f} {secs / base:8.1f} {tgt:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
