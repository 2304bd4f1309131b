"""Ingest: segments -> DuckDB store, exactly once.

:func:`ingest` runs one pass (only bytes not yet loaded, whole frames only, data and ledger
in one transaction); :func:`watch` repeats it. :mod:`runlake.ingest.store` opens the
store (readers retry while a commit is under way); :mod:`runlake.ingest.ddl` holds its
schema. Names load on first use (PEP 562), so a reader that only needs the store does not
pay for pyarrow and numpy. Never imported by ``import runlake``.
"""

from __future__ import annotations

import typing as _typing

from runlake._lazy import lazy_exports as _lazy_exports

__all__ = [
    "IngestReport",
    "connect",
    "ingest",
    "migrate",
    "read_store",
    "watch",
    "write_store",
]

_HOME = {
    "IngestReport": "runlake.ingest.report",
    "connect": "runlake.ingest.store",
    "ingest": "runlake.ingest.pipeline",
    "migrate": "runlake.ingest.store",
    "read_store": "runlake.ingest.store",
    "watch": "runlake.ingest.watch",
    "write_store": "runlake.ingest.store",
}

if _typing.TYPE_CHECKING:
    from runlake.ingest.pipeline import ingest
    from runlake.ingest.report import IngestReport
    from runlake.ingest.store import connect, migrate, read_store, write_store
    from runlake.ingest.watch import watch


__getattr__, __dir__ = _lazy_exports(__name__, _HOME, globals())
