"""Opening the DuckDB store: read-only readers that retry, a short-lived writer, migrations.

DuckDB lets one process open a file for writing, and a writing process excludes readers
from other processes. runlake keeps that window short: ingest opens the store for writing
only while it commits, and every reader (CLI, analysis, dashboard) opens it read-only and
retries for a few seconds when a commit is under way, so no lock error reaches the user.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from runlake.ingest.ddl import MIGRATIONS
from runlake.schemas.errors import StoreBusyError, StoreError
from runlake.schemas.segments import default_db

__all__ = ["connect", "migrate", "read_store", "write_store"]

_LOCK_MARKERS = (
    "lock",
    "Could not set lock",
    "Conflicting lock",
    "being used by another",
    # the same process holds the file with the other mode (e.g. a watch thread committing)
    "different configuration",
)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return any(m in text for m in _LOCK_MARKERS)


def connect(
    db: str | Path | None = None,
    *,
    read_only: bool = True,
    retry_s: float = 10.0,
    root: str | Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the store, retrying while another process holds the write lock.

    Args:
        db: the store file; default ``<root>/runlake.duckdb``.
        read_only: readers must pass True (the default); ingest alone writes.
        retry_s: how long to keep retrying a lock conflict.
        root: the storage root used when ``db`` is None.

    Raises:
        StoreError: the file does not exist (read-only) or is not a DuckDB store.
        StoreBusyError: the lock was still held after ``retry_s``.
    """
    path = Path(db) if db is not None else default_db(root)
    if read_only and not path.exists():
        raise StoreError(
            f"no store at {path}: run `runlake ingest` first (or pass --root/--db, or set "
            f"RUNLAKE_DIR)"
        )
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + retry_s
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open store {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"store {path} stayed locked by another process for {retry_s:.0f}s "
                    f"(is a long `runlake ingest` committing?); try again"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply pending migrations in order, each in its own transaction.

    Returns:
        The versions applied now (empty when the store was up to date).
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)"
    )
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, description, statements in MIGRATIONS:
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in statements:
                con.execute(stmt)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)",
                [version, description],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


@contextmanager
def read_store(
    db: str | Path | None = None, *, root: str | Path | None = None, retry_s: float = 10.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, closed on exit. Use for one query or one page of work."""
    con = connect(db, read_only=True, retry_s=retry_s, root=root)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def write_store(
    db: str | Path | None = None, *, root: str | Path | None = None, retry_s: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A migrated read-write connection, closed on exit so readers get the file back."""
    con = connect(db, read_only=False, retry_s=retry_s, root=root)
    try:
        migrate(con)
        yield con
    finally:
        con.close()
