"""Reading a lake: one consistent snapshot as DuckDB views, and the leases that keep it.

A snapshot is, per table, one Delta version and its files, plus ``C(app)``: the last
complete chunk of each ingest app (from ``_commits``). Views show only rows with
``_chunk <= C(app)``, so half a chunk is never seen; state tables show the latest row per
key. While a connection is open its lease file (``_runlake/readers/``) names the table
versions it reads, and vacuum keeps their files (:mod:`runlake.store._lake_compact`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable

from runlake.schemas.errors import StoreError
from runlake.schemas.objects import is_url
from runlake.schemas.segments import process_alive
from runlake.store._lake_layout import (
    COMMITS, LakeFiles, _REBUILD, delta_schema, open_table, spec_table,
)
from runlake.store.order import ORDERED
from runlake.store.spec import TABLES, VIEWS

__all__ = ["KEEP_CHUNKS", "Snapshot", "create_views", "live_leases", "ordered_sql",
           "read_snapshot"]

KEEP_CHUNKS = 100
"""K: state-table compaction keeps every row of the last K chunks, so a reader that read
C before the compaction still finds, per key, its latest row (see runlake.store.lake)."""
_ATTEMPTS = 8
_HOST = socket.gethostname()
_LEASE_MAX_AGE_S = 24 * 3600.0  # a lease of another host older than this is ignored


@dataclass
class Snapshot:
    """Per table: its version and files; per app: the last complete chunk."""

    lake: Path | str
    chunks: dict[str, int]
    versions: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    lease: tuple[LakeFiles, str] | None = None
    store: LakeFiles | None = None  # how its files are read (a bucket's filesystem)

    def release(self) -> None:
        if self.lease is not None:
            files, key = self.lease
            self.lease = None
            try:
                files.remove_lease(key)
            except (OSError, StoreError):
                pass  # an unreachable bucket: the lease expires (see live_leases)


_CACHE: dict[str, DeltaTable] = {}
_CACHE_LOCK = threading.Lock()


def _table(path: Path | str, lake_id: str | None) -> DeltaTable:
    """The table at ``path`` brought up to date; loaded once per process and lake (a reader
    in a loop, the dashboard, only reads the log's new commits). Call under ``_CACHE_LOCK``.
    Keyed by the lake's id (``lake.json``, new whenever a lake is made, e.g. by ``ingest
    --rebuild``) and the log folder's inode: a lake made again under the same path is
    another table, never newer commits of the cached one."""
    try:  # a bucket has no inodes: its lake id alone names it
        ino = 0 if is_url(path) else os.stat(Path(path) / "_delta_log").st_ino
    except OSError:
        return open_table(path)
    if lake_id is None:
        return open_table(path)
    key = f"{path}\0{lake_id}\0{ino}"
    dt = _CACHE.get(key)
    if dt is None:
        dt = _CACHE[key] = open_table(path)
        return dt
    try:
        dt.update_incremental()
    except Exception:  # noqa: BLE001 - the log was damaged or replaced: load it afresh
        del _CACHE[key]
        dt = _CACHE[key] = open_table(path)
    return dt


def _chunks_of(lake: LakeFiles, path: Path | str, files: list[str]) -> dict[str, int]:
    if not files:
        return {}
    try:
        paths, fs = lake.io.arrow(files)
        tbl = pq.ParquetDataset(paths, filesystem=fs).read(columns=["app", "chunk"])
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"the lake table {path}: a data file its log references is missing "
                         f"or damaged ({' '.join(str(exc).split())[:200]}); {_REBUILD}") from exc
    top = tbl.group_by("app").aggregate([("chunk", "max")]).to_pydict()
    return {a: int(c) for a, c in zip(top["app"], top["chunk_max"])}


def committed_chunks(lake: LakeFiles, lake_id: str | None = None) -> tuple[dict[str, int], int]:
    """``{app: last complete chunk}`` and the ``_commits`` version they were read at."""
    path = lake.table(COMMITS)
    with _CACHE_LOCK:
        dt = _table(path, lake_id)
        files, version = dt.file_uris(), dt.version()
    return _chunks_of(lake, path, files), version


def _write_lease(lake: LakeFiles, versions: dict[str, int]) -> tuple[LakeFiles, str]:
    name = f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    return lake, lake.write_lease(name, json.dumps(
        {"host": _HOST, "pid": os.getpid(), "at": time.time(), "versions": versions}))


def live_leases(lake: LakeFiles) -> dict[str, set[int]]:
    """``{table: versions}`` that open readers use; leases of dead processes are removed."""
    out: dict[str, set[int]] = {}
    now = time.time()
    for key, text in lake.leases():
        try:
            lease = json.loads(text or "")
        except ValueError:
            continue  # being written, or just removed
        local = lease.get("host") == _HOST
        if (local and not process_alive(int(lease.get("pid", 0)))) or (
                not local and now - float(lease.get("at", 0)) > _LEASE_MAX_AGE_S):
            lake.remove_lease(key)
            continue
        for name, version in lease.get("versions", {}).items():
            out.setdefault(name, set()).add(int(version))
    return out


def read_snapshot(location_path: Path | str, *, lease: bool = True) -> Snapshot:
    """One consistent snapshot of the lake at ``location_path``.

    C is read first, then every table; C is read again after and the snapshot retried
    if it moved by K-1 chunks or more (state-table compaction may have dropped rows the
    first C still needs), or if a listed file is gone (a vacuum raced the lease).
    """
    lake = LakeFiles(location_path)
    if not lake.exists():
        raise StoreError(f"no lake at {lake.path} (no {lake.meta}): run `runlake ingest "
                         f"--lake` first")
    lake_id = lake.check_format()
    lake.check_folders()
    missing: str | None = None
    for _ in range(_ATTEMPTS):
        chunks, _v = committed_chunks(lake, lake_id)
        snap = Snapshot(lake.path, chunks, store=lake)
        with _CACHE_LOCK:
            for name in TABLES:
                dt = _table(lake.table(name), lake_id)
                snap.versions[name] = dt.version()
                snap.files[name] = dt.file_uris()
        after, _v = committed_chunks(lake, lake_id)
        if any(after.get(a, 0) - c >= KEEP_CHUNKS - 1 for a, c in chunks.items()):
            continue
        if lease:
            snap.lease = _write_lease(lake, snap.versions)
        missing = None if lake.is_url else next(  # a bucket: vacuum keeps leased versions
            (f"{name}: {f}" for name, files in snap.files.items() for f in files
             if not os.path.exists(f)), None)
        if missing is None:
            return snap
        snap.release()
        time.sleep(0.05)
    if missing is not None:
        raise StoreError(f"the lake table {lake.table(missing.split(':')[0])}: a data file "
                         f"its log references is missing ({missing.split(': ', 1)[1]}); "
                         f"{_REBUILD}")
    raise StoreError(f"the lake {lake.path} changed too fast to read a consistent snapshot "
                     f"({_ATTEMPTS} tries); try again")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns(name: str) -> str:
    t = TABLES[name]
    return ", ".join(f"CAST({_q(c.name)} AS JSON) AS {_q(c.name)}" if c.duck == "JSON"
                     else _q(c.name) for c in t.columns)


def _empty(name: str) -> str:
    t = TABLES[name]
    cols = ", ".join(f"CAST(NULL AS {c.duck}) AS {_q(c.name)}" for c in t.columns)
    return f"SELECT {cols} WHERE false"


def _typed_empty(name: str) -> str:
    """No row, every stored column typed as on disk (JSON is text there)."""
    cols = [f"CAST(NULL AS {'VARCHAR' if c.duck == 'JSON' else c.duck}) AS {_q(c.name)}"
            for c in TABLES[name].columns]
    return f"SELECT {', '.join(cols)}, NULL::VARCHAR AS _app, NULL::BIGINT AS _chunk WHERE false"


def _visible(snap: Snapshot) -> str:
    if not snap.chunks:
        return "false"
    return " OR ".join(f"(_app = {_lit(a)} AND _chunk <= {c})" for a, c in
                       sorted(snap.chunks.items()))


def view_sql(name: str, snap: Snapshot, source: str | None) -> str:
    """The SELECT of view ``name`` over ``source`` (a FROM item), or a typed empty one."""
    if source is None:
        return _empty(name)
    t = spec_table(name)
    if t.kind == "derived":
        return f"SELECT {_columns(name)} FROM {source}"
    sql = f"SELECT {_columns(name)} FROM {source} WHERE {_visible(snap)}"
    if t.kind == "state":
        key = ", ".join(_q(k) for k in t.key)
        sql += f" QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _chunk DESC) = 1"
    return sql


def ordered_sql(name: str, snap: Snapshot, source: str | None) -> str:
    """The SELECT of :data:`runlake.store.order.ORDERED` for event table ``name``: its
    ``ingest_order`` is the chunk that committed the row."""
    if source is None:
        return f"SELECT NULL::BIGINT AS ingest_order, * FROM ({_empty(name)})"
    return (f"SELECT _chunk AS ingest_order, {_columns(name)} FROM {source} "
            f"WHERE {_visible(snap)}")


def create_views(con: duckdb.DuckDBPyConnection, snap: Snapshot, *, sandboxed: bool) -> None:
    """One view per spec table (and the spec's views) in ``con``'s current schema.

    ``sandboxed``: each table is registered as an Arrow dataset, so the views keep working
    after ``SET enable_external_access = false`` (the SQL console's guard), which refuses
    ``read_parquet``; otherwise the views read the files with DuckDB's own Parquet reader.
    A lake on object storage is always read through Arrow datasets over a pyarrow S3
    filesystem (DuckDB would need its httpfs extension, which may not be installable).
    """
    url = is_url(snap.lake)
    for name in TABLES:
        files = snap.files[name]
        source = None
        if files and (sandboxed or url):
            reg = f"_runlake_lake_{name}"
            paths, fs = (snap.store or LakeFiles(snap.lake)).io.arrow(files)
            con.register(reg, ds.dataset(paths, schema=delta_schema(name), format="parquet",
                                         filesystem=fs))
            source = _q(reg)
        elif files:  # BY NAME with a typed empty row: files older than a column read NULL
            source = (f"(SELECT * FROM read_parquet([{', '.join(_lit(f) for f in files)}], "
                      f"union_by_name=true) UNION ALL BY NAME {_typed_empty(name)})")
        con.execute(f"CREATE OR REPLACE VIEW {_q(name)} AS {view_sql(name, snap, source)}")
        if spec_table(name).kind == "event":
            con.execute(f"CREATE OR REPLACE VIEW {_q(ORDERED.format(name))} AS "
                        f"{ordered_sql(name, snap, source)}")
    for name, (_doc, select) in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {_q(name)} AS {select}")


def bind_release(con: duckdb.DuckDBPyConnection, snap: Snapshot) -> None:
    """Remove the snapshot's lease when ``con`` is garbage-collected (or the process ends;
    a dead process's lease is ignored anyway)."""
    weakref.finalize(con, snap.release)
