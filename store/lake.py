"""The lake backend: the store as Delta Lake tables that no reader can block.

Layout: ``<lake>/<table>/`` is one Delta table per store table (:mod:`runlake.store.spec`'s
stored Arrow schema plus two hidden columns, ``_app``: the ingest application id, and
``_chunk``: the chunk that wrote the row), ``<lake>/_commits/`` one row per complete chunk,
``<lake>/_runlake/`` runlake's own files (``lake.json``: the lake format; ``readers/``:
leases of open readers). Any Delta reader can read the tables (docs/lake.md).

Exactly once, without multi-table transactions. Ingest commits a pass in chunks
(:class:`runlake.store.chunk.Chunk`: rows, quarantine, frame keys, runs, writers and the
ledger offsets that account for them). Delta commits one table atomically, never several,
so a chunk is made atomic by numbering it:

1. Chunk N of app A, with N = 1 + the highest ``DeltaTable.transaction_version(A)`` over
   every table: a number is never reused, even for a chunk that died half written.
2. Each table with rows in the chunk gets ONE append: its rows, sorted by the table's
   ``sort``, stamped ``_app = A, _chunk = N``, committed with the Delta application
   transaction ``txn(A, N)`` (so the table itself records that it holds chunk N).
3. Last, ``_commits`` gets the row ``(A, N)``, with the same ``txn``. This single
   commit is the chunk's commit point: C(A), the highest chunk in ``_commits``, is A's
   last complete chunk.

A crash (SIGKILL included) before step 3 leaves appends of chunk N > C(A) in some tables.
Nobody sees them: every reader shows only rows with ``_chunk <= C(app)``; and before
ingest writes anything again, :meth:`LakeBackend.prepare` (and a failed commit's next
attempt) deletes them: for each table with ``transaction_version(A) > C(A)``, ``DELETE
WHERE _app = A AND _chunk > C(A)``. The ledger offsets of chunk N are among the rows
deleted, so the next pass re-reads exactly the frames chunk N held: nothing is lost,
nothing loaded twice. A crash after step 3 leaves a complete chunk. A crash during the
cleanup leaves it to be done again (deleting is idempotent). The frame keys committed
with each chunk still guard against the same frames arriving under another file name.

State tables (runs, writers, ingest_ledger) are appended too, one new version of each
changed row per chunk; readers keep the latest row per ``Table.key``. ``anomalies``
(derived, written by ``runlake anomalies``, not ingest) is replaced per run by one atomic
``overwrite ... predicate "run_id IN (...)"`` (:func:`write_anomalies`).

Readers (:func:`connect`): a DuckDB in-memory connection with one view per store table
(same names and column types as the DuckDB file, so every query runs unchanged), over the
files of one version of each table, filtered to ``_chunk <= C``. C is read before the
tables and again after; a snapshot is retried if C moved by K-1 = 99 chunks meanwhile,
because state-table compaction keeps, per key, the latest row with ``_chunk <= C-K`` plus
every row of the last K chunks: a reader whose C is within K of the compaction's still
finds its latest row for every key. Readers hold no lock, so they never block ingest,
and ingest never blocks them; a reader leaves a lease (``_runlake/readers/``, the table
versions it reads; removed when its connection is collected, ignored once its process is
dead) and vacuum keeps those versions' files. An open connection answers from its
snapshot forever, with the same rows, while ingest, compaction and vacuum go on.

Compaction (:mod:`runlake.store._lake_compact`) runs in the process holding the root's
ingest lock, from :meth:`LakeBackend.maintain` when more than 32 small files piled up in a
table, and by :func:`compact` (``runlake compact``): one atomic Delta commit per table that
replaces small files by the same rows, sorted; then a log checkpoint, ``cleanup_metadata``
and vacuum. A crash during compaction leaves the old files or the new ones, never both
visible; files a killed writer left outside the log are vacuumed later.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError

from runlake.schemas.errors import StoreError
from runlake.schemas.objects import is_url
from runlake.store._lake_compact import compact_lake, due
from runlake.store._lake_io import storage_options
from runlake.store._lake_layout import (
    APP, COMMITS, LakeFiles, check_table_schema, commits_schema, delta_config,
    delta_schema, kill_point, open_table, sort_indices, table_error, writer,
)
from runlake.store._lake_read import (
    bind_release, committed_chunks, create_views, read_snapshot,
)
from runlake.store._lake_shards import ANY_SHARDS, check_shards, retry_conflicts
from runlake.store.chunk import Chunk
from runlake.store.spec import TABLES, arrow_schema

__all__ = ["LakeBackend", "attach_views", "compact", "connect", "write_anomalies"]


def _path(location: Any) -> Path | str:
    """A lake folder (or ``s3://`` URL) from a StoreLocation (``.path``) or a plain path."""
    path = getattr(location, "path", location)
    return path if is_url(path) else Path(path)


def connect(location: Any) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over one consistent snapshot of the lake, for as long as needed.

    Its views are named like the store's tables and views (:mod:`runlake.store.spec`), with
    the DuckDB file's column types. It never blocks ingest, and ingest never changes what
    it sees; open a new one to see newer data.

    Raises:
        StoreError: there is no lake, or it is damaged or newer than this runlake (the
            message names the path and what to run).
    """
    con = duckdb.connect(":memory:")
    try:
        attach_views(con, location, sandboxed=False)
    except BaseException:
        con.close()
        raise
    return con


def attach_views(con: duckdb.DuckDBPyConnection, location: Any, *,
                 sandboxed: bool = True) -> None:
    """Create the lake's views (one snapshot) in ``con``'s current schema.

    ``sandboxed`` (the default, for the SQL console): the tables are registered Arrow
    datasets, which keep working after ``SET enable_external_access = false`` (DuckDB then
    refuses ``read_parquet`` even in views made before); False reads with DuckDB's own
    Parquet reader (faster; what :func:`connect` uses). Also sets ``disabled_optimizers``
    on ``con`` (see below).
    """
    snap = read_snapshot(_path(location))
    try:
        # Parquet has no distinct counts, so DuckDB estimates every GROUP BY as big as its
        # input and then builds hash joins on the wrong side (the curve query's 20-row
        # span joined to 2M points: 1.5x the DuckDB file's time). Without that swap a join
        # builds on the side the query names second, as hand-written SQL expects.
        con.execute("SET disabled_optimizers = 'build_side_probe_side'")
        create_views(con, snap, sandboxed=sandboxed)
    except BaseException:
        snap.release()
        raise
    bind_release(con, snap)


class LakeBackend:
    """The lake, opened for ingest by the process holding the root's ingest lock.

    Sharded ingest (:mod:`runlake.ingest.shard`): ``app`` is the shard's application id,
    ``shards`` its N (None: unsharded; checked against the lake's record on every pass,
    :func:`runlake.store._lake_shards.check_shards`) and ``fence`` the shard lease's check,
    called before every write (a holder that lost its lease writes nothing more). Shards
    append concurrently: recovery and compaction touch only ``app``'s rows and files, and
    a Delta commit conflict is retried (:func:`retry_conflicts`).
    """

    def __init__(self, location: Any, *, app: str = APP, shards: int | None = None,
                 fence: Any = None) -> None:
        self.location = location
        self.app = app
        self.shards = shards
        self.fence = fence
        self.files = LakeFiles(_path(location))
        self._tables: dict[str, DeltaTable] = {}
        self._lake_id: str | None = None
        self._next = 1  # the next chunk number
        self._committed = 0  # C(app)
        self._dirty = True  # orphan appends may exist: recover before writing
        self._numbered = False  # chunk numbers not yet above every app's

    # -- setup --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the lake and its tables if missing, refuse a newer or damaged one, and
        delete the appends of a chunk an earlier process left half written."""
        lake_id = self.files.check_format()
        if not (self._tables and lake_id == self._lake_id):  # else a watch's next pass
            self.create()
            self._numbered = False
        self._check_shards()
        self._recover()
        if not self._numbered:
            # chunks numbered above every app's: where a run changed owner (the shard
            # count changed while every ingester was stopped), the new owner's rows are
            # the latest of each key
            top = max(committed_chunks(self.files, self._lake_id)[0].values(), default=0)
            self._next = max(self._next, top + 1)
            self._numbered = True

    def create(self) -> None:
        """Create the lake and its tables where missing (nothing else: no recovery), so
        that a shard can make the lake before it takes its lease in ``_runlake/``; safe
        while other processes create the same lake."""
        lake = self.files
        lake.check_format()
        lake.make()
        lake.check_folders()
        lake.clean_temp_commits()
        self._tables = {name: self._open_or_create(name) for name in lake.names()}
        # lake.json (and _runlake/, which readers look for) last: a reader opening while a
        # first pass creates the lake is told there is no lake yet, never that a table is
        # missing; a kill before it leaves tables that the next prepare() adopts
        lake.write_format()
        self._lake_id = lake.check_format()

    def _check_shards(self) -> None:
        if self.shards != ANY_SHARDS:
            check_shards(self.files.path, self.shards)

    def _open_or_create(self, name: str) -> DeltaTable:
        path = self.files.table(name)
        schema = commits_schema() if name == COMMITS else delta_schema(name)
        if not self.files.has_table(name):
            try:
                return DeltaTable.create(str(path), schema, name=name,
                                         configuration=delta_config(),
                                         storage_options=storage_options(path))
            except (DeltaError, OSError) as exc:
                if self.files.has_table(name):  # another shard created it first
                    return _open_created(self.files, name)
                raise StoreError(f"cannot create the lake table {path}: {exc}") from exc
        dt = _open_created(self.files, name)
        missing = check_table_schema(dt, name, path)
        if missing:  # a column added to the spec since this table was made
            dt.alter.add_columns([_delta_field(f) for f in missing])
        return dt

    def _recover(self) -> None:
        for name, dt in self._tables.items():
            try:
                dt.update_incremental()
            except (DeltaError, OSError) as exc:
                raise table_error(self.files.table(name), exc) from exc
        committed = self._tables[COMMITS].transaction_version(self.app) or 0
        top = committed
        for name, dt in self._tables.items():
            version = dt.transaction_version(self.app) or 0
            top = max(top, version)
            if version > committed:
                app = self.app.replace("'", "''")
                try:
                    retry_conflicts(dt, lambda dt=dt: dt.delete(
                        f"_app = '{app}' AND _chunk > {committed}"), self.fence)
                except DeltaError as exc:
                    raise table_error(self.files.table(name), exc) from exc
                kill_point(f"recover:{name}")
        self._committed = committed
        self._next = max(self._next, top + 1)
        self._dirty = False

    # -- Backend ------------------------------------------------------------------------
    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.files.path)
        try:
            yield con
        finally:
            con.close()

    def commit(self, chunk: Chunk) -> None:
        """Commit ``chunk`` exactly once (the story is this module's docstring)."""
        if not self._tables:
            self.prepare()
        if self._dirty:
            self._recover()
        out = {name: tbl for name, tbl in chunk.tables_out().items() if tbl.num_rows}
        if not out:
            return
        n = self._next
        self._next += 1
        self._dirty = True  # until _commits has (app, n)
        txn = CommitProperties(app_transactions=[Transaction(self.app, n)])
        rows = 0
        name = COMMITS
        try:
            for name, tbl in out.items():
                kill_point(f"before:{name}")
                data, dt = _stamped(name, tbl, self.app, n), self._tables[name]
                retry_conflicts(dt, lambda: write_deltalake(
                    dt, data, mode="append", writer_properties=writer(name),
                    commit_properties=txn), self.fence)
                rows += tbl.num_rows
                kill_point(f"after:{name}")
            name = COMMITS
            kill_point(f"before:{COMMITS}")
            dt, data = self._tables[COMMITS], pa.table(
                {"app": [self.app], "chunk": [n], "committed_at": [_now()], "rows": [rows]},
                schema=commits_schema())
            retry_conflicts(dt, lambda: write_deltalake(
                dt, data, mode="append", commit_properties=txn), self.fence)
            kill_point(f"after:{COMMITS}")
        except (DeltaError, OSError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise StoreError(f"cannot write the lake table {self.files.table(name)}: {detail}; "
                             f"nothing of this chunk was committed (free disk space, then run "
                             f"ingest again: it resumes where the last commit ended)") from exc
        self._committed = n
        self._dirty = False

    def maintain(self) -> None:
        """Compact, checkpoint and vacuum the tables that piled up small files."""
        own = None if self.shards is None else {self.app}  # a shard compacts its own files
        if self._tables and not self._dirty and due(self._tables, own):
            compact_lake(self.files, self._tables, {self.app: self._committed}, apps=own)

    def compact(self, *, grace_s: float | None = None) -> dict:
        """Compact every table with two or more small files now; a report by table."""
        if not self._tables:
            self.prepare()
        elif self._dirty:
            self._recover()
        chunks, _v = committed_chunks(self.files)
        kw = {} if grace_s is None else {"grace_s": grace_s}
        return compact_lake(self.files, self._tables, chunks, force=True, **kw)


def _open_created(files: LakeFiles, name: str) -> DeltaTable:
    """Table ``name``, which exists; a moment's retry when another shard's first pass is
    creating it right now (its log has no commit yet)."""
    for _ in range(50):
        if next(files.io.files(f"{name}/_delta_log", ".json"), None) is not None:
            break
        time.sleep(0.1)
    return open_table(files.table(name))


def _now() -> int:
    return time.time_ns() // 1000


def _delta_field(f: pa.Field):
    from deltalake import Field

    return Field.from_arrow(f.with_nullable(True))


def _stamped(name: str, tbl: pa.Table, app: str, chunk: int) -> pa.Table:
    """``tbl`` as stored: sorted by the table's ``sort``, plain types, hidden columns set.
    Sorted first: taking rows of a dictionary column moves indices, not strings."""
    order = sort_indices(tbl, TABLES[name].sort)
    if order is not None:
        tbl = tbl.take(order)
    schema = arrow_schema(name, plain=True)
    if tbl.schema != schema:
        tbl = tbl.select(schema.names).cast(schema)
    n = tbl.num_rows
    hidden = delta_schema(name)
    return tbl.append_column(hidden.field("_app"), pa.repeat(pa.scalar(app), n)) \
        .append_column(hidden.field("_chunk"), pa.repeat(pa.scalar(chunk, pa.int64()), n))


def compact(location: Any, *, grace_s: float | None = None) -> dict:
    """Compact the lake now (``runlake compact``; the caller holds the ingest lock).

    Returns ``{table: {files_before, files_after, rewritten, vacuumed, version}}``.
    """
    return LakeBackend(location, shards=ANY_SHARDS).compact(grace_s=grace_s)


def write_anomalies(location: Any, run_ids: list[str] | None, table: Any) -> None:
    """Replace the ``anomalies`` rows of ``run_ids`` (None: of every run) by ``table``'s
    rows, in one atomic Delta commit: readers see the old rows or the new ones."""
    lake = LakeFiles(_path(location))
    lake.check_format()
    path = lake.table("anomalies")
    data = table if isinstance(table, pa.Table) else pa.table(table)  # polars, pandas ...
    if run_ids is not None and not run_ids and not data.num_rows:
        return
    data = _stamped("anomalies", data, "runlake-anomalies", 0)
    predicate = None
    if run_ids is not None:
        ids = ", ".join("'" + r.replace("'", "''") + "'" for r in run_ids)
        predicate = f"run_id IN ({ids})" if ids else "false"
    dt = open_table(path)
    try:
        write_deltalake(dt, data, mode="overwrite", predicate=predicate,
                        writer_properties=writer("anomalies"))
    except DeltaError as exc:
        raise table_error(path, exc) from exc
