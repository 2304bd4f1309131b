"""Ingest: segments -> the store, exactly once.

:func:`ingest` runs one pass (only bytes not yet loaded, whole frames only, data and ledger
committed together); :func:`watch` repeats it. The store itself (opening it, its schema,
its migrations, the DuckDB file and the lake backends) is :mod:`runlake.store`; ingest
writes through its :class:`~runlake.store.backend.Backend`. Names load on first use (PEP
562), so a reader that only needs the report does not pay for pyarrow and numpy. Never
imported by ``import runlake``.
"""

from __future__ import annotations

import typing as _typing

from runlake._lazy import lazy_exports as _lazy_exports

__all__ = [
    "IngestReport",
    "ingest",
    "watch",
]

_HOME = {
    "IngestReport": "runlake.ingest.report",
    "ingest": "runlake.ingest.pipeline",
    "watch": "runlake.ingest.watch",
}

if _typing.TYPE_CHECKING:
    from runlake.ingest.pipeline import ingest
    from runlake.ingest.report import IngestReport
    from runlake.ingest.watch import watch


__getattr__, __dir__ = _lazy_exports(__name__, _HOME, globals())
