"""Lake readers: same tables and column types as the DuckDB file, one snapshot held
unchanged while ingest, compaction and vacuum go on, readers in other processes that never
fail during continuous ingest, and the SQL console's sandbox."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from runlake.store.lake import LakeBackend, attach_views, compact, connect
from runlake.store.spec import TABLES, VIEWS

from . import _lake_util as u


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "root"
    u.write_segments(root, runs=2, steps=200)
    return root


def _shape(con, name: str) -> list[tuple]:
    return [(c, t) for c, t, *_ in con.execute(f"DESCRIBE {name}").fetchall()]


def test_views_have_the_duckdb_files_names_and_types(root, tmp_path):
    """Every table and view of the DuckDB file is a view of the lake with the same columns
    and types, so a query written for one runs unchanged on the other."""
    u.ingest_lake(root)
    u.ingest_duck(root, tmp_path / "ref.duckdb")
    ref = duckdb.connect(str(tmp_path / "ref.duckdb"), read_only=True)
    lake = connect(u.lake_location(root))
    for name in [*TABLES, *VIEWS]:
        assert _shape(lake, name) == _shape(ref, name), name
    sql = ("SELECT r.name, s.key, s.points, s.last FROM runs r JOIN metric_summary s "
           "USING (run_id) ORDER BY 1, 2")
    assert lake.execute(sql).fetchall() == ref.execute(sql).fetchall()
    assert lake.execute("SELECT config->>'lr' FROM runs ORDER BY 1").fetchall() == \
        ref.execute("SELECT config->>'lr' FROM runs ORDER BY 1").fetchall()


def test_empty_lake_has_typed_empty_views(tmp_path):
    """A lake with no chunk yet answers every query with no rows (not an error)."""
    LakeBackend(u.lake_location(tmp_path)).prepare()
    con = connect(u.lake_location(tmp_path))
    for name in [*TABLES, *VIEWS]:
        assert con.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
    assert dict(_shape(con, "metrics"))["ts"] == "TIMESTAMP"


def test_held_reader_keeps_its_snapshot_through_ingest_compaction_and_vacuum(root):
    """A connection opened early answers with the same rows after many commits, a
    compaction and a vacuum; a new connection sees the new rows."""
    u.ingest_lake(root, chunk_points=200)
    held = connect(u.lake_location(root))
    before = {t: u.rows(held, t) for t in u.COMPARED}
    u.write_segments(root, runs=2, steps=300, prefix="more", project="other")
    u.ingest_lake(root, chunk_points=50)
    report = compact(u.lake_location(root), grace_s=0)
    assert report["metrics"]["vacuumed"] > 0  # files were deleted, but not the held ones
    assert {t: u.rows(held, t) for t in u.COMPARED} == before
    fresh = connect(u.lake_location(root))
    assert fresh.execute("SELECT count(*) FROM metrics").fetchone()[0] == \
        sum(before["metrics"].values()) + 2 * 300 * 5


_READER = """
import sys, time
from pathlib import Path
from runlake.store.lake import connect
lake, stop = Path(sys.argv[1]), Path(sys.argv[2])
ok = errors = 0
while not stop.exists():
    try:
        con = connect(lake)
        n = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
        m = con.execute("SELECT sum(events) FROM ingest_ledger").fetchone()[0]
        con.execute("SELECT * FROM runs JOIN metric_summary USING (run_id)").fetchall()
        con.close()
        ok += 1
    except Exception as exc:
        errors += 1
        print("ERROR", type(exc).__name__, exc, file=sys.stderr)
print(ok, errors)
"""


def test_readers_in_other_processes_never_fail_during_ingest(root, tmp_path):
    """Two processes open, query and close the lake in a loop while ingest commits many
    chunks and compacts: zero errors."""
    lake = root / "runlake-lake"
    LakeBackend(u.lake_location(root)).prepare()
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", _READER, str(lake), str(stop)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        time.sleep(1.0)
        ingest = u.ingest_subprocess(root, chunk_points=40)
        assert ingest.returncode == 0, ingest.stderr[-2000:]
        compact(u.lake_location(root), grace_s=0)
    finally:
        stop.touch()
    for proc in readers:
        out, err = proc.communicate(timeout=60)
        ok, errors = map(int, out.split())
        assert errors == 0, err[-2000:]
        assert ok > 3


def test_sql_console_sandbox_reads_views_after_external_access_is_off(root):
    """attach_views works in the SQL console's private instance, whose guard (set after
    attaching) refuses every file read: the views still answer, read_parquet does not."""
    u.ingest_lake(root)
    con = duckdb.connect(":memory:")
    attach_views(con, u.lake_location(root))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == 2 * 200 * 5
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    files = next((root / "runlake-lake" / "metrics").glob("*.parquet"))
    with pytest.raises(duckdb.Error):
        con.execute(f"SELECT * FROM read_parquet('{files}')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute(f"COPY (SELECT 1) TO '{root / 'runlake-lake' / 'x.csv'}'")


def test_lake_made_again_at_the_same_path_is_read_afresh(tmp_path):
    """A process that read a lake, then finds it removed and made again under the same path
    (as a rebuild does), reads the new lake, not its cached log of the old one."""
    import shutil

    root = tmp_path / "root"
    u.write_segments(root, runs=2, steps=100)
    u.ingest_lake(root, chunk_points=50)
    assert connect(u.lake_location(root)).execute("SELECT count(*) FROM runs").fetchone() == (2,)
    shutil.rmtree(root / "runlake-lake")
    shutil.rmtree(root / "proj" / "run-01")
    u.ingest_lake(root, chunk_points=400)
    con = connect(u.lake_location(root))
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (500,)


def test_polars_and_pyarrow_read_the_same_rows_as_the_views(root):
    """Other Delta readers (polars scan_delta, deltalake's pyarrow dataset) read the tables
    directly; filtered to complete chunks (docs/lake.md) they hold the views' rows."""
    import polars as pl
    from deltalake import DeltaTable

    u.ingest_lake(root, chunk_points=300)
    lake = root / "runlake-lake"
    done = pl.scan_delta(str(lake / "_commits")).group_by("app").agg(pl.col("chunk").max())
    metrics = (pl.scan_delta(str(lake / "metrics"))
               .join(done, left_on="_app", right_on="app", suffix="_done")
               .filter(pl.col("_chunk") <= pl.col("chunk")).drop("_app", "_chunk", "chunk")
               .collect())
    con = connect(u.lake_location(root))
    view = con.sql("SELECT * FROM metrics").pl()
    key = ["run_id", "key", "step"]
    assert metrics.sort(key).equals(view.sort(key))
    dataset = DeltaTable(str(lake / "metrics")).to_pyarrow_dataset()
    assert dataset.count_rows() == view.height


def test_joins_build_on_the_side_the_query_names_second(root):
    """Lake connections keep DuckDB from swapping hash-join sides on Parquet's missing
    distinct counts (bench_lake's curve query: 1.5x the file's time with the swap)."""
    u.ingest_lake(root)
    con = connect(u.lake_location(root))
    setting = con.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0]
    assert "build_side_probe_side" in setting
