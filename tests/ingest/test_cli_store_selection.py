"""Choosing the store from the command line: `ingest --lake`/`--duckdb`, $RUNLAKE_STORE,
the root's setting, `runlake compact`, and `ingest --watch` on a lake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("deltalake")

from runlake.schemas.errors import StoreError  # noqa: E402
from runlake.store import locate, read_store  # noqa: E402
from runlake.store.location import SETTING_FILE  # noqa: E402


def cli(*args, env=None, check=True):
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNLAKE_")}
    proc = subprocess.run([sys.executable, "-m", "runlake.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env={**base, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr
    for n in needles:
        assert str(n) in proc.stderr, (n, proc.stderr)


def _points(root) -> int:
    with read_store(locate(root)) as con:
        return con.execute("SELECT count(*) FROM metrics").fetchone()[0]


def test_ingest_lake_on_an_empty_root_makes_a_lake_and_the_setting(seg_root, make_writer):
    """`runlake ingest --lake` creates <root>/runlake-lake and {"store": "lake"}; every
    later command finds the lake without a flag."""
    make_writer().start().metrics(1, {"a": 1.0, "b": 2.0}).flush()
    cli("ingest", "--root", seg_root, "--lake")
    assert json.loads((seg_root / SETTING_FILE).read_text()) == {"store": "lake"}
    assert (seg_root / "runlake-lake").is_dir() and not (seg_root / "runlake.duckdb").exists()
    out = cli("sql", "--root", seg_root, "SELECT count(*) AS n FROM metrics", "--json").stdout
    assert json.loads(out) == [{"n": 2}]
    assert "0 metric points" in cli("ingest", "--root", seg_root).stdout


def test_runlake_store_env_selects_and_converts(seg_root, make_writer):
    """RUNLAKE_STORE=lake on a root with a DuckDB store converts it (like --lake); the
    root then keeps the lake without the variable."""
    w = make_writer().start()
    w.metrics(1, {"a": 1.0}).flush()
    cli("ingest", "--root", seg_root)
    assert locate(seg_root).kind == "duckdb"
    w.metrics(2, {"a": 2.0}).flush()
    out = cli("ingest", "--root", seg_root, env={"RUNLAKE_STORE": "lake"}).stdout
    assert "converted" in out and "1 metric points" in out, out
    assert locate(seg_root).kind == "lake" and _points(seg_root) == 2


def test_duckdb_flag_on_a_lake_root_is_refused(seg_root, make_writer):
    """--duckdb (or RUNLAKE_STORE=duckdb) on a root whose setting says lake: one line
    naming the setting and both paths; nothing is written."""
    make_writer().start().metrics(1, {"a": 1.0}).flush()
    cli("ingest", "--root", seg_root, "--lake")
    _one_line_error(cli("ingest", "--root", seg_root, "--duckdb", check=False),
                    SETTING_FILE, "runlake.duckdb", "runlake-lake")
    _one_line_error(cli("runs", "--root", seg_root, env={"RUNLAKE_STORE": "duckdb"},
                        check=False), SETTING_FILE)
    assert not (seg_root / "runlake.duckdb").exists()
    both = cli("ingest", "--root", seg_root, "--lake", "--duckdb", check=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_analyze_on_a_lake_stores_anomalies(seg_root, make_writer):
    """`ingest --lake --analyze` stores the detectors' findings in the lake's anomalies
    table (through the lake's atomic replace), readable by `runlake anomalies`."""
    w = make_writer().start()
    for step in range(60):
        w.metrics(step, {"train/loss": float("nan") if step == 30 else 1.0 / (step + 1)})
    w.flush()
    out = cli("ingest", "--root", seg_root, "--lake", "--analyze").stdout
    assert "anomalies:" in out
    with read_store(locate(seg_root)) as con:
        stored = con.execute("SELECT count(*) FROM anomalies").fetchone()[0]
    assert stored > 0
    listed = json.loads(cli("anomalies", "--root", seg_root, "--json").stdout)
    assert len(listed) == stored


def test_compact_on_each_store(seg_root, make_writer):
    """`runlake compact` compacts a lake (files before/after); on a DuckDB file it says
    there is nothing to compact; with no store it says what to run."""
    _one_line_error(cli("compact", "--root", seg_root, check=False), "runlake ingest")
    w = make_writer().start()
    w.metrics(0, {"a": 0.0}).flush()
    cli("ingest", "--root", seg_root)
    assert "nothing to compact" in cli("compact", "--root", seg_root).stdout
    for step in range(1, 6):  # small commits: several files per table
        w.metrics(step, {"a": float(step)}).flush()
        cli("ingest", "--root", seg_root, "--lake")
    out = cli("compact", "--root", seg_root).stdout
    assert out.startswith("compacted ") and "data files" in out, out
    assert _points(seg_root) == 6


def _wait(predicate, limit=60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except StoreError:  # the lake is still being created by the watch's first pass
            pass
        time.sleep(0.05)
    return False


def test_watch_on_a_lake_commits_and_compact_defers_to_it(seg_root, make_writer):
    """`ingest --watch --lake` converts nothing on an empty root, commits each new frame
    (readers see it while the watch runs), and `runlake compact` meanwhile exits 2 saying
    the watch compacts on its own."""
    w = make_writer().start()
    w.metrics(0, {"a": 0.0}).flush()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNLAKE_")}
    proc = subprocess.Popen([sys.executable, "-m", "runlake.cli", "ingest", "--root",
                             str(seg_root), "--lake", "--watch", "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base)
    try:
        assert _wait(lambda: locate(seg_root).exists() and _points(seg_root) == 1)
        lags = []
        for step in range(1, 4):
            w.metrics(step, {"a": float(step)}).flush()
            flushed = time.monotonic()
            assert _wait(lambda: _points(seg_root) == step + 1)
            lags.append(time.monotonic() - flushed)
        print(f"watch freshness on the lake (interval 0.2 s): {[round(x, 2) for x in lags]} s")
        busy = cli("compact", "--root", seg_root, check=False)
        _one_line_error(busy, "compacts the store automatically")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
