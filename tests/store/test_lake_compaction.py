"""Lake compaction: automatic when small files pile up, and on demand; never loses or
duplicates a row; checkpoints the log; vacuums files nothing needs; keeps state tables'
latest rows and the chunk numbering going."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from runlake.store._lake_layout import APP, open_table
from runlake.store.lake import LakeBackend, compact, connect, write_anomalies

from . import _lake_util as u


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "root"
    u.write_segments(root)
    return root


def _files(root: Path, table: str) -> int:
    return len(open_table(root / "runlake-lake" / table).file_uris())


def test_maintain_compacts_when_due_without_changing_rows(root, tmp_path):
    """Many small chunks make maintain() compact on its own: far fewer files, the same
    rows as a DuckDB-file ingest, a checkpoint in each compacted table's log."""
    u.ingest_lake(root, chunk_points=100)  # ~60 chunks: > 32 small files per table
    assert _files(root, "metrics") < 10
    assert list((root / "runlake-lake" / "metrics" / "_delta_log").glob("*.checkpoint.parquet"))
    u.ingest_duck(root, tmp_path / "ref.duckdb")
    assert u.lake_rows(root) == u.duck_rows(tmp_path / "ref.duckdb")


def test_compact_now_keeps_every_row_and_an_old_reader(root):
    """compact(): row multisets before == after, files sorted into few, vacuum removes the
    replaced files, and a reader opened before compaction still reads all its rows."""
    u.ingest_lake(root, chunk_points=300)
    before = u.lake_rows(root)
    old = connect(u.lake_location(root))
    files_before = _files(root, "metrics")
    report = compact(u.lake_location(root), grace_s=0)
    assert report["metrics"]["files_before"] == files_before > report["metrics"]["files_after"]
    assert u.lake_rows(root) == before
    assert {t: u.rows(old, t) for t in u.COMPARED} == before
    del old
    report = compact(u.lake_location(root), grace_s=0)  # lease gone: the old files go too
    on_disk = len(list((root / "runlake-lake" / "metrics").glob("*.parquet")))
    assert on_disk == _files(root, "metrics")


def test_state_tables_keep_the_latest_row_per_key(root):
    """Compaction of runs/writers/ledger keeps what readers see (latest per key) and the
    next chunk still gets a fresh number (transaction versions survive the rewrite)."""
    u.ingest_lake(root, chunk_points=100)
    con = connect(u.lake_location(root))
    ledger = sorted(con.execute("SELECT segment, bytes, status FROM ingest_ledger").fetchall())
    compact(u.lake_location(root), grace_s=0)
    con = connect(u.lake_location(root))
    assert sorted(con.execute("SELECT segment, bytes, status FROM ingest_ledger").fetchall()) \
        == ledger
    dt = open_table(root / "runlake-lake" / "ingest_ledger")
    top = open_table(root / "runlake-lake" / "_commits").transaction_version(APP)
    assert dt.transaction_version(APP) <= top
    backend = LakeBackend(u.lake_location(root))
    backend.prepare()
    assert backend._next == top + 1


def test_write_anomalies_replaces_per_run_atomically(root):
    """write_anomalies replaces the rows of the named runs only; None replaces all."""
    u.ingest_lake(root)
    loc = u.lake_location(root)

    def found(run_id, n):
        return pa.table({"run_id": [run_id] * n, "kind": ["spike"] * n,
                         "severity": ["warning"] * n, "key": ["k0"] * n,
                         "step_start": list(range(n)), "step_end": list(range(n)),
                         "value": [1.0] * n, "message": ["m"] * n, "suggestion": [None] * n,
                         "detector": ["d"] * n,
                         "detected_at": pa.array([0] * n, pa.timestamp("us"))})

    write_anomalies(loc, ["run-00"], found("run-00", 3))
    write_anomalies(loc, ["run-01"], found("run-01", 2))
    write_anomalies(loc, ["run-00"], found("run-00", 1))
    q = "SELECT run_id, count(*) FROM anomalies GROUP BY 1 ORDER BY 1"
    assert connect(loc).execute(q).fetchall() == [("run-00", 1), ("run-01", 2)]
    write_anomalies(loc, None, found("run-02", 4))
    assert connect(loc).execute(q).fetchall() == [("run-02", 4)]
