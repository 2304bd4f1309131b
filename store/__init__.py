"""The store: where ingest writes and every reader reads, as a DuckDB file or a Delta lake.

:func:`locate` decides which store a root uses (:mod:`runlake.store.location`); the
functions here open it whatever its kind: :func:`read_store` for one query or one page of
work, :func:`connect` for a notebook (a snapshot that never blocks ingest),
:func:`attach_read_only` for the SQL console's private instance, :func:`open_backend` for
ingest. A DuckDB file is served by :mod:`runlake.store.duck`, a lake by
:mod:`runlake.store.lake`, imported only when a lake is opened (so the DuckDB path never
needs ``deltalake``). Either way a reader gets a DuckDB connection with the same tables and
views (:mod:`runlake.store.spec`), so every query runs unchanged on both. The tables' spec,
the migrations and the chunk ingest commits load on first use (PEP 562).
"""

from __future__ import annotations

import typing as _typing
from contextlib import contextmanager as _contextmanager
from pathlib import Path as _Path

from runlake._lazy import lazy_exports as _lazy_exports
from runlake.schemas.errors import StoreError as _StoreError
from runlake.store.location import StoreLocation, locate

if _typing.TYPE_CHECKING:
    from typing import Iterator

    import duckdb

    from runlake.store.backend import Backend
    from runlake.store.migrations import LATEST, migrate
    from runlake.store.order import in_ingest_order
    from runlake.store.spec import TABLES, VIEWS

__all__ = [
    "Backend",
    "LATEST",
    "StoreLocation",
    "TABLES",
    "VIEWS",
    "attach_read_only",
    "connect",
    "in_ingest_order",
    "locate",
    "migrate",
    "open_backend",
    "read_store",
    "signature",
    "snapshot",
]

_HOME = {
    "Backend": "runlake.store.backend",
    "LATEST": "runlake.store.migrations",
    "TABLES": "runlake.store.spec",
    "in_ingest_order": "runlake.store.order",
    "VIEWS": "runlake.store.spec",
    "migrate": "runlake.store.migrations",
}

__getattr__, __dir__ = _lazy_exports(__name__, _HOME, globals())

_Where = _typing.Union[str, _Path, None]


def _lake():
    """The lake backend module; a clear error when its package is missing."""
    try:
        from runlake.store import lake
    except ModuleNotFoundError as exc:
        if exc.name == "deltalake":
            raise _StoreError("this store is a Delta lake, which needs the `deltalake` "
                              "package: pip install 'runlake[lake]'") from None
        raise
    return lake


def _existing(location: StoreLocation) -> StoreLocation:
    if not location.exists():
        flag = " --lake" if location.kind == "lake" else ""
        raise _StoreError(f"no store at {location.path}: run `runlake ingest{flag}` first (or "
                          f"pass --root/--db, or set RUNLAKE_DIR)")
    return location


def _find(db: _Where, root: _Where) -> StoreLocation:
    return _existing(db if isinstance(db, StoreLocation) else locate(root, db))


@_contextmanager
def read_store(db: _Where | StoreLocation = None, *, root: _Where = None,
               retry_s: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the store, closed on exit: one query or one page of work.

    Args:
        db: the store (a ``.duckdb`` file, a lake folder or a :class:`StoreLocation`);
            default the root's (:func:`locate`).
        root: the storage root used when ``db`` is None.
        retry_s: how long a DuckDB file's reader waits out a commit in progress.

    Raises:
        StoreError: there is no store, or it cannot be read.
        StoreBusyError: a DuckDB file stayed locked past ``retry_s``.
    """
    location = _find(db, root)
    if location.kind == "duckdb":
        from runlake.store import duck

        with duck.read_store(location.path, retry_s=retry_s) as con:
            yield con
        return
    con = _lake().connect(location)
    try:
        yield con
    finally:
        con.close()


def snapshot(db: _Where | StoreLocation = None, *, root: _Where = None, retry_s: float = 10.0,
             directory: _Where = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection over one consistent state of the store, to hold as long as
    you like: a private copy of a DuckDB file (:func:`runlake.store.duck.snapshot`), or a
    lake's views over its current files (a lake reader never blocks ingest)."""
    location = _find(db, root)
    if location.kind == "duckdb":
        from runlake.store import duck

        return duck.snapshot(location.path, retry_s=retry_s, directory=directory)
    return _lake().connect(location)


def connect(db: _Where | StoreLocation = None, *, root: _Where = None,
            live: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection for a notebook: :func:`snapshot` by default; with
    ``live=True`` a DuckDB file is opened itself (current, but it blocks ingest's commits
    while open). A lake connection is always a snapshot that never blocks anyone."""
    location = _find(db, root)
    if live and location.kind == "duckdb":
        from runlake.store import duck

        return duck.connect(location.path, read_only=True)
    return snapshot(location)


def attach_read_only(con: duckdb.DuckDBPyConnection, db: _Where | StoreLocation, alias: str,
                     *, retry_s: float = 10.0, root: _Where = None) -> _Path:
    """Make the store readable as the catalog ``alias`` of a private DuckDB instance
    (the SQL console's, whose settings must not reach other connections). A DuckDB file is
    ``ATTACH``ed read-only; a lake gets an in-memory catalog ``alias`` holding its views.
    Returns the store's path."""
    location = _find(db, root)
    if location.kind == "duckdb":
        from runlake.store import duck

        return duck.attach_read_only(con, location.path, alias, retry_s=retry_s)
    lake = _lake()
    name = '"' + alias.replace('"', '""') + '"'
    con.execute(f"ATTACH ':memory:' AS {name}")
    con.execute(f"USE {name}")
    lake.attach_views(con, location)  # sandboxed: readable after external access is off
    return location.path


def signature(db: _Where | StoreLocation = None, *, root: _Where = None) -> tuple:
    """A cheap value (a few ``stat`` calls, nothing opened) that changes whenever data is
    committed to the store, for pollers such as the dashboard: ``(size, mtime_ns)`` (None
    where missing) of a DuckDB file and its write-ahead log, or of the lake's commit log
    and its anomalies' log (a lake makes data visible by its ``_commits`` row, written last
    per chunk; ``detect`` replaces anomalies without one). The first item is None when
    there is no store."""
    import os

    location = db if isinstance(db, StoreLocation) else locate(root, db)
    from runlake.schemas.objects import is_url

    if location.kind == "lake" and is_url(location.path):
        from runlake.store._lake_layout import COMMITS, LakeFiles  # a bucket: list the logs

        io = LakeFiles(location.path).io
        return tuple(max(io.files(f"{name}/_delta_log", ".json"), default=None)
                     for name in (COMMITS, "anomalies"))
    if location.kind == "duckdb":
        paths = [location.path, _Path(f"{location.path}.wal")]
    else:
        from runlake.store._lake_layout import COMMITS

        paths = [location.path / name / "_delta_log" for name in (COMMITS, "anomalies")]
    sig: list = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            sig.append(None)
        else:
            sig.append((st.st_size, st.st_mtime_ns))
    return tuple(sig)


def open_backend(location: StoreLocation) -> Backend:
    """The backend ingest writes ``location`` through (the store need not exist yet)."""
    if location.kind == "duckdb":
        from runlake.store.duck import DuckBackend

        return DuckBackend(location)
    return _lake().LakeBackend(location)
