"""runlake: a local-first metrics pipeline for ML training.

``import runlake`` stays light: it imports the emitter only (msgspec, zstandard). The
store (duckdb), analysis (polars) and dashboard (streamlit) load on first use.

Example::

    import runlake

    with runlake.init(project="mnist", config={"lr": 3e-4}) as run:
        for step in range(1000):
            run.log({"train/loss": loss, "lr": lr})
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


def connect(db: str | _Path | None = None, *, root: str | _Path | None = None):
    """A read-only DuckDB connection to the store (imports duckdb on first use).

    Args:
        db: the store file (default ``<root>/runlake.duckdb``).
        root: the storage root (default ``$RUNLAKE_DIR``, else ``./runlake-data``).

    Raises:
        StoreError: there is no store yet (run ``runlake ingest``).
    """
    from runlake.ingest.store import connect as _connect

    return _connect(db, read_only=True, root=root)
