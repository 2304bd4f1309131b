"""Resume after SIGKILL: the same run continues as a new attempt; flushed steps exactly once."""

from __future__ import annotations

import signal

import pytest


@pytest.mark.slow
def test_sigkilled_run_resumes_without_losing_or_duplicating_flushed_steps(tmp_path, script, store_rows):
    """After a crash and a resume: one run, 2 attempts, steps 0..22 each once, checkpoint reloaded."""
    root = tmp_path / "root"
    run_id = "resume-test-001"
    crash = script("_resume_job.py", str(root), run_id, "crash")
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-2000:]
    # ingest while the run is dead and unfinished: it is visible, not finished
    assert store_rows(root, "SELECT status != 'finished', last_step FROM runs") == [(True, 12)]
    resumed = script("_resume_job.py", str(root), run_id, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.split() == ["13", "1"]  # first step of the new attempt, attempt number
    assert store_rows(root, "SELECT run_id, name, status, attempts, config->>'lr' FROM runs") == [
        (run_id, "resumable", "finished", 2, "0.1")]
    steps = store_rows(root, "SELECT step, count(*) FROM metrics WHERE key = 'loss' GROUP BY step ORDER BY step")
    assert steps == [(s, 1) for s in range(23)]
    by_attempt = store_rows(root, "SELECT w.attempt, min(m.step), max(m.step) FROM metrics m "
                                  "JOIN writers w ON m.run_id = w.run_id AND m.rank = w.rank "
                                  "AND m.ts BETWEEN w.started_at AND coalesce(w.ended_at, w.last_seen_at) "
                                  "WHERE m.key = 'loss' GROUP BY w.attempt ORDER BY w.attempt")
    assert by_attempt == [(0, 0, 12), (1, 13, 22)]
    assert store_rows(root, "SELECT step, 'latest' = ANY(tags) FROM checkpoints") == [(12, True)]
