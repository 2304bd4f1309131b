"""Ingest when the store's disk is full: one clear error line, nothing half-loaded, and
the next pass (with room again) loads everything exactly once."""

from __future__ import annotations

import random
import resource
import signal
import subprocess
import sys


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child, before exec: writes past `limit` fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


def test_store_write_failing_for_lack_of_room_is_reported_and_retried(seg_root, make_writer, query):
    rng = random.Random(0)
    for r in range(3):
        w = make_writer(f"run-{r}").start()
        for step in range(5_000):
            w.metrics(step, {f"k{k}": rng.random() for k in range(10)})
            if step % 1000 == 999:
                w.flush()
        w.end().flush()
        w.seal()
    cmd = [sys.executable, "-m", "runlake.cli", "ingest", "--root", str(seg_root)]
    full = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size(256 << 10))
    assert full.returncode == 2, full.stdout + full.stderr
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("runlake ingest: error: cannot write the store"), full.stderr
    assert "File too large" in lines[0] and "run ingest again" in lines[0]
    assert "Traceback" not in full.stderr

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT count(*), count(DISTINCT (run_id, step, key)) FROM metrics") == [
        (150_000, 150_000)]
    assert query(db, "SELECT count(*) FROM quarantine") == [(0,)]
