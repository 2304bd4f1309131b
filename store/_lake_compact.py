"""Compaction of a lake: fewer, sorted files, a checkpointed log, old files vacuumed.

Every chunk appends small files; reading many small files is slow, so compaction rewrites
them while readers keep reading (a Delta commit replaces files atomically; a reader's
snapshot keeps its old files until it closes):

* event tables and ``_commits``: consecutive small files of one app (in chunk order) are
  rewritten as one file, sorted by the table's ``Table.sort``, with ONE commit
  ``overwrite where _app = A AND _chunk BETWEEN lo AND hi``: the same rows, fewer files.
* state tables: per key the latest row with ``_chunk <= C-K`` plus every row of the last
  K chunks is kept, sorted, in one overwrite (see :mod:`runlake.store.lake` for why K).
* anomalies: delta-rs ``optimize.compact()``.

Sharded ingest (``apps``): each shard compacts only its own app's files (every append
holds one app's rows), state tables included (``overwrite where _app = A``), so shards
compacting and appending at once touch disjoint files; a conflict is retried.

Then a log checkpoint, ``cleanup_metadata`` and vacuum. Vacuum deletes only files that no
version still needed uses: versions named by live reader leases, versions that were
current less than :data:`GRACE_S` ago (a reader may have listed them and not yet written
its lease) and, for files no version references (a killed writer's), only ones older than
the grace. Compaction runs in the process holding the root's ingest lock, between chunks.
"""

from __future__ import annotations

import time

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError

from runlake.schemas.errors import StoreError
from runlake.schemas.objects import is_url
from runlake.store._lake_io import io_for
from runlake.store._lake_layout import (
    COMMITS, LakeFiles, delta_schema, kill_point, sort_indices, table_error, writer,
)
from runlake.store._lake_read import KEEP_CHUNKS, live_leases
from runlake.store._lake_shards import retry_conflicts
from runlake.store.spec import TABLES

__all__ = ["DUE_FILES", "GRACE_S", "TARGET_BYTES", "compact_lake", "due", "vacuum"]

DUE_FILES = 32
"""Small files in one table that make compaction due (checked after each pass)."""
TARGET_BYTES = 64 << 20
"""Compacted files grow to about this size; files under half of it count as small."""
GRACE_S = 120.0


def _adds(dt: DeltaTable) -> list[dict]:
    return pa.table(dt.get_add_actions(flatten=True)).to_pylist()


def _app_of(a: dict, name: str) -> str | None:
    """The one app whose rows file ``a`` holds (None: several, or no statistics)."""
    col = "app" if name == COMMITS else "_app"
    lo, hi = a.get(f"min.{col}"), a.get(f"max.{col}")
    return lo if lo == hi else None


def small_files(dt: DeltaTable, apps: set[str] | None = None, name: str = "") -> int:
    return sum(1 for a in _adds(dt) if a["size_bytes"] < TARGET_BYTES // 2
               and (apps is None or _app_of(a, name) in apps))


def due(tables: dict[str, DeltaTable], apps: set[str] | None = None) -> bool:
    """Whether any table has more than :data:`DUE_FILES` small files (of ``apps``)."""
    return any(small_files(dt, apps, name) > DUE_FILES for name, dt in tables.items())


def _sorted(tbl: pa.Table, sort: tuple[str, ...]) -> pa.Table:
    order = sort_indices(tbl, sort)
    return tbl if order is None else tbl.take(order)


def _groups(adds: list[dict], min_files: int) -> list[tuple[str, int, int, list[str]]]:
    """Runs of consecutive small files of one app: ``(app, lo, hi, paths)``."""
    adds = sorted(adds, key=lambda a: (a["min._chunk"], a["max._chunk"]))
    out, run, size = [], [], 0

    def close():
        if len(run) >= min_files:
            out.append((run[0]["min._app"], run[0]["min._chunk"], run[-1]["max._chunk"],
                        [a["path"] for a in run]))

    for a in adds:
        small = a["size_bytes"] < TARGET_BYTES // 2 and a["min._app"] == a["max._app"]
        if not small or (run and (a["min._app"] != run[0]["min._app"] or size >= TARGET_BYTES)):
            close()
            run, size = [], 0
        if small:
            run.append(a)
            size += a["size_bytes"]
    close()
    return out


def _compact_events(dt: DeltaTable, name: str, min_files: int,
                    apps: set[str] | None = None) -> int:
    sort = TABLES[name].sort if name in TABLES else ("app", "chunk")
    app_col, chunk_col = ("_app", "_chunk") if name != COMMITS else ("app", "chunk")
    adds = _adds(dt)
    if name == COMMITS:  # _commits carries its app and chunk as ordinary columns
        adds = [{**a, "min._app": a["min.app"], "max._app": a["max.app"],
                 "min._chunk": a["min.chunk"], "max._chunk": a["max.chunk"]} for a in adds]
    rewritten = 0
    root, io = dt.table_uri.rstrip("/"), io_for(dt.table_uri)  # a folder or a bucket
    for app, lo, hi, paths in _groups(adds, min_files):
        if apps is not None and app not in apps:
            continue
        located, fs = io.arrow([f"{root}/{p}" for p in paths])
        data = pa.concat_tables([pq.read_table(p, filesystem=fs) for p in located],
                                promote_options="default")
        data = _sorted(data, sort)
        app_q = app.replace("'", "''")
        retry_conflicts(dt, lambda: write_deltalake(
            dt, data, mode="overwrite", writer_properties=writer(name),
            predicate=f"{app_col} = '{app_q}' AND {chunk_col} >= {lo} AND {chunk_col} <= {hi}",
            target_file_size=TARGET_BYTES * 2))
        rewritten += len(paths)
    return rewritten


def _compact_state(dt: DeltaTable, name: str, chunks: dict[str, int],
                   apps: set[str] | None = None) -> int:
    files = dt.file_uris()
    only = ""
    if apps is not None:  # the files holding rows of these apps, and only their rows
        root = dt.table_uri.removeprefix("file://").rstrip("/")
        files = [f"{root}/{a['path']}" for a in _adds(dt)
                 if _app_of(a, name) in apps or _app_of(a, name) is None]
        only = " OR ".join(f"_app = '{a.replace(chr(39), chr(39) * 2)}'" for a in sorted(apps))
        chunks = {a: c for a, c in chunks.items() if a in apps}
    if len(files) < 2:
        return 0
    t = TABLES[name]
    key = ", ".join(f'"{k}"' for k in t.key)
    keep = " OR ".join(f"(_app = '{a.replace(chr(39), chr(39) * 2)}' AND _chunk > {c - KEEP_CHUNKS})"
                       for a, c in chunks.items()) or "false"
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        source = f"read_parquet([{listed}], union_by_name=true)"
        if is_url(dt.table_uri):  # DuckDB reads a bucket through Arrow (no httpfs needed)
            located, fs = io_for(dt.table_uri).arrow(files)
            con.register("_runlake_state", ds.dataset(
                located, schema=delta_schema(name), format="parquet", filesystem=fs))
            source = "_runlake_state"
        data = con.sql(
            f"SELECT * FROM {source} "
            f"WHERE {only or 'true'} QUALIFY ({keep}) OR row_number() OVER (PARTITION BY "
            f"{key} ORDER BY _chunk DESC) = 1").to_arrow_table()
    finally:
        con.close()
    data = _sorted(data.cast(delta_schema(name)), t.sort)

    def write():
        write_deltalake(dt, data, mode="overwrite", writer_properties=writer(name),
                        predicate=only or None, target_file_size=TARGET_BYTES * 2)

    if apps is None:  # the whole table from what was read: never again after a conflict
        write()  # (it would drop what the other writer committed); the next run redoes it
    else:  # only this app's rows, which only this process writes: the same data again
        retry_conflicts(dt, write)
    return len(files)


def vacuum(dt: DeltaTable, name: str, leases: dict[str, set[int]],
           grace_s: float = GRACE_S) -> list[str]:
    """Delete the files no needed version uses (see the module docstring); returns them."""
    now = time.time()
    keep = set(leases.get(name, ()))
    for entry in dt.history(100):
        v = entry.get("version")
        if v is not None and now * 1000 - entry.get("timestamp", 0) < grace_s * 1000:
            keep.add(max(0, int(v) - 1))  # the version it replaced was current until then
    keep.discard(dt.version())
    try:
        candidates = dt.vacuum(retention_hours=0, enforce_retention_duration=False,
                               dry_run=True, keep_versions=sorted(keep) or None)
    except DeltaError:
        return []  # a kept version's log is gone (cleaned up): keep everything this time
    root, io = dt.table_uri.rstrip("/"), io_for(dt.table_uri)  # a folder or a bucket
    removed = []
    for rel in candidates:
        mtime = io.file_mtime(f"{root}/{rel}")
        if mtime is None:
            continue  # gone already
        if now - mtime < grace_s:
            continue  # maybe a file a writer has not committed yet
        io.delete_file(f"{root}/{rel}")
        removed.append(rel)
    return removed


def compact_lake(lake: LakeFiles, tables: dict[str, DeltaTable], chunks: dict[str, int],
                 *, force: bool = False, grace_s: float = GRACE_S,
                 apps: set[str] | None = None) -> dict:
    """Compact every table that needs it (``force``: every table with 2+ small files),
    checkpoint, clean the log, vacuum. Returns a report by table. ``apps`` (a shard):
    rewrite only these apps' files, and leave ``anomalies`` (not ingest's) alone."""
    report: dict = {}
    leases = live_leases(lake)
    for name, dt in tables.items():
        before = len(dt.file_uris())
        try:
            if not force and small_files(dt, apps, name) <= DUE_FILES:
                rewritten = 0
            elif name == "anomalies" and apps is not None:
                rewritten = 0
            elif name == "anomalies":
                rewritten = int(dt.optimize.compact(writer_properties=writer(name))
                                .get("numFilesRemoved", 0))
            elif name in TABLES and TABLES[name].kind == "state":
                rewritten = _compact_state(dt, name, chunks, apps)
            else:
                rewritten = _compact_events(dt, name, 2 if force else 4, apps)
            kill_point(f"compact:{name}")
            if rewritten:
                dt.create_checkpoint()
                dt.cleanup_metadata()
            dt.update_incremental()  # files other shards committed meanwhile are not orphans
            removed = vacuum(dt, name, leases, grace_s)
            kill_point(f"vacuum:{name}")
        except DeltaError as exc:
            raise table_error(lake.table(name), exc) from exc
        except OSError as exc:
            raise StoreError(f"cannot compact the lake table {lake.table(name)}: {exc}; "
                             f"nothing was lost (run `runlake compact` again)") from exc
        report[name] = {"files_before": before, "files_after": len(dt.file_uris()),
                        "rewritten": rewritten, "vacuumed": len(removed),
                        "version": dt.version()}
    return report
