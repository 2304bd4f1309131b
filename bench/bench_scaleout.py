"""Benchmark: many machines on one: sharded ingest, object storage, a cluster engine.

One command (from the repository root):

    .venv/bin/python bench/bench_scaleout.py                 # small (minutes on 2 cores)
    .venv/bin/python bench/bench_scaleout.py --points 100000000 --writers 1000 \\
        --runs 10000 --shard-points 20000000               # the issue's full-size target

Everything runs on this machine: a real moto S3 server on 127.0.0.1 (tests/s3/_server.py),
real `runlake ingest` processes (CPU measured per process with wait4), real emitter
processes. Ratios are against a baseline measured in the same run: one unsharded ingest
process into a local lake.

1. Sharded ingest: the same segments (emitter framing, bench_ingest.generate_many) ingested
   by 1, 2 and 4 `runlake ingest --shard I/N` processes at once, into a local lake and from
   an s3:// root (segments uploaded as objects) into its s3:// lake: wall, points/s in all
   and per shard, CPU seconds per point. Two cores: past 2 shards nothing scales; the CPU
   per point is the per-node cost.
2. Simulation of the target ("1,000 writers, 10,000 runs, 100M points through object
   storage and sharded ingest", scaled by --points/--writers/--runs): writer processes in
   sequence (--procs at a time) each write their runs with the real emitter to the s3://
   root (spool + uploader), while --shards `runlake ingest --shard I/N --watch` processes
   ingest; a probe writer flushes one step a second (its value: the flush time) and a
   reader polls the lake, giving flush -> queryable. Reports throughput end to end,
   segment objects per minute, bytes per point (objects and lake), flush -> queryable.
3. Ray Data (runlake.analysis.cluster, local 2-CPU cluster) vs DuckDB
   (runlake.store.connect) on the simulation's lake: the runs table and one curve query
   (the first 100 runs, one key, 250 min/max buckets), medians of --repeat after a warm-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import bench_ingest  # noqa: E402  (the generators and the emitter's framing)

from runlake.analysis import cluster  # noqa: E402
from runlake.analysis.curves import downsample  # noqa: E402
from runlake.schemas.errors import StoreError  # noqa: E402
from runlake.schemas.objects import ObjectStore  # noqa: E402
from runlake.store import connect  # noqa: E402

KEY = "k0"


def _moto():
    spec = importlib.util.spec_from_file_location("_runlake_s3_server",
                                                  REPO / "tests" / "s3" / "_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MotoServer


def _env(extra: dict | None = None) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNLAKE_")}
    return {**base, **(extra or {})}


def _ingest_cmd(root: str, shard: str | None, *more: str) -> list[str]:
    lake = [] if root.startswith("s3://") else ["--lake"]
    return [sys.executable, "-m", "runlake.cli", "ingest", "--root", root, *lake, "-q",
            *(["--shard", shard] if shard else []), *more]


def _wait(proc: subprocess.Popen) -> tuple[int, float]:
    """(exit status, CPU seconds user+sys) of a child, from wait4."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _visible_points(lake: str) -> int:
    con = connect(db=lake)
    try:
        return con.sql("SELECT count(*) FROM metrics").fetchall()[0][0]
    finally:
        con.close()


def _size(root: str | Path, prefix: str = "") -> int:
    if isinstance(root, str):
        return sum(o.size for o in ObjectStore(root).list(prefix))
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


# -- 1. sharded ingest ------------------------------------------------------------------
def shard_pass(root: str, shards: int | None, points: int) -> dict:
    """One fresh ingest of ``root`` by ``shards`` processes at once (None: unsharded)."""
    specs = [None] if shards is None else [f"{i}/{shards}" for i in range(1, shards + 1)]
    start = time.perf_counter()
    procs = [subprocess.Popen(_ingest_cmd(root, s), env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for s in specs]
    cpu = 0.0
    for p in procs:
        code, used = _wait(p)
        assert code == 0, p.stderr.read().decode()[-2000:]
        cpu += used
    wall = time.perf_counter() - start
    lake = f"{root}/runlake-lake" if root.startswith("s3://") else str(Path(root) / "runlake-lake")
    seen = _visible_points(lake)
    assert seen == points, (seen, points)
    n = len(specs)
    return {"wall": wall, "rate": points / wall, "per_shard": points / wall / n,
            "cpu_per_point": cpu / points}


def _upload(local: Path, root: str) -> None:
    store = ObjectStore(root)
    for path in sorted(local.rglob("*.jsonl.zst")):
        store.put_new(path.relative_to(local).as_posix(), path.read_bytes())


def bench_shards(work: Path, server, runs: int, steps: int, keys: int) -> None:
    seg = work / "segments"
    points = bench_ingest.generate_many(seg, runs, steps, keys)
    print(f"1. sharded ingest of {points:,} points ({runs} runs x {steps} steps x {keys} keys)")

    def local_root() -> str:
        root = work / "local"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(seg, root)
        return str(root)

    base = shard_pass(local_root(), None, points)
    print(f"   baseline, unsharded, local lake: wall {base['wall']:.2f}s, "
          f"{base['rate'] / 1e3:.0f}k points/s, "
          f"{base['cpu_per_point'] * 1e6:.2f} CPU us/point")
    for where in ("local", "s3"):
        for n in (1, 2, 4):
            if where == "local":
                root = local_root()
            else:
                root = f"s3://{server.new_bucket()}/runs"
                _upload(seg, root)
            r = shard_pass(root, n, points)
            print(f"   {where:5} {n} shard(s): wall {r['wall']:.2f}s, "
                  f"{r['rate'] / 1e3:.0f}k points/s ({r['rate'] / base['rate']:.2f}x), "
                  f"{r['per_shard'] / 1e3:.0f}k points/s per shard, "
                  f"{r['cpu_per_point'] * 1e6:.2f} CPU us/point "
                  f"({r['cpu_per_point'] / base['cpu_per_point']:.2f}x)")


# -- 2. the simulation ------------------------------------------------------------------
_WRITER = r"""
import sys, runlake
root, first, count, runs_each, steps, keys = sys.argv[1], *map(int, sys.argv[2:7])
for w in range(first, first + count):
    for r in range(runs_each):
        run = runlake.init("sim", f"w{w}-r{r}", root=root, run_id=f"sim-{w:05d}-{r:03d}",
                           flush_interval=0.5, heartbeat_interval=5.0, system_interval=0,
                           console=False, online_checks=False, capture_logging=False)
        for step in range(steps):
            run.log({f"k{k}": step * 0.5 + k for k in range(keys)}, step=step)
        run.finish()
"""

_PROBE = r"""
import sys, time, runlake
run = runlake.init("sim", "probe", root=sys.argv[1], run_id="probe", flush_interval=60,
                   heartbeat_interval=60, system_interval=0, console=False,
                   online_checks=False, capture_logging=False)
step = 0
while True:
    run.log({"flushed_at": time.time()}, step=step)
    run.flush()
    step += 1
    time.sleep(1.0)
"""


def _probe_delays(lake: str, stop: threading.Event, out: list[float]) -> None:
    """Poll the lake; each newly visible probe step gives now - its flush time."""
    seen = -1
    while not stop.is_set():
        try:
            con = connect(db=lake)
            try:
                rows = con.sql("SELECT step, value FROM metrics WHERE run_id = 'probe' AND "
                               f"step > {seen} ORDER BY step").fetchall()
            finally:
                con.close()
        except StoreError:  # no lake yet
            rows = []
        now = time.time()
        for step, flushed_at in rows:
            out.append(now - flushed_at)
            seen = step
        stop.wait(0.25)


def simulate(server, points: int, writers: int, runs: int, keys: int, procs: int,
             shards: int, spool: Path) -> str:
    runs = max(runs, writers)
    runs_each = max(1, runs // writers)
    steps = max(1, points // (writers * runs_each * keys))
    points = writers * runs_each * steps * keys
    root = f"s3://{server.new_bucket()}/runs"
    lake = f"{root}/runlake-lake"
    env = _env({**server.env, "RUNLAKE_SPOOL": str(spool)})
    print(f"2. simulation: {writers:,} writers x {runs_each} runs x {steps} steps x {keys} "
          f"keys = {points:,} points through {root}, {shards} shard ingesters")
    ingesters = [subprocess.Popen(_ingest_cmd(root, f"{i}/{shards}", "--watch", "--interval",
                                              "0.5"), env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for i in range(1, shards + 1)]
    probe = subprocess.Popen([sys.executable, "-c", _PROBE, root], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    delays: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=_probe_delays, args=(lake, stop, delays), daemon=True)
    start = time.perf_counter()
    poller.start()
    per_proc = -(-writers // procs)
    batch = [subprocess.Popen([sys.executable, "-c", _WRITER, root, str(first),
                               str(min(per_proc, writers - first)), str(runs_each), str(steps),
                               str(keys)], env=env, stderr=subprocess.PIPE)
             for first in range(0, writers, per_proc)]
    writer_cpu = 0.0
    for p in batch:
        code, used = _wait(p)
        assert code == 0, p.stderr.read().decode()[-2000:]
        writer_cpu += used
    written = time.perf_counter() - start
    seen = 0
    while seen < points:  # until every point is queryable (the probe's rows aside)
        dead = [p for p in ingesters if p.poll() is not None]
        assert not dead, dead[0].stderr.read().decode()[-2000:]
        try:
            con = connect(db=lake)
        except StoreError:  # no lake yet
            time.sleep(0.5)
            continue
        try:
            seen = con.sql("SELECT count(*) FROM metrics WHERE run_id <> 'probe'").fetchall()[0][0]
        finally:
            con.close()
        time.sleep(0.5)
    total = time.perf_counter() - start
    stop.set()
    poller.join()
    probe.kill()
    probe.wait()
    ingest_cpu = 0.0
    for p in ingesters:
        p.send_signal(signal.SIGINT)
        _code, used = _wait(p)
        ingest_cpu += used
    assert seen == points, (seen, points)
    objects = [o for o in ObjectStore(root).list() if o.rel.endswith(".jsonl.zst")]
    seg_bytes = sum(o.size for o in objects)
    lake_bytes = _size(root, "runlake-lake")
    print(f"   writers done in {written:.1f}s, all queryable after {total:.1f}s: "
          f"{points / total / 1e3:.0f}k points/s end to end")
    print(f"   {len(objects):,} segment objects, {len(objects) / (written / 60):,.0f} objects/min, "
          f"segments {seg_bytes / points:.2f} B/point, lake {lake_bytes / points:.2f} B/point")
    print(f"   CPU: writers {writer_cpu / points * 1e6:.2f} us/point, ingest "
          f"{ingest_cpu / points * 1e6:.2f} us/point")
    if delays:
        print(f"   flush -> queryable (probe, upload interval "
              f"{os.environ.get('RUNLAKE_UPLOAD_INTERVAL', '5')}s): median "
              f"{statistics.median(delays):.2f}s, max {max(delays):.2f}s, n={len(delays)}")
    return lake


# -- 3. Ray vs DuckDB -------------------------------------------------------------------
def _median(fn, repeat: int) -> float:
    fn()  # warm-up (Ray workers, DeltaTable caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def engines(lake: str, repeat: int) -> None:
    con = connect(db=lake)
    try:
        ids = [r[0] for r in con.sql("SELECT run_id FROM runs WHERE run_id <> 'probe' "
                                     "ORDER BY run_id LIMIT 100").fetchall()]
    finally:
        con.close()

    def duck(q):
        def run():
            c = connect(db=lake)  # a fresh snapshot each time, as Ray reads one
            try:
                q(c)
            finally:
                c.close()
        return run

    d_runs = _median(duck(lambda c: c.sql("SELECT * FROM runs").fetchall()), repeat)
    d_curve = _median(duck(lambda c: downsample(c, ids, KEY, points=1000)), repeat)
    with cluster.local_cluster(num_cpus=2):
        r_runs = _median(lambda: cluster.runs_table(lake), repeat)
        r_curve = _median(lambda: cluster.curve(lake, ids, KEY, 250), repeat)
    print(f"3. on that lake: runs table DuckDB {d_runs:.3f}s, Ray {r_runs:.3f}s "
          f"({r_runs / d_runs:.1f}x); curve ({len(ids)} runs, 250 buckets) DuckDB "
          f"{d_curve:.3f}s, Ray {r_curve:.3f}s ({r_curve / d_curve:.1f}x); medians of {repeat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2_000_000, help="simulation points")
    parser.add_argument("--writers", type=int, default=20, help="simulated writers")
    parser.add_argument("--runs", type=int, default=200, help="simulated runs")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--procs", type=int, default=2, help="writer processes at a time")
    parser.add_argument("--shards", type=int, default=2, help="simulation's ingesters")
    parser.add_argument("--shard-points", type=int, default=2_000_000,
                        help="points of the sharded-ingest comparison")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of sections to skip: 1,2,3")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="runlake-bench-scaleout-"))
    server = _moto()().start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        if "1" not in skip:
            runs = 100
            bench_shards(work, server, runs, max(1, args.shard_points // (runs * 10)), 10)
        if "2" not in skip:
            lake = simulate(server, args.points, args.writers, args.runs, args.keys,
                            args.procs, args.shards, work / "spool")
            if "3" not in skip:
                engines(lake, args.repeat)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
