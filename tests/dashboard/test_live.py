"""Live updates: a training subprocess logs while `runlake ingest --watch` runs; the app keeps
answering and shows the new steps, and the idle change token stays put."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WRITER = textwrap.dedent("""
    import sys, time
    import runlake
    run = runlake.init("live", "trainer", root=sys.argv[1], config={"lr": 0.1},
                       total_steps=100000, flush_interval=0.1, console=False)
    print(run.id, flush=True)
    step = 0
    while True:
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(0.01)
""")


def _ingest_watch(root: Path, db: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "runlake.cli", "ingest", "--root", str(root), "--db", str(db),
           "--watch", "--interval", "0.2"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _last_step(at) -> int | None:
    """The ``step`` column of the trainer's row in the Runs table."""
    assert not at.exception, [e.value for e in at.exception]
    if not at.dataframe:
        return None
    table = at.dataframe[0].value
    rows = table[table["run"] == "trainer"]
    return None if rows.empty or rows.iloc[0]["step"] != rows.iloc[0]["step"] else int(rows.iloc[0]["step"])


@pytest.mark.slow
def test_app_shows_new_steps_while_ingest_watch_runs(tmp_path, monkeypatch, app_script):
    """With a writer and `ingest --watch` running, successive app runs answer and see new steps."""
    from streamlit.testing.v1 import AppTest

    root, db = tmp_path / "lake", tmp_path / "lake" / "runlake.duckdb"
    root.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    watcher = _ingest_watch(root, db)
    try:
        run_id = writer.stdout.readline().strip()
        assert run_id, writer.stderr.read()
        monkeypatch.setenv("RUNLAKE_DB", str(db))
        at = AppTest.from_file(str(app_script), default_timeout=60)
        at.query_params["view"] = "runs"
        seen: list[int] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (len(set(seen)) < 3):
            at.run()
            step = _last_step(at)
            if step is not None:
                seen.append(step)
            time.sleep(0.5)
        assert len(set(seen)) >= 3, f"steps seen by successive runs: {seen}"
        assert seen == sorted(seen)
        assert watcher.poll() is None, "ingest --watch died: " + watcher.stderr.read().decode()

        charts = AppTest.from_file(str(app_script), default_timeout=60)
        charts.query_params.update({"view": "charts", "runs": run_id, "key": "loss"})
        charts.run()
        assert not charts.exception and charts.get("vega_lite_chart")
    finally:
        _stop(writer)
        _stop(watcher)


def test_change_token_is_stable_when_idle_and_moves_on_ingest(tmp_path):
    """The token only changes when ingest loaded something; an idle check costs no query."""
    import runlake
    from runlake.dashboard import data
    from runlake.ingest import ingest

    root, db = tmp_path / "lake", tmp_path / "lake" / "runlake.duckdb"
    assert data.change_token(db) == data.MISSING_STORE
    run = runlake.init("p", "r", root=root, console=False)
    run.log({"loss": 1.0}, step=0)
    run.flush()
    ingest(root=root, db=db)
    first = data.change_token(db)
    assert first != data.MISSING_STORE
    sig = data.file_signature(db)
    assert data.change_token(db) == first and data.file_signature(db) == sig
    ingest(root=root, db=db)  # nothing new: the token must not move
    assert data.change_token(db) == first
    run.log({"loss": 0.5}, step=1)
    run.finish()
    ingest(root=root, db=db)
    assert data.change_token(db) != first
