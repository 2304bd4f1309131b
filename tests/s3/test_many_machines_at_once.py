"""Issue 11 end to end, everything at once on a real moto S3 server: four training processes
upload to one bucket while two `runlake ingest --shard I/2 --watch` processes load it into
the bucket's lake and a reader keeps querying it. One trainer and one ingester are
SIGKILLed mid-way; the trainer's spool is pushed, the ingester restarted (it takes its dead
lease over). At the end the lake holds every point that reached the bucket exactly once,
and no reader ever saw a point twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import runlake
from runlake.schemas.events import Metrics
from runlake.schemas.objects import ObjectStore

from . import _emitter_util as e

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

STEPS = 1500


def _shard(env: dict[str, str], root: str, shard: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runlake.cli", "ingest", "-q", "--root", root, "--shard", shard,
         "--watch", "--interval", "0.3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lake_points(root: str) -> tuple[Counter, int]:
    """(run_id, key, step) -> rows in the lake now, and how many rows repeat one."""
    con = runlake.connect(root=root)
    try:
        rows = con.execute("SELECT run_id, key, step FROM metrics").fetchall()
    finally:
        con.close()
    seen = Counter(rows)
    return seen, sum(n - 1 for n in seen.values() if n > 1)


def _bucket_points(root: str) -> Counter:
    """(run_id, key, step) -> copies, decoded from the bucket's segment objects."""
    out: Counter = Counter()
    store = ObjectStore(root)
    for obj in (o for top in store.folders() if top != "runlake-lake" for o in store.list(top + "/")):
        run_id = obj.rel.split("/")[1]
        for ev in e.decode(store.get(obj.rel), sealed=True):
            if isinstance(ev, Metrics):
                for key in ev.values:
                    out[(run_id, key, ev.step)] += 1
    return out


def test_trainers_shards_and_readers_at_once_with_kills(s3_env, s3_root, tmp_path):
    env = {**e.child_env(s3_env, tmp_path / "unused"), "RUNLAKE_SHARD_LEASE_S": "2"}
    # four trainers, each its own run and spool; run-3 is killed part-way
    trainers = {}
    for i in range(4):
        cfg = {"root": s3_root, "run_id": f"run-{i}", "points": -1 if i == 3 else STEPS,
               "flush_every": 250, "pause": 0.05}
        spool = tmp_path / f"spool-{i}"
        trainers[i] = (e.start(cfg, {**env, "RUNLAKE_SPOOL": str(spool)}), spool)
    shards = {1: _shard(env, s3_root, "1/2"), 2: _shard(env, s3_root, "2/2")}

    dupes: list[int] = []
    stop = threading.Event()

    def reader() -> None:  # a laptop polling the lake while everything runs (lake or not)
        while not stop.is_set():
            try:
                dupes.append(_lake_points(s3_root)[1])
            except runlake.StoreError:
                pass  # no lake yet
            time.sleep(0.5)

    polling = threading.Thread(target=reader, daemon=True)
    polling.start()
    try:
        victim, victim_spool = trainers[3]
        flushed = 0
        while flushed < 4:  # a few flushes reached the spool, then SIGKILL
            line = victim.stdout.readline()
            assert line, victim.stderr.read()[-2000:]
            flushed += line.startswith("flushed")
        victim.kill()
        victim.wait(30)
        time.sleep(3)  # let shard 1 get into its passes
        shards[1].kill()
        shards[1].wait(30)
        shards[1] = _shard(env, s3_root, "1/2")  # waits out the dead lease (2 s), goes on
        for i in range(3):
            e.finish(trainers[i][0], timeout=180)
        pushed = subprocess.run([sys.executable, "-m", "runlake.cli", "push", "--spool",
                                 str(victim_spool), "--root", s3_root],
                                env=env, capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0, pushed.stderr[-2000:]

        want = _bucket_points(s3_root)
        assert set(want.values()) == {1}, "the bucket holds each point once"
        assert {r for r, _, _ in want} == {f"run-{i}" for i in range(4)}
        for i in range(3):
            assert sum(1 for r, _, _ in want if r == f"run-{i}") == STEPS * 2
        deadline = time.monotonic() + 180
        for n, proc in shards.items():
            assert proc.poll() is None, f"shard {n}/2 ended: {proc.communicate()[1][-3000:]}"
        got: Counter = Counter()
        while time.monotonic() < deadline:
            try:
                got, repeated = _lake_points(s3_root)
            except runlake.StoreError:
                repeated = 0  # the shards have not made the lake yet
            assert repeated == 0
            if got == want:
                break
            time.sleep(1)
        assert got == want, (len(got), len(want), len(set(want) - set(got)))
    finally:
        stop.set()
        polling.join(30)
        for proc in shards.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in shards.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc, _ in trainers.values():
            if proc.poll() is None:
                proc.kill()
    assert dupes and max(dupes) == 0, "a reader saw a point twice"
    owners = runlake.connect(root=s3_root).execute(
        "SELECT count(DISTINCT run_id) FROM runs").fetchone()[0]
    assert owners == 4
