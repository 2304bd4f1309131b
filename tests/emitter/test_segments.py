"""Flush, rotation and sealing of segment files."""

from __future__ import annotations

import time

import pytest

import runlake
from runlake.schemas.segments import OPEN_SUFFIX


def test_flush_makes_events_readable_from_the_open_segment(rl, root, quiet):
    """After flush() returns True, every event logged so far is in the .open segment."""
    run = runlake.init("p", root=root, flush_interval=60, **quiet)
    for i in range(100):
        run.log({"x": float(i)})
    assert run.flush() is True
    files = rl.segment_files(run.dir)
    assert len(files) == 1 and files[0].name.endswith(OPEN_SUFFIX)
    events, spans = rl.read_file_events(files[0])
    assert [e.values["x"] for e in rl.of_kind(events, "metrics")] == [float(i) for i in range(100)]
    assert all(s.status == "frame" for s in spans)
    run.finish()


def test_each_flush_appends_one_frame(rl, root, quiet):
    """Three flushes with data give three complete zstd frames (plus run_start's)."""
    run = runlake.init("p", root=root, flush_interval=60, **quiet)
    run.flush()
    for _ in range(3):
        run.log({"x": 1.0})
        run.flush()
    _, spans = rl.read_file_events(rl.segment_files(run.dir)[0])
    assert [s.status for s in spans] == ["frame"] * 4
    run.finish()


def test_interval_flush_happens_without_flush_call(rl, root, quiet):
    """The writer flushes on its own every flush_interval seconds."""
    run = runlake.init("p", root=root, flush_interval=0.05, **quiet)
    run.log({"x": 1.0})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if rl.of_kind(rl.read_run(run.dir), "metrics"):
            break
        time.sleep(0.02)
    assert rl.of_kind(rl.read_run(run.dir), "metrics")
    run.finish()


def test_rotation_by_size_seals_segments(rl, root, quiet):
    """Past rotate_bytes the segment is sealed (renamed) and a new one opened."""
    run = runlake.init("p", root=root, flush_interval=60, rotate_bytes=1, **quiet)
    for i in range(5):
        run.log({"x": float(i)})
        run.flush()
    names = [p.name for p in rl.segment_files(run.dir)]
    sealed = [n for n in names if not n.endswith(OPEN_SUFFIX)]
    assert len(sealed) >= 5
    assert sealed[0] == "000000.jsonl.zst"
    run.finish()
    names = [p.name for p in rl.segment_files(run.dir)]
    assert not any(n.endswith(OPEN_SUFFIX) for n in names)
    xs = [e.values["x"] for e in rl.of_kind(rl.read_run(run.dir), "metrics")]
    assert xs == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_rotation_by_age(rl, root, quiet):
    """A segment older than rotate_seconds is sealed at the next flush."""
    run = runlake.init("p", root=root, flush_interval=60, rotate_seconds=0.05, **quiet)
    run.flush()
    time.sleep(0.1)
    run.log({"x": 1.0})
    run.flush()
    sealed = [p for p in rl.segment_files(run.dir) if not p.name.endswith(OPEN_SUFFIX)]
    assert sealed
    run.finish()


@pytest.mark.parametrize("policy", ["flush", "rotate", "never"])
def test_fsync_policies_all_produce_readable_sealed_segments(rl, root, quiet, policy):
    """Every fsync policy writes the same events; finish() seals the last segment."""
    with runlake.init("p", root=root, fsync=policy, **quiet) as run:
        run.log({"x": 1.0})
    files = rl.segment_files(run.dir)
    assert len(files) == 1 and files[0].name == "000000.jsonl.zst"
    assert rl.kinds(rl.read_run(run.dir)) == ["run_start", "metrics", "run_end"]


def test_finish_is_idempotent_and_log_after_finish_raises(rl, root, quiet):
    """A second finish() writes nothing; logging to a finished run raises RunStateError."""
    run = runlake.init("p", root=root, **quiet)
    run.finish()
    run.finish("failed")
    with pytest.raises(runlake.RunStateError, match="finished"):
        run.log({"x": 1.0})
    with pytest.raises(runlake.RunStateError):
        run.log_data(["a"])
    ends = rl.of_kind(rl.read_run(run.dir), "run_end")
    assert len(ends) == 1 and ends[0].status == "finished"
    assert run.flush() is True
