"""Run and writer status derived from run_start / heartbeat / run_end and silence."""

from __future__ import annotations

import time

import pytest

from runlake.ingest import ingest
from runlake.schemas import events as E


def _status(query, root):
    return query(root / "runlake.duckdb", "SELECT status FROM runs")[0][0]


@pytest.mark.parametrize("end", ["finished", "failed", "killed"])
def test_run_end_status_is_the_run_status(seg_root, make_writer, query, end):
    """A single writer's run_end status becomes the run's status, with exit reason and end time."""
    w = make_writer().start(heartbeat_s=1.0)
    w.metrics(1, {"a": 1.0}).end(end, exit_reason="why", traceback="tb" if end == "failed" else None)
    w.flush()
    ingest(seg_root)
    row = query(seg_root / "runlake.duckdb",
                "SELECT status, exit_reason, ended_at IS NOT NULL, traceback FROM runs")[0]
    assert row == (end, "why", True, "tb" if end == "failed" else None)


def test_silent_writer_is_crashed_then_alive_again(seg_root, make_writer, query):
    """No run_end and silence past 3 x heartbeat + 5 s -> crashed; new events -> running."""
    w = make_writer().start(heartbeat_s=1.0)
    w.ts = time.time_ns() - 60 * 10**9  # everything it wrote is a minute old
    w.pending.clear()
    w.start(heartbeat_s=1.0).metrics(1, {"a": 1.0}).flush()
    ingest(seg_root)
    assert _status(query, seg_root) == "crashed"
    w.ts = time.time_ns()
    w.add(E.Heartbeat, step=2, total_steps=10, eta_s=8.0, interval_s=1.0).flush()
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT status, last_step, total_steps, eta_s FROM runs") == [
        ("running", 2, 10, 8.0)]


def test_status_is_rechecked_without_new_bytes(seg_root, make_writer, query):
    """A running run turns crashed on a later pass even when nothing new was written."""
    make_writer().start().metrics(1, {"a": 1.0}).flush()
    assert ingest(seg_root, stale_after=1.0).runs == {"run-a": "running"}
    time.sleep(1.2)
    report = ingest(seg_root, stale_after=1.0)
    assert report.segments == 0 and report.runs == {"run-a": "crashed"}
    assert _status(query, seg_root) == "crashed"


@pytest.mark.parametrize(
    "ends, expected",
    [
        (["finished", "finished", "finished"], "finished"),
        (["finished", "failed", "finished"], "failed"),
        (["finished", None, "finished"], "running"),
        (["finished", "killed", "finished"], "killed"),
        (["failed", None, None], "failed"),
    ],
)
def test_status_across_ranks(seg_root, make_writer, query, ends, expected):
    """Several ranks of one run: any failed -> failed, all ended -> finished/killed, else running."""
    for rank, end in enumerate(ends):
        w = make_writer(rank=rank).start(world_size=len(ends))
        w.metrics(rank, {"a": float(rank)})
        if end:
            w.end(end)
        w.flush()
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert _status(query, seg_root) == expected
    assert query(db, "SELECT count(*), count(DISTINCT rank) FROM writers") == [(3, 3)]
    assert query(db, "SELECT world_size FROM runs") == [(3,)]


def test_resumed_run_is_running_again_and_counts_attempts(seg_root, make_writer, query):
    """A crashed attempt followed by a resume: running, attempts = 2; then finished."""
    old = make_writer(attempt=0)
    old.ts = time.time_ns() - 600 * 10**9
    old.start(name="r", heartbeat_s=1.0).metrics(1, {"a": 1.0}).flush()
    ingest(seg_root)
    assert _status(query, seg_root) == "crashed"
    new = make_writer(attempt=1).start(name="r", heartbeat_s=1.0)
    new.metrics(2, {"a": 2.0}).flush()
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT status, attempts, last_step FROM runs") == [("running", 2, 2)]
    new.end("finished").flush()
    ingest(seg_root)
    assert _status(query, seg_root) == "finished"


def test_dropped_counts_are_summed_over_writers(seg_root, make_writer, query):
    """runs.dropped is the sum of every writer's dropped counters from heartbeat/run_end."""
    for rank, dropped in enumerate(({"value": 2}, {"io": 3, "value": 1})):
        w = make_writer(rank=rank).start()
        w.end("finished", dropped=dropped).flush()
    ingest(seg_root)
    assert query(seg_root / "runlake.duckdb", "SELECT dropped FROM runs") == [(6,)]
