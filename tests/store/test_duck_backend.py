"""DuckBackend: prepare() creates and migrates, commit() writes a chunk all-or-nothing
(state tables upserted, the rest appended), reader() is read-only; open_backend/read_store
dispatch a DuckDB location here."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from runlake.schemas.errors import StoreError
from runlake.store import open_backend, read_store
from runlake.store.chunk import Chunk, LedgerEntry
from runlake.store.duck import DuckBackend, write_store
from runlake.store.location import StoreLocation
from runlake.store.migrations import LATEST, MIGRATIONS
from runlake.store.spec import arrow_schema


@pytest.fixture
def backend(tmp_path):
    b = open_backend(StoreLocation("duckdb", tmp_path / "s.duckdb", tmp_path))
    assert isinstance(b, DuckBackend)
    b.prepare()
    return b


def _version(path):
    with read_store(path) as con:
        return con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]


def _runs(status: str, run_id: str = "r1") -> pa.Table:
    schema = arrow_schema("runs", plain=True)
    row = {f.name: None for f in schema}
    row.update(run_id=run_id, project="p", status=status)
    return pa.Table.from_pylist([row], schema=schema)


def _metrics(n: int, run_id: str | None = "r1") -> pa.Table:
    schema = arrow_schema("metrics", plain=True)
    rows = []
    for i in range(n):
        row = {f.name: None for f in schema}
        row.update(run_id=run_id, step=i, key="loss", value=float(i), ts=i, segment="s",
                   byte_offset=0, writer="w", rank=0)
        rows.append({k: v for k, v in row.items() if k in schema.names})
    fields = [pa.field(f.name, f.type) for f in schema]  # nullable: DuckDB must refuse
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _chunk(metrics=None, runs=None, ledger_bytes=10) -> Chunk:
    ledger = [LedgerEntry("p/r1/w/000000.jsonl.zst", "p", "r1", "w", bytes=ledger_bytes)]
    return Chunk({"metrics": metrics} if metrics is not None else {}, ledger, [], runs, None,
                 [])


def test_prepare_creates_a_current_store(tmp_path):
    """A missing file is created and migrated to the latest version; prepare is idempotent."""
    path = tmp_path / "new.duckdb"
    b = DuckBackend(StoreLocation("duckdb", path, tmp_path))
    b.prepare()
    assert _version(path) == LATEST
    b.prepare()
    with read_store(path) as con:
        assert con.execute("SELECT count(*) FROM schema_migrations").fetchone() == (LATEST,)


def test_prepare_migrates_an_older_store(tmp_path):
    """A store that ran only migration 1 (v0.1) gets the newer migrations."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "description VARCHAR, applied_at TIMESTAMP)")
    for stmt in MIGRATIONS[0].statements:
        con.execute(stmt)
    con.execute("INSERT INTO schema_migrations VALUES (1, 'initial schema', now())")
    con.close()
    DuckBackend(StoreLocation("duckdb", path, tmp_path)).prepare()
    assert _version(path) == LATEST


def test_prepare_refuses_a_file_that_is_not_a_store(tmp_path):
    """A file that is not DuckDB: a StoreError naming it, the file untouched."""
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database")
    with pytest.raises(StoreError, match="notes.duckdb"):
        DuckBackend(StoreLocation("duckdb", path, tmp_path)).prepare()
    assert path.read_text() == "not a database"


def test_commit_upserts_state_tables_and_appends_the_rest(backend):
    """runs (a state table) keeps one row per run_id, the newest; metrics append; the
    ledger row is replaced with the newer offset."""
    backend.commit(_chunk(_metrics(3), _runs("running"), ledger_bytes=10))
    backend.commit(_chunk(_metrics(2), _runs("finished"), ledger_bytes=25))
    with backend.reader() as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("finished",)]
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (5,)
        assert con.execute("SELECT bytes FROM ingest_ledger").fetchall() == [(25,)]


def test_a_failed_commit_leaves_nothing_of_the_chunk(backend):
    """A row DuckDB refuses (NULL run_id) rolls back the whole chunk, ledger included,
    with a StoreError saying nothing was committed."""
    backend.commit(_chunk(_metrics(1), _runs("running"), ledger_bytes=10))
    with pytest.raises(StoreError, match="nothing of this chunk was committed") as err:
        backend.commit(_chunk(_metrics(4, run_id=None), _runs("finished"), ledger_bytes=99))
    assert str(backend.path) in str(err.value)
    with backend.reader() as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (1,)
        assert con.execute("SELECT status FROM runs").fetchall() == [("running",)]
        assert con.execute("SELECT bytes FROM ingest_ledger").fetchall() == [(10,)]


def test_reader_is_read_only_and_closed_after(backend):
    """reader() cannot write, and lets go of the file (a writer opens it right after)."""
    with backend.reader() as con:
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM runs")
    with write_store(backend.path, retry_s=0.5):
        pass
    backend.maintain()  # nothing to do for a DuckDB file, and harmless


def test_read_store_by_root_finds_the_file(tmp_path):
    """read_store(root=...) opens the root's DuckDB file; a root without one says what
    to run."""
    with pytest.raises(StoreError, match=r"no store at .*runlake\.duckdb: run `runlake ingest`"):
        with read_store(root=tmp_path):
            pass
    DuckBackend(StoreLocation("duckdb", tmp_path / "runlake.duckdb", tmp_path)).prepare()
    with read_store(root=tmp_path) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
