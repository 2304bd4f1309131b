"""Benchmark: segments -> committed DuckDB rows, and watch() freshness.

One command (from the repository root):

    .venv/bin/python bench/bench_ingest.py            # 20 runs x 50k steps x 10 keys = 10M points
    .venv/bin/python bench/bench_ingest.py --quick    # 2M points
    .venv/bin/python bench/bench_ingest.py --many     # 1,000 runs x 1,000 steps x 10 keys

Generates segments with the real framing (event structs -> the emitter's encode_batch, which
packs a flush's metrics into one metrics_block line -> one zstd frame with checksum per
flush of 1,000 steps, 64 MB segments sealed by rename), then times
``runlake.ingest.ingest()`` end to end on a fresh store (median of --repeat runs) and,
in the same run, three baselines over the same points: ingest of the same points written
one metrics event per line (the format before blocks, still read), raw zstd decompression
of the segments, and DuckDB loading the same rows from an equivalent Parquet file. Then
measures freshness:
a live writer flushing one frame per second while ``watch()`` runs; the delay from the
flush to the row being visible to a read-only query.

``--many`` measures the per-segment overhead instead: 1,000 short runs written as the
emitter writes them (one sealed segment each, a frame per 100 steps, run_start, heartbeat,
run_end) against the same points in 10 long runs, passes interleaved (median of --repeat,
wall and CPU seconds), then a pass with nothing new over the 1,000 runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from runlake.ingest import ingest, watch
from runlake.schemas import events as E
from runlake.emitter.writer import encode_batch
from runlake.schemas.codec import ENCODER
from runlake.schemas.segments import frame_compressor, iter_frames, segment_name
from runlake.schemas.errors import StoreError
from runlake.store import locate, read_store

FLUSH_STEPS = 1000
SEGMENT_BYTES = 64 << 20


def generate(root: Path, runs: int, steps: int, keys: int, seed: int = 0,
             rows: bool = False) -> int:
    """Write runs x steps x keys random float points; returns the point count."""
    rng = random.Random(seed)
    cctx = frame_compressor()  # the emitter's frames
    names = [f"train/metric_{k}" for k in range(keys)]
    ts = time.time_ns()
    for r in range(runs):
        run_id = f"bench-{r:03d}"
        writer = "r0000-a000-bench"
        folder = root / "bench" / run_id / writer
        folder.mkdir(parents=True)
        seq, segment, size = 0, 0, 0
        out = open(folder / segment_name(segment, sealed=False), "ab")
        events = [E.RunStart(v=1, run_id=run_id, writer=writer, seq=0, ts=ts, rank=0,
                             project="bench", name=f"run{r}", config={"lr": 0.001 * r})]
        for step in range(steps):
            seq += 1
            events.append(E.Metrics(v=1, run_id=run_id, writer=writer, seq=seq,
                                    ts=ts + step * 1_000_000, rank=0, step=step,
                                    values={k: rng.random() for k in names}))
            if len(events) >= FLUSH_STEPS or step == steps - 1:
                if step == steps - 1:
                    events.append(E.RunEnd(v=1, run_id=run_id, writer=writer, seq=seq + 1,
                                           ts=ts + steps * 1_000_000, rank=0, status="finished"))
                lines = ENCODER.encode_lines(events) if rows else encode_batch(
                    events, lambda ev, exc: None)[0]
                data = cctx.compress(lines)
                out.write(data)
                size += len(data)
                events = []
                if size >= SEGMENT_BYTES or step == steps - 1:
                    out.close()
                    os.rename(folder / segment_name(segment, sealed=False),
                              folder / segment_name(segment, sealed=True))
                    segment, size = segment + 1, 0
                    if step != steps - 1:
                        out = open(folder / segment_name(segment, sealed=False), "ab")
    return runs * steps * keys


def generate_many(root: Path, runs: int, steps: int, keys: int, seed: int = 0,
                  frame_steps: int = 100, segments_per_run: int = 1) -> int:
    """Write ``runs`` short runs the way the emitter does; returns the point count.

    Each run is one writer folder with ``segments_per_run`` sealed segments; each flush of
    ``frame_steps`` steps is one zstd frame (the emitter's ``encode_batch``: metrics as one
    block, control events as lines). The first frame starts with ``run_start``, every
    tenth flush carries a ``heartbeat`` and the last one ``run_end``: per run, the events a
    real short training run writes.
    """
    rng = random.Random(seed)
    cctx = frame_compressor()  # the emitter's frames
    names = [f"train/metric_{k}" for k in range(keys)]
    ts = time.time_ns()
    flushes = -(-steps // frame_steps)
    per_segment = -(-flushes // segments_per_run)
    for r in range(runs):
        run_id = f"many-{r:04d}"
        writer = "r0000-a000-many"
        folder = root / "bench" / run_id / writer
        folder.mkdir(parents=True)
        env = dict(v=1, run_id=run_id, writer=writer, rank=0)
        seq = 0
        events: list = [E.RunStart(**env, seq=seq, ts=ts, project="bench", name=f"run{r}",
                                   config={"lr": 0.001 * r}, total_steps=steps,
                                   heartbeat_s=10.0)]
        out, segment = None, 0
        for f in range(flushes):
            for step in range(f * frame_steps, min(steps, (f + 1) * frame_steps)):
                seq += 1
                events.append(E.Metrics(**env, seq=seq, ts=ts + step * 1_000_000, step=step,
                                        values={k: rng.random() for k in names}))
            if f % 10 == 9:
                seq += 1
                events.append(E.Heartbeat(**env, seq=seq, ts=ts + step * 1_000_000, step=step,
                                          total_steps=steps, interval_s=10.0, events=seq))
            if f == flushes - 1:
                seq += 1
                events.append(E.RunEnd(**env, seq=seq, ts=ts + steps * 1_000_000,
                                       status="finished", step=steps - 1, events=seq))
            if out is None:
                out = open(folder / segment_name(segment, sealed=False), "ab")
            out.write(cctx.compress(encode_batch(events, lambda ev, exc: None)[0]))
            events = []
            if f % per_segment == per_segment - 1 or f == flushes - 1:
                out.close()
                out = None
                os.rename(folder / segment_name(segment, sealed=False),
                          folder / segment_name(segment, sealed=True))
                segment += 1
    return runs * steps * keys


def baseline_decompress(root: Path) -> float:
    """Seconds to decompress every segment (no decoding, no storing)."""
    start = time.perf_counter()
    for path in root.rglob("*.jsonl.zst"):
        for _span, _content in iter_frames(path.read_bytes(), sealed=True):
            pass
    return time.perf_counter() - start


def baseline_parquet(db: Path, work: Path) -> float:
    """Seconds for DuckDB to load the same rows from a Parquet file into a fresh store."""
    import duckdb

    parquet = work / "metrics.parquet"
    with read_store(db) as con:
        con.execute(f"COPY (SELECT * FROM metrics) TO '{parquet}' (FORMAT parquet)")
    target = work / "parquet.duckdb"
    start = time.perf_counter()
    con = duckdb.connect(str(target))
    con.execute(f"CREATE TABLE metrics AS SELECT * FROM read_parquet('{parquet}')")
    con.close()
    seconds = time.perf_counter() - start
    target.unlink()
    return seconds


def freshness(work: Path, flushes: int = 10, kind: str = "duckdb") -> list[float]:
    """Delay from a writer's flush to the row being visible to a new reader of store
    ``kind`` (``duckdb`` or ``lake``), with watch() running."""
    root = work / f"live-{kind}"
    folder = root / "live" / "run-live" / "r0000-a000-live"
    folder.mkdir(parents=True)
    cctx = frame_compressor()  # the emitter's frames
    stop = threading.Event()
    thread = threading.Thread(target=watch, kwargs=dict(root=root, interval=0.25, stop=stop,
                                                        kind=kind), daemon=True)
    thread.start()
    delays = []
    path = folder / segment_name(0, sealed=False)
    for i in range(flushes):
        time.sleep(1.0)
        ev = E.Metrics(v=1, run_id="run-live", writer="r0000-a000-live", seq=i, ts=time.time_ns(),
                       rank=0, step=i, values={"loss": 1.0 / (i + 1)})
        with open(path, "ab") as f:
            f.write(cctx.compress(ENCODER.encode_lines([ev])))
        flushed = time.perf_counter()
        while True:
            location = locate(root, kind=kind)
            if location.exists():
                try:
                    with read_store(location) as con:
                        seen = con.execute("SELECT count(*) FROM metrics WHERE step = ?",
                                           [i]).fetchall()[0][0]
                except StoreError:  # the first pass is still creating the store
                    seen = 0
                if seen:
                    break
            time.sleep(0.02)
        delays.append(time.perf_counter() - flushed)
    stop.set()
    thread.join()
    return delays


def many_runs(work: Path, runs: int, steps: int, keys: int, repeat: int,
              kind: str | None) -> None:
    """The per-segment overhead: ``runs`` short runs (one segment each) against the same
    points in ``runs // 100`` long runs, passes interleaved, each on a fresh store."""
    many, long = work / "many", work / "long"
    t = time.perf_counter()
    points = generate_many(many, runs, steps, keys)
    long_runs = max(1, runs // 100)
    generate(long, long_runs, points // (long_runs * keys), keys)
    print(f"generated {points:,} points: {runs} runs x {steps} steps x {keys} keys "
          f"(frames of 100 steps, run_start/heartbeat/run_end) and {long_runs} runs x "
          f"{points // (long_runs * keys):,} steps ({time.perf_counter() - t:.1f}s)")
    results: dict[str, list[tuple[float, float]]] = {"many runs": [], "long runs": []}
    again = []
    for i in range(repeat):
        for label, root in (("many runs", many), ("long runs", long))[::1 if i % 2 else -1]:
            db = work / f"store-{i}-{root.name}" if kind == "lake" else \
                work / f"store-{i}-{root.name}.duckdb"
            cpu = time.process_time()
            report = ingest(root, db, kind=kind)
            cpu = time.process_time() - cpu
            assert report.points == points, (report.points, points)
            results[label].append((report.seconds, cpu))
            print(f"  {label} pass {i + 1}: {report.seconds:.2f}s = "
                  f"{points / report.seconds / 1e6:.2f}M points/s (CPU {cpu:.2f}s, "
                  f"{report.commits} commits)")
            if root is many:
                again.append(ingest(root, db, kind=kind).seconds)
            shutil.rmtree(db) if db.is_dir() else db.unlink()
    med = {k: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v))
           for k, v in results.items()}
    for label, (secs, cpu) in med.items():
        print(f"{label:9s} median {secs:.2f}s = {points / secs / 1e6:.2f}M points/s, "
              f"CPU {cpu:.2f}s = {cpu / points * 1e6:.2f} us/point")
    print(f"many runs / long runs: {med['many runs'][0] / med['long runs'][0]:.2f}x the time, "
          f"{med['many runs'][1] / med['long runs'][1]:.2f}x the CPU (target >= 2M points/s "
          f"many, >= 3M long); pass with nothing new over {runs} runs: median "
          f"{statistics.median(again):.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 runs x 50k steps x 10 keys")
    parser.add_argument("--many", action="store_true",
                        help="1,000 runs x 1,000 steps x 10 keys (--runs/--steps apply) "
                             "against the same points in long runs")
    parser.add_argument("--kind", choices=("duckdb", "lake"), default=None,
                        help="store kind for --many (default: the DuckDB file)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 4
    work = Path(tempfile.mkdtemp(prefix="runlake-bench-"))
    if args.many:
        try:
            many_runs(work, 1000 if args.runs == 20 else args.runs,
                      1000 if args.steps == 50_000 else args.steps, args.keys, args.repeat,
                      args.kind)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        root = work / "lake"
        t = time.perf_counter()
        points = generate(root, args.runs, args.steps, args.keys)
        seg_bytes = sum(p.stat().st_size for p in root.rglob("*.jsonl.zst"))
        print(f"generated {points:,} points in {seg_bytes / 1e6:,.1f} MB of segments "
              f"({time.perf_counter() - t:.1f}s)")
        rows_root = work / "lake-rows"
        generate(rows_root, args.runs, args.steps, args.keys, rows=True)
        rows_bytes = sum(p.stat().st_size for p in rows_root.rglob("*.jsonl.zst"))
        times, rows_times = [], []
        for i in range(args.repeat):
            for lake, label, out in ((root, "blocks", times), (rows_root, "line per event",
                                                                rows_times)):
                db = work / f"store{i}-{len(out)}-{lake.name}.duckdb"
                report = ingest(lake, db)
                assert report.points == points, (report.points, points)
                out.append(report.seconds)
                print(f"  ingest run {i + 1} ({label}): {report.seconds:.2f}s  "
                      f"{points / report.seconds / 1e6:.2f}M points/s  ({report.commits} commits)")
                if i or lake is rows_root:
                    db.unlink()
                else:
                    store0 = db
        ingest_s = statistics.median(times)
        rows_s = statistics.median(rows_times)
        decomp_s = statistics.median(baseline_decompress(root) for _ in range(args.repeat))
        parquet_s = statistics.median(
            baseline_parquet(store0, work) for _ in range(args.repeat))
        rate = points / ingest_s
        print(f"ingest (segments -> committed rows): median {ingest_s:.2f}s = "
              f"{rate / 1e6:.2f}M points/s (target >= 3M)")
        print(f"baseline one event per line:         median {rows_s:.2f}s = "
              f"{points / rows_s / 1e6:.2f}M points/s ({rows_bytes / points:.2f} B/point vs "
              f"{seg_bytes / points:.2f}); blocks are {rows_s / ingest_s:.2f}x faster")
        print(f"baseline zstd decompress only:       median {decomp_s:.2f}s = "
              f"{points / decomp_s / 1e6:.2f}M points/s; ingest takes {ingest_s / decomp_s:.1f}x")
        print(f"baseline DuckDB from Parquet:        median {parquet_s:.2f}s = "
              f"{points / parquet_s / 1e6:.2f}M points/s; ingest takes {ingest_s / parquet_s:.1f}x")
        delays = freshness(work)
        print(f"freshness (flush -> visible read-only, watch interval 0.25s): median "
              f"{statistics.median(delays):.2f}s, max {max(delays):.2f}s (target <= 2s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
