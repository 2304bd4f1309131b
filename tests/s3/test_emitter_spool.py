"""The spool of an s3:// root in one process: settings checked at init, sealing on time
while training idles, leftovers sealed whole, ownership by lock, push's own errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import runlake
from runlake.cli import main as cli
from runlake.emitter.spool import LOCK_NAME, WriterLock, push, seal_leftover
from runlake.schemas.errors import ConfigError, RootError
from runlake.schemas.objects import ObjectStore
from runlake.schemas.segments import frame_compressor, iter_frame_spans

from ._emitter_util import bucket_events, points

QUIET = dict(system_interval=0, console=False, capture_logging=False)


@pytest.mark.parametrize("env, root, error, words", [
    ({"RUNLAKE_UPLOAD_INTERVAL": "soon"}, "s3://b/p", ConfigError, "RUNLAKE_UPLOAD_INTERVAL"),
    ({"RUNLAKE_SPOOL_MAX_BYTES": "-1"}, "s3://b/p", ConfigError, "RUNLAKE_SPOOL_MAX_BYTES"),
    ({}, "s3:///p", RootError, "no bucket name"),
    ({}, "s3://b/a/../c", RootError, "'..'"),
    ({}, Path("s3://b/p"), RootError, "a Path cannot hold a URL"),
])
def test_bad_settings_fail_at_init_with_one_line(monkeypatch, tmp_path, env, root, error, words):
    """A malformed URL or setting is a clear error from init(), before training starts."""
    monkeypatch.setenv("RUNLAKE_SPOOL", str(tmp_path / "spool"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(error, match=words) as info:
        runlake.init("p", root=root, **QUIET)
    assert "\n" not in str(info.value)


def test_resume_is_refused_with_an_object_storage_root(monkeypatch, tmp_path):
    """Resume reads the root's segments back at init (the network, on the training
    thread): it needs a local root, and says so."""
    monkeypatch.setenv("RUNLAKE_SPOOL", str(tmp_path / "spool"))
    with pytest.raises(ConfigError, match="resume= needs a local root"):
        runlake.init("p", root="s3://b/p", resume=True, **QUIET)


def test_a_spool_belongs_to_one_url(s3_env, s3_root, monkeypatch, tmp_path):
    """Two buckets sharing one RUNLAKE_SPOOL would mix their segments: the second is refused."""
    monkeypatch.setenv("RUNLAKE_SPOOL", str(tmp_path / "spool"))
    runlake.init("p", root=s3_root, **QUIET).finish()
    with pytest.raises(RootError, match="holds segments for"):
        runlake.init("p", root="s3://another-bucket/p", **QUIET)


def test_runlake_dir_url_selects_the_spool_and_idle_segments_are_sealed_on_time(
        s3_env, s3_root, monkeypatch, tmp_path):
    """RUNLAKE_DIR=s3://... spools under RUNLAKE_SPOOL; a point logged and then nothing
    else (no heartbeat due) is sealed and uploaded after upload_interval, not at finish."""
    spool = tmp_path / "spool"
    monkeypatch.setenv("RUNLAKE_DIR", s3_root)
    monkeypatch.setenv("RUNLAKE_SPOOL", str(spool))
    monkeypatch.setenv("RUNLAKE_UPLOAD_INTERVAL", "0.2")
    run = runlake.init("p", heartbeat_interval=3600, flush_interval=0.05, **QUIET)
    assert run.root == spool and (run.dir / run.writer / LOCK_NAME).is_file()
    store = ObjectStore(s3_root)

    def objects(n: int) -> list:
        deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
        while len(found := list(store.list())) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    assert len(objects(1)) == 1  # run_start, sealed by time alone
    run.log({"loss": 1.0})  # into a fresh segment: nothing else will be written to it
    assert len(objects(2)) == 2
    got = points(bucket_events(s3_root))
    run.finish()
    assert got == {(run.writer, 0): 1}
    assert not (run.dir / run.writer).exists()  # drained: the writer folder is gone


def _frames(*chunks: bytes) -> bytes:
    cctx = frame_compressor()
    return b"".join(cctx.compress(c) for c in chunks)


def test_seal_leftover_keeps_whole_frames_and_cuts_the_torn_tail(tmp_path):
    """A dead writer's .open segment: whole frames kept, the torn last frame cut, sealed."""
    whole = _frames(b'{"a":1}\n', b'{"a":2}\n')
    torn = _frames(b'{"a":3}\n' * 50)[:-7]
    leftover = tmp_path / "000004.jsonl.zst.open"
    leftover.write_bytes(whole + torn)
    sealed, cut = seal_leftover(leftover)
    assert sealed == tmp_path / "000004.jsonl.zst" and cut == len(torn)
    assert sealed.read_bytes() == whole and not leftover.exists()
    assert [s.status for s in iter_frame_spans(whole, sealed=True)] == ["frame", "frame"]
    only_torn = tmp_path / "000005.jsonl.zst.open"
    only_torn.write_bytes(torn)
    assert seal_leftover(only_torn) == (None, len(torn)) and not only_torn.exists()


def test_a_locked_writer_folder_is_live_and_skipped(s3_env, s3_root, tmp_path):
    """push never touches a folder whose lock a live process holds (here another process:
    the lock is an flock, so even this process's second open cannot take it)."""
    writer = tmp_path / "spool" / "p" / "run1" / "r0000-a000-0123abcd"
    held = WriterLock.take(writer)
    (writer / "000000.jsonl.zst.open").write_bytes(_frames(b'{"a":1}\n'))
    try:
        report = push(tmp_path / "spool", s3_root, store=ObjectStore(s3_root))
        assert len(report.live) == 1 and "pid " in report.live[0]
        assert (writer / "000000.jsonl.zst.open").exists()
    finally:
        held.release(remove=False)
    report = push(tmp_path / "spool", s3_root)
    assert report.sealed == 1 and report.uploaded == 1 and not writer.exists()


def test_push_without_a_destination_is_a_one_line_error(tmp_path, capsys):
    """A spool that records no URL, pushed without --root: exit 2, one line naming it."""
    (tmp_path / "spool").mkdir()
    assert cli(["push", "--spool", str(tmp_path / "spool")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--root s3://" in err
    assert cli(["push", "--spool", str(tmp_path / "spool"), "--root", "/local/dir"]) == 2
    assert "not an object-storage URL" in capsys.readouterr().err


def test_importing_the_emitter_does_not_import_boto3():
    """Keep the emitter light: boto3 only on an s3 root's uploader thread."""
    code = "import runlake, sys; runlake.init; assert 'boto3' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
