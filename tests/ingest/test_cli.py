"""The ingest/runs/sql/logs commands as a user runs them: subprocesses, formats, errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from runlake.ingest import ingest
from runlake.schemas import events as E


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "runlake.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def store(seg_root, make_writer):
    """Two runs: 'alpha' finished with logs, 'beta' running."""
    a = make_writer("run-alpha-1").start(name="alpha", tags=["x"], total_steps=10)
    for step in range(10):
        a.metrics(step, {"train/loss": 1.0 / (step + 1), "val/acc": step / 10, "lr": 0.1})
    a.add(E.Log, level="INFO", message="starting up", logger="train")
    a.add(E.Log, level="WARNING", levelno=30, message="loss is nan", logger="train", step=3)
    a.add(E.Log, level="ERROR", levelno=40, message="disk full", logger="io")
    a.end().flush()
    b = make_writer("run-beta-2").start(name="beta")
    b.metrics(0, {"train/loss": 5.0}).flush()
    ingest(seg_root)
    return seg_root


def test_ingest_command_prints_a_summary(seg_root, make_writer):
    """`runlake ingest` loads and says what it loaded; a second run loads nothing."""
    make_writer().start().metrics(1, {"a": 1.0}).flush()
    out = cli("ingest", "--root", seg_root).stdout
    assert "1 metric points" in out
    assert "0 metric points" in cli("ingest", "--root", seg_root).stdout


def test_runs_formats(store):
    """`runlake runs` prints a table, JSON and CSV with status and key metrics."""
    table = cli("runs", "--root", store).stdout
    assert "alpha" in table and "finished" in table and "train/loss=0.1" in table
    runs = json.loads(cli("runs", "--root", store, "--json").stdout)
    assert {r["name"]: r["status"] for r in runs} == {"alpha": "finished", "beta": "running"}
    alpha = next(r for r in runs if r["name"] == "alpha")
    assert alpha["metrics"] == {"train/loss": 0.1, "val/acc": 0.9} and alpha["progress"] == 1.0
    rows = list(csv.DictReader(io.StringIO(cli("runs", "--root", store, "--csv",
                                               "--status", "running").stdout)))
    assert [r["name"] for r in rows] == ["beta"]


def test_sql_formats(store):
    """`runlake sql` runs one read-only query and prints table/JSON/CSV."""
    q = "SELECT key, count(*) AS n FROM metrics GROUP BY key ORDER BY key"
    assert json.loads(cli("sql", q, "--root", store, "--json").stdout) == [
        {"key": "lr", "n": 10}, {"key": "train/loss", "n": 11}, {"key": "val/acc", "n": 10}]
    assert cli("sql", q, "--root", store, "--csv").stdout.splitlines()[0] == "key,n"
    assert "train/loss" in cli("sql", q, "--root", store).stdout


def test_logs_by_name_prefix_level_and_grep(store):
    """`runlake logs` resolves RUN by name or id prefix and filters by level and text."""
    by_name = json.loads(cli("logs", "alpha", "--root", store, "--json").stdout)
    assert [r["message"] for r in by_name] == ["starting up", "loss is nan", "disk full"]
    warn = json.loads(cli("logs", "run-alpha", "--root", store, "--level", "warning",
                          "--json").stdout)
    assert [r["level"] for r in warn] == ["WARNING", "ERROR"]
    assert "disk full" in cli("logs", "alpha", "--root", store, "--grep", "disk").stdout
    last = json.loads(cli("logs", "alpha", "--root", store, "--limit", "1", "--json").stdout)
    assert [r["message"] for r in last] == ["disk full"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["logs", "nope"], "no run matches 'nope'"),
        (["logs", "run-"], "2 runs match id prefix 'run-'"),
        (["sql", "DELETE FROM runs"], "read-only"),
        (["sql", "SELECT * FROM nowhere"], "SQL error"),
        (["runs", "--db", "/nonexistent/x.duckdb"], "no store at"),
        (["ingest", "--root", "/nonexistent/root"], "is not a directory"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(store, args, message):
    """Bad RUN, bad SQL, missing store or root: one line on stderr, exit code 2."""
    if "--db" not in args and "--root" not in args:
        args = [*args, "--root", store]
    proc = cli(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_help_shows_examples():
    """Every command's --help ends with an example."""
    for command in ("ingest", "runs", "sql", "logs"):
        assert "example:" in cli(command, "--help").stdout


@pytest.mark.slow
def test_readers_never_see_lock_errors_during_watch(seg_root, make_writer):
    """`runlake sql`/`runs` during `ingest --watch` while a writer logs: no lock error, ever."""
    w = make_writer().start(name="live")
    w.metrics(0, {"loss": 1.0}).flush()
    watcher = subprocess.Popen([sys.executable, "-m", "runlake.cli", "ingest", "--watch",
                                "--interval", "0.25", "--root", str(seg_root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def write():
        step = 1
        while not stop.is_set():
            for _ in range(200):
                w.metrics(step, {"loss": 1.0 / step, "acc": step / 1e4})
                step += 1
            w.flush()
            time.sleep(0.2)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        db = seg_root / "runlake.duckdb"
        while not db.exists():
            time.sleep(0.05)
        seen = []
        for i in range(24):
            if i % 3 == 0:
                proc = cli("runs", "--root", seg_root, "--json", check=False)
            else:
                proc = cli("sql", "SELECT count(*) AS n FROM metrics", "--root", seg_root,
                           "--json", check=False)
                if proc.returncode == 0:
                    seen.append(json.loads(proc.stdout)[0]["n"])
            assert proc.returncode == 0 and "lock" not in proc.stderr.lower(), proc.stderr
        assert seen == sorted(seen) and seen[-1] > seen[0]
    finally:
        stop.set()
        writer.join()
        watcher.terminate()
        watcher.wait()
    assert "Traceback" not in watcher.stderr.read()
