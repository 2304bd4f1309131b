"""The public entry point: one ingest pass over a storage root, under the ingest lock."""

from __future__ import annotations

from pathlib import Path

from runlake.ingest.lock import IngestLock
from runlake.ingest.loader import check_root, run_pass, store_path
from runlake.ingest.report import IngestReport

__all__ = ["ingest"]


def ingest(
    root: str | Path | None = None,
    db: str | Path | None = None,
    *,
    progress: bool = False,
    stale_after: float | None = None,
) -> IngestReport:
    """Load every new complete frame under ``root`` into the store, exactly once.

    Safe to run at any moment and any number of times: bytes already loaded are never
    loaded again, a frame still being written waits for the next run, damaged bytes are
    quarantined (see ``IngestReport.problems``) and never stop the rest.

    Args:
        root: the storage root (default ``$RUNLAKE_DIR`` or ``./runlake-data``).
        db: the store file (default ``<root>/runlake.duckdb``); created if missing.
        progress: draw a progress line on stderr during long passes.
        stale_after: seconds of silence after which a writer without run_end counts as
            crashed (default per writer: 3 x its heartbeat interval + 5 s).

    Returns:
        What the pass did: segments, frames, events, rows per table, problems, seconds.

    Raises:
        RootError: ``root`` is not a directory.
        StoreBusyError: another ingest is running on this root, or the store stayed locked.
        StoreError: the store cannot be opened or written.

    Example:
        >>> report = ingest("runlake-data")  # doctest: +SKIP
        >>> print(report.summary())     # doctest: +SKIP
    """
    path = check_root(root)
    with IngestLock(path):
        return run_pass(path, store_path(path, db), progress=progress, stale_after=stale_after)
