"""End to end with the real emitter in subprocesses: round trip, live ingest, SIGKILL, ranks."""

from __future__ import annotations

import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlake.ingest import ingest

TRAIN = Path(__file__).with_name("_train.py")
pytestmark = pytest.mark.slow


def _value():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_train", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.value


def _spawn(root, name, steps, keys, sleep, run_id=None, env=None):
    args = [sys.executable, str(TRAIN), str(root), name, str(steps), str(keys), str(sleep)]
    if run_id:
        args.append(run_id)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))


def test_real_runs_round_trip_and_live_ingest_converges(seg_root, query, fingerprint, tmp_path):
    """Runs logged by the emitter come back bit-exact; ingesting while they write converges."""
    value = _value()
    procs = [_spawn(seg_root, f"run{i}", 3000, 10, 0.02 if i == 0 else 0) for i in range(3)]
    passes_with_rows = 0
    while any(p.poll() is None for p in procs):  # ingest repeatedly while they write
        passes_with_rows += ingest(seg_root).points > 0
        time.sleep(0.05)
    assert passes_with_rows >= 2
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    live = fingerprint(db)
    once = ingest(seg_root, tmp_path / "once.duckdb")
    assert not once.problems
    assert {t: v for t, v in fingerprint(tmp_path / "once.duckdb").items()
            if t not in ("ingest_ledger", "runs", "writers")} == {
        t: v for t, v in live.items() if t not in ("ingest_ledger", "runs", "writers")}
    rows = query(db, "SELECT r.name, m.step, m.key, m.value FROM metrics m JOIN runs r USING "
                     "(run_id) WHERE NOT starts_with(m.key, 'sys/')")
    assert len(rows) == 3 * 3000 * 10
    assert all(_same(v, value(name, step, int(key[1:]))) for name, step, key, v in rows)
    assert query(db, "SELECT count(*) FROM runs WHERE status = 'finished' AND last_step = 2999"
                     " AND total_steps = 3000") == [(3,)]
    assert ingest(seg_root).points == 0 and fingerprint(db) == live


def test_sigkilled_training_is_ingested_and_crashed(seg_root, query):
    """A training process killed with SIGKILL: all it flushed loads, and the run is crashed."""
    proc = _spawn(seg_root, "victim", 100_000, 3, 0.02)
    last = -1
    for line in proc.stdout:
        last = int(line.split()[1])
        if last >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = ingest(seg_root, stale_after=0.5)
    db = seg_root / "runlake.duckdb"
    steps = query(db, "SELECT count(DISTINCT step), min(step), max(step) FROM metrics "
                      "WHERE key = 'k0'")[0]
    assert steps[1] == 0 and steps[2] >= last and steps[0] == steps[2] + 1  # no gap
    time.sleep(0.6)
    report = ingest(seg_root, stale_after=0.5)
    assert list(report.runs.values()) == ["crashed"]
    assert query(db, "SELECT status FROM writers") == [("crashed",)]


def test_four_ranks_write_one_run(seg_root, query):
    """Four processes as ranks 0-3 of one run: every row with its rank, one run, finished."""
    procs = [_spawn(seg_root, "ddp", 500, 4, 0, run_id="shared-run",
                    env={"RANK": str(r), "WORLD_SIZE": "4", "LOCAL_RANK": str(r)})
             for r in range(4)]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.runs == {"shared-run": "finished"}
    assert query(db, "SELECT rank, count(*) FROM metrics WHERE NOT starts_with(key, 'sys/') "
                     "GROUP BY rank ORDER BY rank") == [(r, 2000) for r in range(4)]
    assert query(db, "SELECT count(*), count(DISTINCT rank) FROM writers") == [(4, 4)]
    assert query(db, "SELECT world_size, attempts FROM runs") == [(4, 1)]
