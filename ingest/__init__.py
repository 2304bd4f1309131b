"""Ingest: segments -> DuckDB store, exactly once.

:func:`ingest` runs one pass (only bytes not yet loaded, whole frames only, data and ledger
in one transaction); :func:`watch` repeats it. :mod:`runlake.ingest.store` opens the
store (readers retry while a commit is under way); :mod:`runlake.ingest.ddl` holds its
schema. Imports duckdb and pyarrow: never imported by ``import runlake``.
"""

from runlake.ingest.pipeline import ingest
from runlake.ingest.report import IngestReport
from runlake.ingest.store import connect, migrate, read_store, write_store
from runlake.ingest.watch import watch

__all__ = [
    "IngestReport",
    "connect",
    "ingest",
    "migrate",
    "read_store",
    "watch",
    "write_store",
]
