"""`runlake demo` as a user runs it: in an empty folder, on the default store ./runlake-data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from runlake.demo import RESUMED, SWEEP  # noqa: E402
from runlake.store import read_store  # noqa: E402


@pytest.mark.slow
def test_demo_trains_crashes_resumes_and_flags_only_the_unstable_run(tmp_path):
    """The demo's five runs land in ./runlake-data/runlake.duckdb; the killed run is resumed as a
    second attempt; only the unstable run has warning or critical findings."""
    runlake_cli = Path(sys.executable).with_name("runlake")
    done = subprocess.run([str(runlake_cli), "demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{RESUMED:24s} killed with SIGKILL" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    db = tmp_path / "runlake-data" / "runlake.duckdb"
    with read_store(db) as con:
        runs = dict(con.execute("SELECT name, (status, attempts) FROM runs").fetchall())
        flagged = {name for (name,) in con.execute(
            """SELECT DISTINCT r.name FROM anomalies a JOIN runs r USING (run_id)
               WHERE a.severity IN ('warning', 'critical')""").fetchall()}
        steps = dict(con.execute(
            """SELECT r.name, (count(DISTINCT step), min(step), max(step)) FROM metrics m
               JOIN runs r USING (run_id) WHERE key = 'train/loss' GROUP BY r.name""").fetchall())
    assert set(runs) == set(SWEEP)
    assert all(status == "finished" for status, _ in runs.values())
    assert runs[RESUMED][1] == 2
    unstable = [name for name in SWEEP if "unstable" in name]
    assert flagged == set(unstable), flagged
    count, first, last = steps[RESUMED]  # every step from 0 to the end, across both attempts
    assert (count, first, last) == (last + 1, 0, steps[unstable[0]][2])
