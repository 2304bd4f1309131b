"""Emitters writing to an s3:// root (a real moto server, real training subprocesses):
sealed immutable objects at the documented keys, SIGKILL + ``runlake push``, the spool bound."""

from __future__ import annotations

import os
import re
import signal
import uuid

import pytest

from runlake.cli import main as cli
from runlake.emitter.spool import push

from ._server import free_port
from ._emitter_util import (
    bucket_events, child_env, finish, points, run_ends, spool_events, start,
)

N = 3000


@pytest.mark.slow
def test_several_emitters_write_sealed_immutable_segments_at_the_documented_keys(
        s3_server, s3_env, s3_bucket, s3_root, tmp_path):
    """Three ranks of one run upload concurrently: every object is a sealed segment at
    <prefix>/<project>/<run>/<writer>/<seq>.jsonl.zst, written once (one version in a
    versioned bucket), every point exactly once, and the spools end empty."""
    s3 = s3_server.client()
    s3.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    procs = [start({"root": s3_root, "run_id": "shared-run", "points": N, "flush_every": 500},
                   child_env(s3_env, tmp_path / f"spool{r}", RANK=str(r), WORLD_SIZE="3"))
             for r in range(3)]
    results = [finish(p)[0] for p in procs]
    assert all(r["dropped"] == {} for r in results)

    versions = s3.list_object_versions(Bucket=s3_bucket)["Versions"]
    keys = [v["Key"] for v in versions]
    assert len(keys) == len(set(keys)), "an object was written twice"
    writers = {r["writer"] for r in results}
    pattern = re.compile(r"runs/p/shared-run/(r000[0-2]-a000-[0-9a-f]{8})/\d{6}\.jsonl\.zst")
    assert all(pattern.fullmatch(k) for k in keys), keys
    assert {pattern.fullmatch(k).group(1) for k in keys} == writers
    assert len(keys) > 3  # sealed every upload interval, not once at the end

    events = bucket_events(s3_root)  # decode() asserts each object holds whole frames only
    assert points(events) == {(w, s): 1 for w in writers for s in range(N)}
    assert sorted(e.status for e in run_ends(events)) == ["finished"] * 3
    for r in range(3):  # drained: only the spool's marker is left
        assert [p.name for p in (tmp_path / f"spool{r}").rglob("*")] == [".runlake-spool.json"]


def test_sigkill_then_push_uploads_every_point_that_reached_the_spool(
        s3_env, s3_root, tmp_path, capsys):
    """A writer SIGKILLed mid-run: `runlake push` skips it while it lives, then seals its
    leftovers and uploads them; the bucket then holds every point the spool had, each
    once, including every point flushed before the kill."""
    spool = tmp_path / "spool"
    proc = start({"root": s3_root, "points": -1, "flush_every": 200, "pause": 0.02},
                 child_env(s3_env, spool, RUNLAKE_UPLOAD_INTERVAL="1"))
    last = -1
    for line in proc.stdout:
        last = int(line.split()[1])
        if last >= 1999:
            break
    report = push(spool)
    assert len(report.live) == 1 and report.uploaded == 0  # a live writer is never touched
    assert int(proc.stdout.readline().split()[1]) > last  # and it kept writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()

    before = {**bucket_events(s3_root), **spool_events(spool)}
    assert any(p.name.endswith(".open") for p in spool.rglob("*")) or spool_events(spool)
    assert cli(["push", "--spool", str(spool), "--root", s3_root]) == 0
    assert "uploaded" in capsys.readouterr().out
    after = points(bucket_events(s3_root))
    assert after == points(before)
    assert set(after.values()) == {1}
    writer = next(iter(after))[0]
    assert all((writer, s) in after for s in range(last + 1))
    assert not list(spool.rglob("*.jsonl.zst*"))


def test_spool_bound_drops_are_counted_and_reported(s3_server, s3_env, s3_root, tmp_path):
    """Endpoint unreachable and the spool past RUNLAKE_SPOOL_MAX_BYTES: flushes are
    dropped and counted (run.dropped, run_end), heartbeats and run_end still get through,
    training finishes; after `push` the bucket holds exactly the points not dropped."""
    spool = tmp_path / "spool"
    dead = child_env(s3_env, spool, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                     RUNLAKE_SPOOL_MAX_BYTES="20000", RUNLAKE_UPLOAD_WAIT="0.5",
                     RUNLAKE_CAPTURE_CONSOLE="0")  # drops counted per event: only points here
    result, err = finish(start({"root": s3_root, "points": 40_000, "flush_every": 500}, dead))
    dropped = result["dropped"].get("spool_full", 0)
    assert 0 < dropped < 40_000 and set(result["dropped"]) == {"spool_full"}
    assert "RUNLAKE_SPOOL_MAX_BYTES" in err and "runlake push --spool" in err

    report = push(spool, s3_root)
    assert report.uploaded and not report.left
    events = bucket_events(s3_root)
    assert sum(points(events).values()) + dropped == 40_000
    (end,) = run_ends(events)
    assert end.status == "finished" and end.dropped.get("spool_full", 0) > 0


def test_missing_bucket_warns_once_and_training_goes_on(s3_server, s3_env, tmp_path):
    """A bucket that does not exist: one warning line naming it, training and finish()
    complete, the segments wait in the spool; once the bucket exists, push uploads all."""
    spool = tmp_path / "spool"
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    root = f"s3://{bucket}/runs"
    go = tmp_path / "go"
    proc = start({"root": root, "points": N, "flush_every": 1000, "wait_for": str(go)},
                 child_env(s3_env, spool, RUNLAKE_UPLOAD_WAIT="1"))
    first = proc.stderr.readline()  # training goes on meanwhile: the child waits for `go`
    go.touch()
    result, err = finish(proc)
    assert result["dropped"] == {}
    assert "RunlakeWarning" in first and f"bucket '{bucket}' does not exist" in first
    problems = [line for line in (first + err).splitlines() if "RunlakeWarning" in line]
    assert len([p for p in problems if "cannot upload" in p]) == 1  # once, not per retry
    assert any(f"runlake push --spool {spool} --root {root}" in p for p in problems)

    s3_server.new_bucket(bucket)
    push(spool)  # the spool knows its destination
    assert sum(points(bucket_events(root)).values()) == N
    assert os.listdir(spool) == [".runlake-spool.json"]
