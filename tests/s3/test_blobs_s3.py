"""Media blobs with an s3:// root: uploaded from the spool before any segment naming them,
by the live uploader and by `runlake push` after a SIGKILL; ingest of the bucket loads
their rows, and every ``media.blob`` key holds the blob's bytes."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap

import pytest

from runlake.emitter.spool import push
from runlake.ingest import ingest
from runlake.schemas.blobs import BLOBS_DIR
from runlake.schemas.objects import ObjectStore
from runlake.store import read_store

from ._emitter_util import child_env, decode

CHILD = """
import sys, numpy as np, runlake
run = runlake.init(project="p", name="n", root=sys.argv[1], console=False, system_interval=0)
for i in range(6):
    run.log({"loss": 1.0 / (i + 1)})
    run.log_media("img", np.full((4, 4), i * 40, np.uint8), caption=f"step {i}")
    run.log_media("clip", np.sin(np.arange(400) * (i + 1) / 20), sample_rate=8000)
    run.flush()
print("flushed", flush=True)
sys.stdin.read()  # wait for the SIGKILL
"""


def _media_order(store: ObjectStore) -> tuple[list[str], list[tuple[str, str]]]:
    """The blob keys in the bucket, and (segment key, blob sha) for every media event."""
    blobs, refs = [], []
    for obj in store.list():
        if f"/{BLOBS_DIR}/" in obj.rel:
            data = store.get(obj.rel)
            assert hashlib.sha256(data).hexdigest() == obj.rel.rsplit("/", 1)[1]
            blobs.append(obj.rel)
        else:
            refs += [(obj.rel, ev.sha256) for ev in decode(store.get(obj.rel), sealed=True)
                     if ev.__struct_config__.tag == "media"]
    return blobs, refs


def _emit(run, n=6):
    import numpy as np

    for i in range(n):
        run.log({"loss": 1.0 / (i + 1)})
        run.log_media("img", np.full((4, 4), i * 40, np.uint8), caption=f"step {i}")
        run.log_media("clip", np.sin(np.arange(400) * (i + 1) / 20), sample_rate=8000)
        run.flush()


def _check_order(puts: list[str], store: ObjectStore) -> int:
    """Every segment put comes after the puts of the blobs its media events name."""
    segments = 0
    for i, key in enumerate(puts):
        if key.endswith(".jsonl.zst"):
            segments += 1
            named = {ev.sha256 for ev in decode(store.get(key), sealed=True)
                     if ev.__struct_config__.tag == "media"}
            before = {k.rsplit("/", 1)[1] for k in puts[:i] if f"/{BLOBS_DIR}/" in k}
            assert named <= before, f"{key} was put before its blobs {named - before}"
    return segments


@pytest.mark.slow
def test_blobs_reach_the_bucket_before_their_segments_and_ingest_reads_them(
        s3_env, s3_root, tmp_path, monkeypatch):
    """Live uploader and `push` after a SIGKILL: every put of a segment comes after the puts
    of the blobs it names (a spy on ObjectStore.put_new; the requests still go to the moto
    server). Ingest of the bucket: a media row per event, its blob key holding the right
    bytes, no problem reported; the spool drained."""
    import runlake

    puts: list[str] = []
    real_put = ObjectStore.put_new

    def spy(self, rel, data):
        puts.append(rel)
        return real_put(self, rel, data)

    monkeypatch.setattr(ObjectStore, "put_new", spy)
    spool = tmp_path / "spool"
    env = child_env(s3_env, spool)
    for name in ("RUNLAKE_SPOOL", "RUNLAKE_UPLOAD_INTERVAL"):
        monkeypatch.setenv(name, env[name])
    live = f"{s3_root}/live"
    run = runlake.init(project="p", name="n", root=live, console=False, system_interval=0)
    _emit(run)
    run.finish()
    store = ObjectStore(live)
    blobs, refs = _media_order(store)
    assert len(refs) == 12 and {sha for _, sha in refs} == {b.rsplit("/", 1)[1] for b in blobs}
    assert _check_order(puts, store) >= 1

    assert not [p for p in spool.rglob("*") if not p.name.startswith(".")]  # drained
    killed, spool2 = f"{s3_root}/killed", tmp_path / "spool2"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), killed],
                            env={**env, "RUNLAKE_UPLOAD_INTERVAL": "3600",
                                 "RUNLAKE_SPOOL": str(spool2)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "flushed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    assert len(list(spool2.rglob(f"{BLOBS_DIR}/*/*"))) == 12
    puts.clear()
    report = push(spool2, killed)
    assert report.blobs == 12 and not report.left
    assert not [p for p in spool2.rglob("*") if not p.name.startswith(".")]
    k_blobs, k_refs = _media_order(ObjectStore(killed))
    assert len(k_refs) == 12 and len(k_blobs) == 12
    assert _check_order(puts, ObjectStore(killed)) >= 1

    monkeypatch.setattr(ObjectStore, "put_new", real_put)
    for url in (live, killed):
        db = tmp_path / f"{url.rsplit('/', 1)[1]}.duckdb"
        result = ingest(root=url, db=db)
        assert result.problems == []
        with read_store(db) as con:
            rows = con.execute("SELECT sha256, blob FROM media").fetchall()
        assert len(rows) == 12
        bucket = ObjectStore(url)
        for sha, blob in rows:
            assert hashlib.sha256(bucket.get(blob)).hexdigest() == sha
