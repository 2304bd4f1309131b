"""Ingest points/s from an s3:// root into its s3 lake vs a local root into its local lake.

Same segments (tests/store/_lake_util.write_segments: the emitter's framing), same
process, one unsharded pass each, against a moto S3 server on 127.0.0.1
(tests/s3/_server.py). Usage:

    .venv/bin/python bench/s3_ingest_points.py [--runs 10] [--steps 10000] [--keys 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--keys", type=int, default=5)
    a = ap.parse_args()
    server = _load("b_moto_server", REPO / "tests/s3/_server.py").MotoServer().start()
    u = _load("b_lake_util", REPO / "tests/store/_lake_util.py")
    try:
        os.environ.update(server.env)
        from runlake.ingest import ingest
        from runlake.schemas.objects import ObjectStore

        tmp = Path(tempfile.mkdtemp(prefix="s3bench-"))
        local = tmp / "root"
        points = u.write_segments(local, runs=a.runs, steps=a.steps, keys=a.keys,
                                  flush_steps=500, segment_flushes=10, garbage=False)
        url = f"s3://{server.new_bucket()}/runs"
        store = ObjectStore(url)
        files = sorted(local.rglob("*.jsonl.zst"))
        t = time.perf_counter()
        for f in files:
            store.put_new(f.relative_to(local).as_posix(), f.read_bytes())
        upload = time.perf_counter() - t
        size = sum(f.stat().st_size for f in files)
        print(f"{points:,} points in {len(files)} segments ({size / points:.2f} B/point); "
              f"upload {upload:.2f} s")
        for label, root, kind in (("local root -> local lake", str(local), "lake"),
                                  ("s3 root -> s3 lake", url, None)):
            c, t = _cpu(), time.perf_counter()
            report = ingest(root, kind=kind)
            wall, cpu = time.perf_counter() - t, _cpu() - c
            assert report.points == points, (report.points, points)
            print(f"{label}: {wall:.2f} s, {points / wall:,.0f} points/s, "
                  f"{cpu / points * 1e6:.2f} us CPU/point (this process), "
                  f"{report.commits} commits")
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
