"""runlake: a local-first metrics pipeline for ML training.

``import runlake`` stays light: it imports the emitter only (msgspec, zstandard). The
store (duckdb), analysis (polars) and dashboard (streamlit) load on first use.

Example::

    import runlake

    with runlake.init(project="mnist", config={"lr": 3e-4}) as run:
        for step in range(1000):
            run.log({"train/loss": loss, "lr": lr})

    runlake.query("SELECT key, max(value) FROM metrics GROUP BY key")  # a polars DataFrame
    con = runlake.connect()  # DuckDB, over a snapshot: never blocks a running ingest
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import Any as _Any, Mapping as _Mapping

from runlake.emitter import lifecycle as _lifecycle
from runlake.emitter.initializer import init
from runlake.emitter.run import Run
from runlake.schemas.errors import (
    ConfigError,
    EventValueError,
    QueryError,
    RootError,
    RunlakeError,
    RunlakeWarning,
    RunNotFoundError,
    RunStateError,
    StoreBusyError,
    StoreError,
)

__all__ = [
    "ConfigError",
    "EventValueError",
    "QueryError",
    "RootError",
    "Run",
    "RunNotFoundError",
    "RunStateError",
    "RunlakeError",
    "RunlakeWarning",
    "StoreBusyError",
    "StoreError",
    "alert",
    "connect",
    "current_run",
    "finish",
    "init",
    "log",
    "log_checkpoint",
    "log_data",
    "query",
]

__version__ = "0.1.0"


def current_run() -> Run | None:
    """The most recently started run of this process that is still live, or None."""
    return _lifecycle.current()


def _current(what: str) -> Run:
    run = _lifecycle.current()
    if run is None:
        raise RunStateError(f"runlake.{what}() needs a live run: call runlake.init() first")
    return run


def log(metrics: _Mapping[str, _Any], step: int | None = None, *, epoch: int | None = None) -> None:
    """``current_run().log(...)``. Raises RunStateError when no run is live."""
    _current("log").log(metrics, step, epoch=epoch)


def log_data(items: _Any, **kwargs: _Any) -> None:
    """``current_run().log_data(...)``. Raises RunStateError when no run is live."""
    _current("log_data").log_data(items, **kwargs)


def log_checkpoint(uri: _Any, **kwargs: _Any) -> None:
    """``current_run().log_checkpoint(...)``. Raises RunStateError when no run is live."""
    _current("log_checkpoint").log_checkpoint(uri, **kwargs)


def alert(message: str, **kwargs: _Any) -> None:
    """``current_run().alert(...)``. Raises RunStateError when no run is live."""
    _current("alert").alert(message, **kwargs)


def finish(status: str = "finished", **kwargs: _Any) -> None:
    """Finish the current run (no-op when none is live)."""
    run = _lifecycle.current()
    if run is not None:
        run.finish(status, **kwargs)


def connect(db: str | _Path | None = None, *, root: str | _Path | None = None,
            live: bool = False):
    """A read-only DuckDB connection for a notebook or script, that never stalls ingest.

    By default the connection is over a private snapshot of the store: a consistent copy
    taken in a moment (ingest waits at most that long), deleted when the connection closes
    or the process ends. Hold it as long as you like; reconnect to see newer data. The copy
    takes time and temp space in proportion to the store (``docs/performance.md``).
    ``live=True`` opens the store itself instead: always current, but while it is open
    ingest cannot commit (DuckDB's file lock), so close it soon. For one query at a time
    on live data, :func:`query` opens and closes the store around each query.

    Args:
        db: the store file (default ``<root>/runlake.duckdb``).
        root: the storage root (default ``$RUNLAKE_DIR``, else ``./runlake-data``).
        live: open the live file instead of a snapshot.

    Raises:
        StoreError: there is no store yet (run ``runlake ingest``), or no temp space.
        StoreBusyError: a writer held the store past the retry window.

    Example::

        con = runlake.connect()
        con.sql("SELECT key, max(value) FROM metrics GROUP BY key").pl()
    """
    from runlake import store as _store

    return _store.connect(db, root=root, live=live)


def query(sql: str, params: _Any = None, *, db: str | _Path | None = None,
          root: str | _Path | None = None):
    """Run one query on the live store and return a ``polars.DataFrame``.

    The store is opened read-only for this query and closed right after, so nothing holds
    it between queries (ingest commits in between). Imports duckdb and polars on first use.

    Args:
        sql: one statement that returns rows; ``?`` or ``$name`` placeholders bind ``params``.
        params: a sequence (for ``?``) or a mapping (for ``$name``).
        db, root: the store, as for :func:`connect`.

    Raises:
        QueryError: the query failed (one line saying why; the DuckDB error is chained).
        StoreError, StoreBusyError: as for :func:`connect`.

    Example::

        runlake.query("SELECT step, value FROM metrics WHERE key = ?", ["train/loss"])
    """
    import duckdb as _duckdb

    from runlake.analysis._common import frame as _frame
    from runlake.store import read_store as _read_store

    with _read_store(db, root=root) as con:
        try:
            return _frame(con, sql, params)
        except (_duckdb.Error, ValueError) as exc:
            raise QueryError(" ".join(str(exc).split())) from exc
