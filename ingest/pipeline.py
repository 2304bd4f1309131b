"""The public entry point: one ingest pass over a storage root, under the ingest lock.

Before the pass the root's store is chosen (:func:`runlake.store.locate`) and, where asked,
changed: ``kind="lake"`` on a root whose store is a DuckDB file converts it into a lake
(:mod:`runlake.store.convert`, losing nothing) and records the choice in the root's
setting; ``rebuild=True`` rebuilds the chosen store from the segments beside the old one and
swaps it in (:mod:`runlake.store.rebuild`). Both happen under the ingest lock, so no other
ingest (or ``runlake compact``) runs meanwhile. What was done to the store is listed in
``IngestReport.notes``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from runlake.ingest.lock import IngestLock
from runlake.ingest.loader import check_root, run_pass
from runlake.ingest.report import IngestReport
from runlake.ingest.shard import Shard, parse_shard, sharded_backend
from runlake.schemas.errors import ConfigError
from runlake.schemas.objects import is_url
from runlake.schemas.segments import STORE_FILE
from runlake.store import StoreLocation, locate, open_backend, read_store
from runlake.store.backend import Backend
from runlake.store.location import LAKE_DIR, read_setting, write_setting

__all__ = ["held_store", "ingest", "rebuild_store", "select_store"]


def _write_derived(lake: Path, table: str, rows) -> None:
    """Replace a derived table's rows in the lake being built (``anomalies``)."""
    from runlake.store.lake import write_anomalies

    assert table == "anomalies", table  # the spec's one derived table
    write_anomalies(StoreLocation("lake", lake, None), None, rows)


def _duck_reader(path: Path):
    from runlake.store.duck import read_store as duck_read_store

    return duck_read_store(path)


def select_store(root: Path, db: str | Path | None, kind: str | None) -> tuple[StoreLocation,
                                                                               list[str]]:
    """The store a pass writes, after converting the root's DuckDB file when a lake is
    asked for (``kind``, or ``$RUNLAKE_STORE``). Returns it and what was done, in words.

    The caller holds the ingest lock. ``kind="lake"`` converts even where the root's
    setting says duckdb (it is how a root moves to the lake); the setting then says lake.

    Raises:
        StoreError: the choices disagree (:func:`runlake.store.locate`), or the root holds
            a lake and a DuckDB file that was not converted into it.
    """
    from runlake.store import convert

    notes: list[str] = []
    if is_url(root):  # a bucket's store is its lake: nothing to convert, no setting file
        return locate(root, db, kind), notes
    if kind == "lake" and db is None:
        location = StoreLocation("lake", root / LAKE_DIR, root)
    else:
        location = locate(root, db, kind)
    if location.kind != "lake" or db is not None:
        return location, notes
    duck = StoreLocation("duckdb", root / STORE_FILE, root)
    setting = read_setting(root)
    if duck.exists() and not location.exists():
        done = convert.convert(duck, location, open_backend, _duck_reader, _write_derived,
                               write_setting)
        total = sum(done.rows.values())
        notes.append(f"converted {duck.path} into the lake {done.lake} ({total:,} rows, every "
                     f"table); the DuckDB file is kept as {done.old}: delete it once you no "
                     f"longer need it")
    elif duck.exists() and setting != "lake":
        old = convert.finish(duck, location, write_setting)  # a conversion killed near its end
        notes.append(f"finished converting {duck.path} into {location.path}; the DuckDB file "
                     f"is kept as {old}")
    elif setting != "lake" and kind == "lake":
        write_setting(root, "lake")
    return location, notes


def rebuild_store(root: Path, location: StoreLocation, progress: bool,
                  stale_after: float | None) -> IngestReport:
    """Rebuild ``location`` from the root's segments (the caller holds the ingest lock);
    the report's notes say where the old store is kept and how to recompute anomalies."""
    from runlake.store.rebuild import REFRESH_ANOMALIES, rebuild

    def count_anomalies(loc: StoreLocation) -> int:
        with read_store(loc) as con:
            return con.execute("SELECT count(*) FROM anomalies").fetchall()[0][0]

    done = rebuild(location, open_backend,
                   lambda backend: run_pass(root, backend, progress=progress,
                                            stale_after=stale_after),
                   count_anomalies)
    report = done.result
    kept = f"; the previous store is kept as {done.old}" if done.old else ""
    report.notes.append(f"rebuilt {done.store} from the segments{kept}")
    if done.anomalies_dropped:
        report.notes.append(f"{done.anomalies_dropped:,} anomalies rows are derived, not in "
                            f"segments: recompute them with `{REFRESH_ANOMALIES}`")
    return report


@contextmanager
def held_store(root: Path | str, db: str | Path | None, kind: str | None, rebuild: bool,
               wait_s: float | None = None
               ) -> Iterator[tuple[StoreLocation, list[str], Callable[[], Backend]]]:
    """Unsharded ingest's guard, then its store: ``(location, notes, backend factory)``.

    A local root: its ``.ingest.lock`` (:class:`IngestLock`). An ``s3://`` root has no lock
    file; the guard lives with its store: the lake's lease of the ingest app
    (``_runlake/shards/runlake-ingest.lease``, :class:`runlake.store._lake_shards.ShardLease`,
    whose check fences every write), or for a local ``--db`` DuckDB file the lock of that
    file's folder.
    """
    if not is_url(root):
        with IngestLock(root):
            location, notes = select_store(root, db, kind)
            yield location, notes, lambda: open_backend(location)
        return
    if rebuild:
        raise ConfigError(f"--rebuild is not supported for an object-storage root ({root}) "
                          f"yet: rebuild into a local lake with `runlake ingest --rebuild --db "
                          f"DIR/runlake-lake --root {root}`, or ingest without --rebuild")
    location, notes = select_store(root, db, kind)
    if location.kind == "duckdb":
        with IngestLock(Path(location.path).parent):
            yield location, notes, lambda: open_backend(location)
        return
    from runlake.store._lake_layout import APP
    from runlake.store._lake_shards import ShardLease
    from runlake.store.lake import LakeBackend

    with ShardLease(location.path, APP, wait_s=wait_s) as lease:
        yield location, notes, lambda: LakeBackend(location, fence=lease.check)


def _sharding(shard: str | Shard, kind: str | None, rebuild: bool) -> Shard:
    """``shard`` parsed, refusing what sharded ingest cannot do."""
    shard = shard if isinstance(shard, Shard) else parse_shard(shard)
    if kind == "duckdb":
        raise ConfigError("--shard writes a lake (a DuckDB file takes one writer): drop "
                          "--duckdb, or ingest without --shard")
    if rebuild:
        raise ConfigError("--rebuild cannot be sharded: stop the shards and run `runlake "
                          "ingest --rebuild` once, unsharded")
    return shard


def ingest(
    root: str | Path | None = None,
    db: str | Path | None = None,
    *,
    kind: str | None = None,
    rebuild: bool = False,
    progress: bool = False,
    stale_after: float | None = None,
    shard: str | Shard | None = None,
    wait_s: float | None = None,
) -> IngestReport:
    """Load every new complete frame under ``root`` into the store, exactly once.

    Safe to run at any moment and any number of times: bytes already loaded are never
    loaded again, a frame still being written waits for the next run, damaged bytes are
    quarantined (see ``IngestReport.problems``) and never stop the rest.

    Args:
        root: the storage root (default ``$RUNLAKE_DIR`` or ``./runlake-data``).
        db: the store: a ``.duckdb`` file or a lake folder (default: the root's, see
            :func:`runlake.store.locate`); created if missing.
        kind: ``"lake"`` or ``"duckdb"`` (default: ``$RUNLAKE_STORE``, else the root's
            setting, else what exists). ``"lake"`` on a root with a DuckDB store converts
            it into a lake first, losing nothing, and records the choice in the root.
        rebuild: rebuild the store from the segments (beside the old one, then swapped in
            atomically; the old one is kept as ``<name>.old``). Derived ``anomalies`` rows
            are not in segments: ``runlake anomalies --refresh`` recomputes them.
        progress: draw a progress line on stderr during long passes.
        stale_after: seconds of silence after which a writer without run_end counts as
            crashed (default per writer: 3 x its heartbeat interval + 5 s).
        shard: ``"I/N"`` (or a :class:`~runlake.ingest.shard.Shard`): load only the runs
            of shard I of N into the root's lake, while the other shards' processes do the
            same (:mod:`runlake.ingest.shard`; docs/ingest.md#sharded-ingest).
        wait_s: with ``shard``: how long to wait for another process holding the same
            shard (default 3 s on a local lake, the lease TTL + 5 s on object storage).

    Returns:
        What the pass did: segments, frames, events, rows per table, problems, seconds,
        and ``notes`` on a conversion or rebuild.

    Raises:
        RootError: ``root`` is not a directory.
        StoreBusyError: another ingest is running on this root, or the store stayed locked.
        StoreError: the store cannot be opened or written, or the root's stores disagree.

    Example:
        >>> report = ingest("runlake-data")  # doctest: +SKIP
        >>> print(report.summary())     # doctest: +SKIP
    """
    path = check_root(root)
    if shard is not None:
        shard = _sharding(shard, kind, rebuild)
        with sharded_backend(path, db, shard, wait_s) as backend:
            return run_pass(path, backend, progress=progress, stale_after=stale_after,
                            owns=shard.owns)
    with held_store(path, db, kind, rebuild, wait_s) as (location, notes, backend):
        if rebuild:
            report = rebuild_store(path, location, progress, stale_after)
        else:
            report = run_pass(path, backend(), progress=progress, stale_after=stale_after)
        report.notes[:0] = notes
        return report
