"""Continuous ingest: a pass every ``interval`` seconds until stopped.

The ingest lock is held for the whole watch, so a second ingest (or ``runlake compact``)
on the same root fails fast with a clear message instead of racing. The store is chosen,
converted or rebuilt once, as by :func:`runlake.ingest.ingest`, and its backend is kept for
the whole watch. Passes start every ``interval`` (default 1 s) and each commits what it
found, so new data is in the store at most one ``interval`` plus one pass after it was
flushed (measured on a lake: about 1.5 s at worst); between passes the backend's
housekeeping runs (``run_pass`` ends with :meth:`Backend.maintain`: on a lake, compaction
of small files, log checkpoints and vacuum when due), never blocking readers. Between
passes a DuckDB file is closed, so readers (``runlake sql``, the dashboard) open it freely;
a pass that has nothing new and no status to change does not open it for writing at all.

A store held by another process (a notebook keeping a live connection, a long query) never
ends the watch: the pass that could not commit is retried every ``interval`` (nothing of
it was committed, so nothing is lost or loaded twice), the holder is reported once (again
only if another process takes its place), and one line says when the store is free again.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from runlake.ingest.loader import check_root, run_pass
from runlake.ingest.pipeline import _sharding, held_store, rebuild_store
from runlake.ingest.shard import Shard, sharded_backend
from runlake.ingest.report import IngestReport
from runlake.schemas.errors import StoreBusyError

__all__ = ["watch"]

log = logging.getLogger("runlake.ingest")

MIN_GAP = 0.05
"""Seconds left between two passes however long the first took (a DuckDB file's readers
get the file between commits)."""


class _BusyReport:
    """Says once per holder that the store is busy, and once that it is free again."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.said: str | None = None

    def busy(self, exc: StoreBusyError) -> None:
        if self.since is None:
            self.since = time.monotonic()
        if str(exc) != self.said:
            self.said = str(exc)
            log.warning("runlake ingest --watch: waiting, nothing lost: %s; retrying every "
                        "pass until the store is free", exc)

    def free(self) -> None:
        if self.since is not None:
            log.warning("runlake ingest --watch: the store is free again after %.0fs; "
                        "ingest continues", time.monotonic() - self.since)
        self.since = self.said = None


def watch(
    root: str | Path | None = None,
    db: str | Path | None = None,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    on_pass: Callable[[IngestReport], None] | None = None,
    *,
    kind: str | None = None,
    rebuild: bool = False,
    progress: bool = False,
    stale_after: float | None = None,
    shard: str | Shard | None = None,
    wait_s: float | None = None,
) -> int:
    """Ingest repeatedly until ``stop`` is set (or KeyboardInterrupt).

    Args:
        root, db, kind, progress, stale_after: as for :func:`runlake.ingest.ingest`.
        rebuild: the first pass rebuilds the store from the segments (as ``ingest``'s).
        interval: seconds from the start of one pass to the start of the next (a pass
            that takes longer is followed at once, after :data:`MIN_GAP`), so new data
            is committed at least every ``interval`` while passes are quick.
        stop: set it (from another thread) to end the watch after the current pass.
        on_pass: called with each pass's report.
        shard, wait_s: sharded ingest, as for :func:`runlake.ingest.ingest` (the shard's
            lease is held for the whole watch).

    Returns:
        The number of passes run (passes that found the store busy do not count).

    Raises:
        RootError, StoreBusyError (another ingest holds the root), StoreError.
    """
    path = check_root(root)
    stop = stop or threading.Event()
    passes = 0
    busy = _BusyReport()
    if shard is not None:
        shard = _sharding(shard, kind, rebuild)
        with sharded_backend(path, db, shard, wait_s) as backend:
            while not stop.is_set():
                started = time.monotonic()
                report = run_pass(path, backend, progress=progress, stale_after=stale_after,
                                  owns=shard.owns)
                passes += 1
                if on_pass is not None:
                    on_pass(report)
                stop.wait(max(MIN_GAP, interval - (time.monotonic() - started)))
        return passes
    with held_store(path, db, kind, rebuild, wait_s) as (location, notes, make_backend):
        backend = None
        while not stop.is_set():
            started = time.monotonic()
            try:
                if rebuild:
                    report = rebuild_store(path, location, progress, stale_after)
                    rebuild = False
                else:
                    backend = backend or make_backend()
                    report = run_pass(path, backend, progress=progress,
                                      stale_after=stale_after)
            except StoreBusyError as exc:  # another process held the store: try again
                busy.busy(exc)
            else:
                busy.free()
                passes += 1
                report.notes[:0], notes = notes, []
                if on_pass is not None:
                    on_pass(report)
            stop.wait(max(MIN_GAP, interval - (time.monotonic() - started)))
    return passes
