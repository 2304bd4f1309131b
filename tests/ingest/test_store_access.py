"""Who may hold the store while ingest runs: snapshots never block it, lock errors name the
holder, and ``ingest --watch`` waits out a holder instead of giving up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import runlake
from runlake.ingest import ingest
from runlake.store.duck import connect, lock_holder, snapshot, write_store
from runlake.schemas.errors import QueryError, StoreBusyError

RUNLAKE = [sys.executable, "-m", "runlake.cli"]


def _write(make_writer, run_id: str, steps: int = 5) -> None:
    w = make_writer(run_id).start(name=run_id)
    for step in range(steps):
        w.metrics(step, {"loss": 1.0 / (step + 1)})
    w.flush()
    w.seal()


def _count(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM metrics").fetchall()[0][0]


def _holder(tmp_path: Path, body: str, *args: str) -> subprocess.Popen:
    """A child running ``notebook.py`` (body), which prints a line once it holds the store."""
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "holding", "the holder died before holding"
    return child


NOTEBOOK = """
    import sys
    import runlake
    con = runlake.connect(root=sys.argv[1])
    print("holding", flush=True)
    def count():
        return con.execute("SELECT count(*) FROM metrics").fetchall()[0][0]
    print(count(), flush=True)
    sys.stdin.readline()            # ingest runs now, while con stays open
    print(count(), flush=True)      # the snapshot: what it saw when taken
    con.close()
    con = runlake.connect(root=sys.argv[1])
    print(count(), flush=True)      # reconnected: the new data
"""


def test_a_held_connect_never_blocks_a_real_ingest(seg_root, make_writer, tmp_path):
    """A notebook holding runlake.connect() does not stop a `runlake ingest` subprocess from
    committing; the notebook sees the new rows after reconnecting."""
    _write(make_writer, "run-a")
    ingest(seg_root)
    notebook = _holder(tmp_path, NOTEBOOK, str(seg_root))
    try:
        assert int(notebook.stdout.readline()) == 5
        _write(make_writer, "run-b", steps=7)
        done = subprocess.run([*RUNLAKE, "ingest", "--root", str(seg_root)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "stayed locked" not in done.stderr
        assert _count(seg_root / "runlake.duckdb") == 12
        notebook.stdin.write("go\n")
        notebook.stdin.flush()
        assert int(notebook.stdout.readline()) == 5
        assert int(notebook.stdout.readline()) == 12
    finally:
        notebook.stdin.close()
        notebook.wait(timeout=60)


def test_snapshot_leaves_no_file_and_frees_the_store(seg_root, make_writer, tmp_path):
    """The snapshot's copy is unlinked as soon as it is open, and the live file is free."""
    _write(make_writer, "run-a")
    ingest(seg_root)
    where = tmp_path / "snapshots"
    where.mkdir()
    con = snapshot(seg_root / "runlake.duckdb", directory=where)
    try:
        assert list(where.iterdir()) == []
        with write_store(seg_root / "runlake.duckdb", retry_s=0.5) as writer:
            writer.execute("DELETE FROM metrics")
        assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(5,)]
    finally:
        con.close()
    assert list(where.iterdir()) == []


def test_snapshot_includes_a_crashed_writers_wal(tmp_path):
    """Rows a killed writer left only in the write-ahead log are in the snapshot too."""
    db = tmp_path / "store.duckdb"
    with write_store(db):
        pass
    code = ("import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); "
            "c.execute(\"SET checkpoint_threshold = '10GB'\"); "
            "c.execute(\"INSERT INTO metrics (run_id, rank, step, ts, key, value) SELECT 'r', 0, "
            "i, now()::TIMESTAMP, 'loss', i FROM range(100) t(i)\"); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=60)
    assert Path(f"{db}.wal").exists(), "the writer did not leave a WAL behind"
    con = snapshot(db, directory=tmp_path)
    try:
        assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(100,)]
    finally:
        con.close()


def test_live_connect_and_query_still_read_the_file(seg_root, make_writer):
    """connect(live=True) opens the store itself; query() returns polars and lets go at once."""
    _write(make_writer, "run-a")
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    con = runlake.connect(root=seg_root, live=True)
    try:
        paths = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchall()
        assert Path(paths[0][0]).resolve() == db.resolve()
    finally:
        con.close()
    frame = runlake.query("SELECT step, value FROM metrics WHERE key = ? ORDER BY step",
                          ["loss"], root=seg_root)
    assert frame["step"].to_list() == [0, 1, 2, 3, 4]
    with write_store(db, retry_s=0.5):
        pass  # nothing holds the file after query()
    with pytest.raises(QueryError, match="nowhere"):
        runlake.query("SELECT * FROM nowhere", root=seg_root)


READER = """
    import sys, time
    import duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("holding", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("mode, wanted", [("ro", "blocks every commit"),
                                          ("rw", "open for writing")])
def test_lock_error_names_the_holding_process(tmp_path, mode, wanted):
    """A store that stays locked is blamed on the process holding it, not on ingest."""
    db = tmp_path / "store.duckdb"
    with write_store(db):
        pass
    child = _holder(tmp_path, READER, str(db), mode)
    try:
        with pytest.raises(StoreBusyError) as err:
            connect(db, read_only=(mode == "rw"), retry_s=0.3).close()
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    message = str(err.value)
    assert f"held by PID {child.pid} (`python notebook.py " in message
    assert wanted in message and "ingest committing" not in message and "\n" not in message


def test_lock_holder_without_a_pid():
    """A conflict DuckDB reports without a PID still gets a plain answer."""
    assert lock_holder("IO Error: Could not set lock on file x") == "another process"
    assert lock_holder(f"Conflicting lock is held in /bin/python (PID {os.getpid()})") == (
        f"this process (PID {os.getpid()}, another connection of this program)")


HOLD_LIVE = """
    import sys
    import runlake
    con = runlake.connect(root=sys.argv[1], live=True)
    print("holding", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.slow
def test_watch_waits_out_a_holder_and_continues(seg_root, make_writer, tmp_path):
    """`ingest --watch` names the holder once, keeps retrying past the 30 s write retry,
    and loads the waiting data as soon as the store is free."""
    _write(make_writer, "run-a")
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    notebook = _holder(tmp_path, HOLD_LIVE, str(seg_root))
    watcher = subprocess.Popen([*RUNLAKE, "ingest", "--root", str(seg_root), "--watch",
                                "--interval", "0.5"], stderr=subprocess.PIPE, text=True)
    try:
        _write(make_writer, "run-b", steps=7)
        deadline = time.monotonic() + 120
        waiting = watcher.stderr.readline()
        while "waiting" not in waiting and time.monotonic() < deadline:
            waiting = watcher.stderr.readline()
        assert f"held by PID {notebook.pid} (`python notebook.py" in waiting
        notebook.stdin.close()
        notebook.wait(timeout=60)
        while "free again" not in (line := watcher.stderr.readline()):
            assert line and time.monotonic() < deadline, "the watch never resumed"
            assert "waiting" not in line, "the same holder was reported twice"
        while _count(db) != 12:
            assert time.monotonic() < deadline and watcher.poll() is None
            time.sleep(0.2)
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=60)
        if notebook.poll() is None:
            notebook.kill()
    assert watcher.returncode == 0
