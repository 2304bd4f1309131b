"""Sharded ingest on object storage (a real moto S3 server): the shard lease object (busy
holder named, taken over once its holder is SIGKILLed, a holder paused past the TTL is
fenced off), and two shard processes ingesting an s3:// root into its s3:// lake at once,
one of them SIGKILLed mid-commit and restarted: every row once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlake.schemas.errors import StoreBusyError
from runlake.store._lake_shards import ShardLease

from . import _ingest_util as s
from ._ingest_util import u

_TTL = "1.5"

_HOLD = """
import sys, time
from runlake.schemas.errors import StoreError
from runlake.store._lake_shards import ShardLease
with ShardLease(sys.argv[1], "shard-1-of-2", wait_s=0) as lease:
    print("held", flush=True)
    while True:
        try:
            lease.check()
        except StoreError as exc:
            print("lost:", exc, flush=True)
            break
        time.sleep(0.05)
"""


@pytest.fixture
def short_lease(s3_env, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("RUNLAKE_SHARD_LEASE_S", _TTL)
    return {**s3_env, "RUNLAKE_SHARD_LEASE_S": _TTL}


def _holder(lake: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, lake],
                            env={**os.environ, **env, "PYTHONPATH": str(u.REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "held", proc.stderr.read()[-2000:]
    return proc


def test_s3_lease_names_its_holder_and_dies_with_it(s3_root, short_lease):
    """A second claimant gives up after its wait naming the holder's host and pid; once
    the holder is SIGKILLed (no renewals), its lease is taken over."""
    lake = f"{s3_root}/runlake-lake"
    holder = _holder(lake, short_lease)
    try:
        with pytest.raises(StoreBusyError) as err:
            with ShardLease(lake, "shard-1-of-2", wait_s=0.5):
                pass
        assert f"pid {holder.pid}" in str(err.value) and socket.gethostname() in str(err.value)
        assert "\n" not in str(err.value)
        with ShardLease(lake, "shard-2-of-2", wait_s=0):  # another shard: free
            pass
    finally:
        holder.kill()
        holder.wait()
    with ShardLease(lake, "shard-1-of-2", wait_s=20) as lease:
        lease.check()  # held, and valid


def test_s3_lease_released_is_free_at_once(s3_root, short_lease):
    lake = f"{s3_root}/runlake-lake"
    with ShardLease(lake, "shard-1-of-2", ttl_s=60):
        pass
    started = time.monotonic()
    with ShardLease(lake, "shard-1-of-2", ttl_s=60, wait_s=0):
        assert time.monotonic() - started < 30  # not a TTL's wait: the release expired it


def test_s3_holder_paused_past_the_ttl_is_fenced_off(s3_root, short_lease):
    """A holder stopped (SIGSTOP) for longer than the TTL loses the lease to a new holder,
    and once it runs again its check refuses every further write."""
    lake = f"{s3_root}/runlake-lake"
    holder = _holder(lake, short_lease)
    try:
        os.kill(holder.pid, signal.SIGSTOP)
        with ShardLease(lake, "shard-1-of-2", wait_s=30) as lease:
            os.kill(holder.pid, signal.SIGCONT)
            line = holder.stdout.readline()
            assert line.startswith("lost:") and "shard-1-of-2" in line, line
            lease.check()  # the new holder's lease stays valid
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("segments")
    u.write_segments(root, runs=6, steps=300)
    ref = tmp_path_factory.mktemp("ref")
    shutil.copytree(root, ref / "root")
    u.ingest_duck(ref / "root", ref / "ref.duckdb")
    return root, u.duck_rows(ref / "ref.duckdb")


def _shard(env, root: str, shard: str, kill_at: str | None = None) -> subprocess.Popen:
    full = {**os.environ, **env, "PYTHONPATH": str(u.REPO)}
    full.pop("RUNLAKE_LAKE_KILL_AT", None)
    if kill_at:
        full["RUNLAKE_LAKE_KILL_AT"] = kill_at
    return subprocess.Popen([*s.RUNLAKE, "ingest", "-q", "--root", root, "--shard", shard],
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_shards_into_an_s3_lake_with_a_kill(template, s3_root, short_lease, capsys):
    """Two `runlake ingest --shard I/2 --root s3://...` at once, shard 1 SIGKILLed just
    before its first `_commits` append, then shard 1 again (it takes its dead lease
    over): the s3 lake holds exactly what a DuckDB-file ingest of the segments holds."""
    s.upload(template[0], s3_root)
    victim = _shard(short_lease, s3_root, "1/2", kill_at="before:_commits@1")
    other = _shard(short_lease, s3_root, "2/2")
    err = victim.communicate(timeout=180)[1]
    assert victim.returncode == -signal.SIGKILL, err[-2000:]
    err = other.communicate(timeout=180)[1]
    assert other.returncode == 0, err[-2000:]
    lake = f"{s3_root}/runlake-lake"
    seen = s.lake_rows(lake, s.EVENT_TABLES)
    for table in s.EVENT_TABLES:
        assert not seen[table] - template[1][table], table
    again = _shard(short_lease, s3_root, "1/2")  # shard 2 finished: nothing left for it
    err = again.communicate(timeout=180)[1]
    assert again.returncode == 0, err[-2000:]
    assert s.lake_rows(lake) == template[1]
    from runlake.cli import main

    assert main(["ingest", "-q", "--root", s3_root, "--shard", "1/3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and lake in err and "2 shards" in err, err
