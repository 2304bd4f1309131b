"""A killed writer's own row in `writers` follows the same liveness rule as its run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runlake.ingest import ingest

JOB = Path(__file__).with_name("_liveness_job.py")


def _job(root, run_id, mode, **kw):
    env = {k: v for k, v in os.environ.items() if k != "RUNLAKE_RUN_ID"}
    return subprocess.Popen([sys.executable, str(JOB), str(root), run_id, mode], env=env,
                            stdout=subprocess.PIPE, text=True, **kw)


def test_sigkilled_then_resumed_writer_is_crashed_not_running(seg_root, query):
    """SIGKILL, ingest, resume to the end, ingest: the killed writer is crashed, the run finished."""
    run_id = "20261201-000000-live01"
    proc = _job(seg_root, run_id, "crash")
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    proc.stdout.close()
    ingest(seg_root)  # within its 60 s heartbeat window: the killed writer still looks alive
    resumed = _job(seg_root, run_id, "resume")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0 and out.strip() == "1"
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT attempt, status FROM writers ORDER BY attempt") == [
        (0, "crashed"), (1, "finished")]
    assert query(db, "SELECT status, attempts FROM runs") == [("finished", 2)]
    ingest(seg_root)
    assert query(db, "SELECT attempt, status FROM writers ORDER BY attempt") == [
        (0, "crashed"), (1, "finished")]


def test_writer_still_running_after_its_run_ended_is_rechecked(seg_root, make_writer, query):
    """An old attempt still writing when the new one finished is re-judged by later passes."""
    now = time.time_ns()
    new = make_writer(attempt=1)
    new.ts = now - 40 * 10**9
    new.start(name="r", heartbeat_s=1.0).metrics(5, {"a": 1.0}).end("finished").flush()
    old = make_writer(attempt=0)
    old.ts = now - 30 * 10**9  # its last events come after the new attempt started
    old.start(name="r", heartbeat_s=1.0).metrics(4, {"a": 2.0}).flush()
    ingest(seg_root, stale_after=1000.0)
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT attempt, status FROM writers ORDER BY attempt") == [
        (0, "running"), (1, "finished")]
    assert query(db, "SELECT status FROM runs") == [("finished",)]
    report = ingest(seg_root, stale_after=10.0)  # no new bytes: 30 s of silence > 10 s
    assert report.segments == 0
    assert query(db, "SELECT attempt, status FROM writers ORDER BY attempt") == [
        (0, "crashed"), (1, "finished")]
    assert query(db, "SELECT status FROM runs") == [("finished",)]
