"""MLflow import benchmark: a 1M-point SQLite backend through `runlake import mlflow`.

Run:  .venv/bin/python bench/bench_import_mlflow.py [--points 1000000] [--keys 10] [--repeat 3]

The backend is created by MLflow itself (its schema and migrations, the experiment and the
run by ``MlflowClient``); the points are then inserted with sqlite3 into MLflow's own
``metrics`` table (``log_batch`` takes 1,000 metrics per call, hours for a million).
Each repeat imports into a fresh root and times, separately, reading + writing the
segment (``ingest=False``) and the whole import with its ingest into the DuckDB store,
as wall time and as this process's CPU time (all its threads: on a loaded machine the CPU
figure is the steadier one). Prints points/s; writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

T0 = 1_700_000_000_000


def make_backend(path: Path, points: int, keys: int) -> str:
    """A SQLite backend with one run holding ``points`` points over ``keys`` keys."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("bench"), run_name="big", start_time=T0)
    client.log_param(run.info.run_id, "lr", "0.001")
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + points)
    steps = points // keys
    names = [f"train/metric_{k}" for k in range(keys)]
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)",
        ((names[k], 1.0 / (s + k + 1), T0 + s, run.info.run_id, s) for s in range(steps) for k in range(keys)))
    con.commit()
    con.close()
    return uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from runlake.ingest import ingest
    from runlake.ingest.import_mlflow import import_mlflow

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        uri = make_backend(tmp / "mlflow.db", args.points, args.keys)
        print(f"backend: {args.points:,} points, {args.keys} keys ({time.perf_counter() - t:.1f} s to make)")
        times: dict[str, list[float]] = {k: [] for k in ("read + segment", "import with ingest")}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        for i in range(args.repeat):
            root = tmp / f"root{i}"
            t, c = time.perf_counter(), time.process_time()
            (r,) = import_mlflow(uri, root=root, ingest=False)
            times["read + segment"].append(time.perf_counter() - t)
            cpu["read + segment"].append(time.process_time() - c)
            ingest(root=root)
            times["import with ingest"].append(time.perf_counter() - t)
            cpu["import with ingest"].append(time.process_time() - c)
            assert r.counts["points"] == args.points // args.keys * args.keys, r
        n = args.points // args.keys * args.keys
        for label in times:
            wall, proc = statistics.median(times[label]), statistics.median(cpu[label])
            print(f"{label:20s} wall {wall:6.2f} s {n / wall / 1e3:6.0f}k points/s | CPU {proc:6.2f} s "
                  f"{n / proc / 1e3:6.0f}k points/s  (wall: {', '.join(f'{x:.2f}' for x in times[label])})")


if __name__ == "__main__":
    main()
