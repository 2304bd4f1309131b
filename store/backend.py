"""What ingest needs from a store backend: the DuckDB file or the lake.

Ingest never touches a backend's files itself: it reads its state (ledger, writers and
runs, frame keys) through :meth:`Backend.reader`, a DuckDB connection whose tables and
views are the ones :mod:`runlake.store.spec` declares, and writes through
:meth:`Backend.commit`, all-or-nothing per chunk. Readers (CLI, analysis, dashboard) get
the same kind of connection from :func:`runlake.store.read_store`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import duckdb

    from runlake.store.chunk import Chunk
    from runlake.store.location import StoreLocation

__all__ = ["Backend"]


class Backend(Protocol):
    """One store, opened for ingest (the process holding the root's ingest lock)."""

    location: StoreLocation

    def prepare(self) -> None:
        """Create the store if missing, migrate it, and finish or undo a commit that an
        earlier process left half done; afterwards :meth:`reader` sees a consistent store."""

    def reader(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A short-lived read-only connection to the committed state."""

    def commit(self, chunk: Chunk) -> None:
        """Write ``chunk`` all-or-nothing. Raises StoreError (nothing of it committed)."""

    def maintain(self) -> None:
        """Housekeeping between passes (the lake compacts and vacuums when due)."""
