"""Shared by the sharded-ingest tests: segments from real emitter processes, shard
ingesters as real subprocesses (the CLI, or a pass with small chunks and kill points)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runlake.ingest.shard import shard_of

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "tests" / "ingest" / "_train.py"
PYTHON = sys.executable

# run id -> ranks; chosen so that each of 2 shards owns runs, one with two writers
RUNS = {"alpha": 2, "beta": 1, "gamma": 1, "delta": 1}


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("RUNLAKE_LAKE_KILL_AT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "RUNLAKE_STORE"):
        out.pop(name, None)
    out.update(extra)
    return out


def write_with_emitters(root: Path, steps: int = 400, keys: int = 4) -> None:
    """Every run of :data:`RUNS` logged by real training processes, all at once; each
    flushes every 50 steps (a frame of at most 50 x ``keys`` points), so a pass with
    chunks of 300 points commits at least ``steps / 100`` chunks per rank, on any machine."""
    assert {shard_of(r, 2) for r in RUNS} == {1, 2}, "both shards must own runs"
    procs = []
    for run_id, ranks in RUNS.items():
        for rank in range(ranks):
            extra = {"RANK": str(rank), "WORLD_SIZE": str(ranks)} if ranks > 1 else {}
            procs.append(subprocess.Popen(
                [PYTHON, str(TRAIN), str(root), run_id, str(steps), str(keys), "0.01", run_id],
                env=env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True))
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]


def cli(root: Path, *args: str, timeout: float = 120.0, **extra: str
        ) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "runlake.cli", "ingest", "--root", str(root), "-q",
                           *args], env=env(**extra), capture_output=True, text=True,
                          timeout=timeout)


_PASS = """
import sys
from pathlib import Path
from runlake.ingest.loader import run_pass
from runlake.ingest.shard import parse_shard, sharded_backend
root, shard = Path(sys.argv[1]), parse_shard(sys.argv[2])
if sys.argv[5] != "-":  # compaction due after fewer small files (these tests' few chunks)
    import runlake.store._lake_compact as compact
    compact.DUE_FILES = int(sys.argv[5])
with sharded_backend(root, None, shard, wait_s=float(sys.argv[4])) as backend:
    print("held", flush=True)
    run_pass(root, backend, chunk_points=int(sys.argv[3]), owns=shard.owns)
"""


def shard_pass(root: Path, shard: str, *, kill_at: str | None = None, chunk_points: int = 300,
               wait_s: float = 30.0, due_files: int | None = None) -> subprocess.Popen:
    """One pass of ``shard`` in a child process (small chunks), SIGKILLed at ``kill_at``;
    ``due_files``: compaction is due after that many small files of the shard."""
    extra = {"RUNLAKE_LAKE_KILL_AT": kill_at} if kill_at else {}
    return subprocess.Popen([PYTHON, "-c", _PASS, str(root), shard, str(chunk_points),
                             str(wait_s), "-" if due_files is None else str(due_files)],
                            env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


_HOLD = """
import sys, time
from runlake.store._lake_shards import ShardLease
with ShardLease(sys.argv[1], sys.argv[2], wait_s=0):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_shard(lake: Path, app: str) -> subprocess.Popen:
    """A process holding shard ``app``'s lease of ``lake`` until killed (prints 'held')."""
    proc = subprocess.Popen([PYTHON, "-c", _HOLD, str(lake), app], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "held", proc.stderr.read()[-2000:] if proc.poll() is not None else line
    return proc
