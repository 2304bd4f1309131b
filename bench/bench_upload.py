"""Object-storage emitter benchmark: Run.log with an s3:// root vs a local root, and upload
throughput of sealed spool segments to a local S3 server (moto, tests/s3/_server.py).

Run:  .venv/bin/python bench/bench_upload.py [--runs 5] [--steps 200000]

1. Run.log of 10 floats in a tight loop (wall / calls, the writer's and, for s3, the
   uploader's GIL share included) and paced (1 ms sleep between steps, only the call
   timed, median), for a local root and an s3:// root uploading every second meanwhile;
   median of ``--runs`` runs, the two roots alternating.
2. Upload throughput: ``runlake push`` of a spool of sealed segments (the uploader's own
   code path, ``upload_segment``: read, put_new, delete), small and large segments.
Prints a table; writes nothing else.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = [f"train/metric_{i}" for i in range(10)]


def _server_module():
    spec = importlib.util.spec_from_file_location("_s3server", REPO / "tests/s3/_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_cost(root: str, steps: int) -> tuple[float, float]:
    """(tight µs per call, paced median µs per call) for one run at ``root``."""
    import runlake

    run = runlake.init("bench", root=root, system_interval=0, console=False,
                       capture_logging=False, online_checks=False)
    log = run.log
    values = [0.1 * i for i in range(10)]
    t0 = time.perf_counter()
    for step in range(steps):
        log(dict(zip(KEYS, values)), step=step)
    tight = (time.perf_counter() - t0) / steps * 1e6
    paced = []
    for step in range(steps, steps + 2000):
        d = dict(zip(KEYS, values))
        t = time.perf_counter()
        log(d, step=step)
        paced.append(time.perf_counter() - t)
        time.sleep(0.001)
    run.finish()
    return tight, statistics.median(paced) * 1e6


def push_throughput(url: str, count: int, size: int) -> tuple[float, float]:
    """(objects/s, MB/s) of pushing ``count`` sealed segments of ``size`` bytes."""
    from runlake.emitter.spool import claim_spool, push

    spool = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    claim_spool(spool, url)
    writer = spool / "bench" / f"run-{size}" / "r0000-a000-0badcafe"
    writer.mkdir(parents=True)
    for seq in range(count):
        (writer / f"{seq:06d}.jsonl.zst").write_bytes(os.urandom(size))
    t0 = time.perf_counter()
    report = push(spool, url)
    dt = time.perf_counter() - t0
    assert report.uploaded == count, report
    return count / dt, count * size / dt / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200_000)
    args = ap.parse_args()
    with _server_module().MotoServer() as server:
        os.environ.update(server.env)
        tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
        os.environ["RUNLAKE_SPOOL"] = str(tmp / "spool")
        os.environ["RUNLAKE_UPLOAD_INTERVAL"] = "1"
        url = f"s3://{server.new_bucket()}/runs"
        results: dict[str, list[tuple[float, float]]] = {"local": [], "s3": []}
        for i in range(args.runs):
            for kind in (("local", "s3") if i % 2 == 0 else ("s3", "local")):
                root = str(tmp / f"local{i}") if kind == "local" else url
                results[kind].append(log_cost(root, args.steps))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
              f"{args.runs} runs x {args.steps:,} steps, python {sys.version.split()[0]}")
        print(f"{'root':8} {'tight µs/call':>14} {'paced µs/call':>14}")
        for kind, rows in results.items():
            print(f"{kind:8} {statistics.median(r[0] for r in rows):14.2f} "
                  f"{statistics.median(r[1] for r in rows):14.2f}")
        print(f"{'segments':>18} {'objects/s':>10} {'MB/s':>8}")
        for count, size in ((300, 4 << 10), (100, 256 << 10), (20, 4 << 20)):
            rate, mbs = push_throughput(url, count, size)
            print(f"{count:5d} x {size >> 10:6d} KiB {rate:10.1f} {mbs:8.1f}")


if __name__ == "__main__":
    main()
