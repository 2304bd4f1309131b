"""Benchmark: the Delta lake store against the DuckDB-file store, in the same process.

One command (from the repository root):

    .venv/bin/python bench/bench_lake.py            # the sizes of issue 10's targets
    .venv/bin/python bench/bench_lake.py --quick    # a fifth of the points, for a smoke run

Every figure is printed for both stores and as a ratio (lake / file, or file / lake for
rates), medians of --repeat runs, on the same segments (the emitter's framing, generated
by bench/bench_ingest.py's generators):

1. ingest points/s, long runs (20 runs x 50k steps x 10 keys) and many short runs
   (1,000 runs x 1,000 steps x 10 keys), one pass into a fresh store;
2. freshness: a writer flushing one frame per second while ``watch()`` (interval 0.25 s)
   runs on the lake; delay from the flush to the row being visible to a new reader;
3. after compaction: the curve query (100 runs x 100k steps of one key -> 1,000 min/max
   buckets per run, ``analysis.curves.downsample``) and the runs table with 10,000 runs
   (``analysis.runs.list_runs``), each on an open connection;
4. bytes per point on disk (lake folder after compaction and vacuum vs the DuckDB file);
5. lake ingest time of the long runs with a reader holding a snapshot open vs none.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ingest  # noqa: E402  (the generators and the emitter's framing)

from runlake.analysis.curves import downsample  # noqa: E402
from runlake.analysis.runs import list_runs  # noqa: E402
from runlake.ingest.loader import run_pass  # noqa: E402
from runlake.store.duck import DuckBackend, read_store as duck_read  # noqa: E402
from runlake.store.lake import LakeBackend, compact, connect  # noqa: E402
from runlake.store.location import StoreLocation  # noqa: E402


def _lake(root: Path) -> StoreLocation:
    return StoreLocation("lake", root / "runlake-lake", root)


def _duck(root: Path) -> StoreLocation:
    return StoreLocation("duckdb", root / "runlake.duckdb", root)


def _clear(root: Path) -> None:
    shutil.rmtree(root / "runlake-lake", ignore_errors=True)
    (root / "runlake.duckdb").unlink(missing_ok=True)
    (root / "runlake.duckdb.wal").unlink(missing_ok=True)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


def ingest_rates(root: Path, points: int, repeat: int, label: str) -> dict[str, float]:
    """Median seconds of one pass into a fresh store, per backend (interleaved)."""
    times: dict[str, list[float]] = {"file": [], "lake": []}
    for _ in range(repeat):
        for kind, backend in (("file", lambda: DuckBackend(_duck(root))),
                              ("lake", lambda: LakeBackend(_lake(root)))):
            _clear(root)
            start = time.perf_counter()
            report = run_pass(root, backend())
            times[kind].append(time.perf_counter() - start)
            assert report.points == points, (report.points, points)
    med = {k: statistics.median(v) for k, v in times.items()}
    f, lk = points / med["file"], points / med["lake"]
    print(f"ingest {label}: file {f / 1e6:.2f}M points/s, lake {lk / 1e6:.2f}M points/s "
          f"(lake/file {lk / f:.2f}x; medians of {repeat})")
    return med


def _timed(fn, repeat: int) -> float:
    fn()  # warm (file cache, DeltaTable cache)
    return statistics.median(_once(fn) for _ in range(repeat))


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def queries(root: Path, repeat: int, what: str, fn) -> tuple[float, float]:
    """Median seconds of ``fn(con)`` on the DuckDB file and on the compacted lake."""
    _clear(root)
    run_pass(root, DuckBackend(_duck(root)))
    run_pass(root, LakeBackend(_lake(root)))
    compact(_lake(root), grace_s=0)
    with duck_read(_duck(root).path) as con:
        f = _timed(lambda: fn(con), repeat)
    con = connect(_lake(root))
    lk = _timed(lambda: fn(con), repeat)
    con.close()
    print(f"{what}: file {f:.3f}s, lake {lk:.3f}s (lake/file {lk / f:.2f}x; target <= 0.5s)")
    return f, lk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a fifth of every size")
    parser.add_argument("--divide", type=int, default=0, help="divide every size by N")
    args = parser.parse_args()
    div = args.divide or (5 if args.quick else 1)
    def size(x: int) -> int:
        return max(1, x // div)

    work = Path(tempfile.mkdtemp(prefix="runlake-bench-lake-"))
    try:
        long_root = work / "long"
        points = bench_ingest.generate(long_root, size(20), 50_000, 10)
        ingest_rates(long_root, points, args.repeat, f"long runs ({points:,} points)")

        # bytes per point: both stores of the long runs, the lake compacted and vacuumed
        _clear(long_root)
        run_pass(long_root, DuckBackend(_duck(long_root)))
        run_pass(long_root, LakeBackend(_lake(long_root)))
        compact(_lake(long_root), grace_s=0)
        fb, lb = _size(_duck(long_root).path), _size(_lake(long_root).path)
        print(f"bytes per point on disk: file {fb / points:.2f}, lake {lb / points:.2f} "
              f"(lake/file {lb / fb:.2f}x; target <= 1)")

        # ingest with a reader holding a snapshot vs none (lake)
        held, free = [], []
        for i in range(args.repeat):
            pair = ((free, False), (held, True))
            for out, hold in pair if i % 2 == 0 else pair[::-1]:  # order alternates
                _clear(long_root)
                backend = LakeBackend(_lake(long_root))
                backend.prepare()
                reader = connect(_lake(long_root)) if hold else None
                start = time.perf_counter()
                run_pass(long_root, backend)
                out.append(time.perf_counter() - start)
                if reader is not None:
                    reader.execute("SELECT count(*) FROM metrics").fetchone()
                    reader.close()
        h, n = statistics.median(held), statistics.median(free)
        print(f"lake ingest of {points:,} points with a reader holding a snapshot: {h:.2f}s "
              f"vs none {n:.2f}s ({h / n:.2f}x; target <= 1.10)")
        shutil.rmtree(long_root)

        many_root = work / "many"
        points = bench_ingest.generate_many(many_root, size(1000), 1000, 10)
        ingest_rates(many_root, points, args.repeat, f"1,000 runs x 1,000 steps x 10 keys "
                                                     f"({points:,} points)")
        shutil.rmtree(many_root)

        delays = bench_ingest.freshness(work, kind="lake")
        print(f"freshness on the lake (flush -> visible to a new reader, watch interval "
              f"0.25s): median {statistics.median(delays):.2f}s, max {max(delays):.2f}s "
              f"(target <= 2s)")

        curve_root = work / "curve"
        bench_ingest.generate(curve_root, size(100), 100_000, 1)
        queries(curve_root, args.repeat, f"curve query ({size(100)} runs x 100k steps -> "
                f"1,000 min/max buckets)",
                lambda con: downsample(con, None, "train/metric_0", points=4000))
        shutil.rmtree(curve_root)

        runs_root = work / "runs"
        bench_ingest.generate_many(runs_root, size(10_000), 10, 1, frame_steps=10)
        queries(runs_root, args.repeat, f"runs table ({size(10_000):,} runs)",
                lambda con: list_runs(con))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
