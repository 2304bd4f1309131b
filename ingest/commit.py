"""Committing the chunks of a pass in order, on a background thread.

A chunk (:class:`runlake.store.chunk.Chunk`) is everything decoded since the last commit;
the backend writes it all-or-nothing (:meth:`runlake.store.backend.Backend.commit`), so the
ledger offsets never run ahead of (or behind) the rows, frame keys and quarantine rows they
account for. :class:`Committer` runs those commits one after another on a second thread
while the next chunk is decoded (see :mod:`runlake.ingest.loader`).
"""

from __future__ import annotations

import queue
import threading
import time

from runlake.store.backend import Backend
from runlake.store.chunk import Chunk

__all__ = ["Committer"]


class Committer:
    """Commits chunks in order on a background thread while the next chunk is decoded."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.commits = 0
        self.commit_seconds = 0.0
        self.wait_seconds = 0.0
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="runlake-ingest-commit",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            chunk = self._queue.get()
            try:
                if chunk is None:
                    return
                if self._error is None:
                    try:
                        start = time.perf_counter()
                        self.backend.commit(chunk)
                        self.commit_seconds += time.perf_counter() - start
                        self.commits += 1
                    except BaseException as exc:  # re-raised on the ingest thread
                        self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, chunk: Chunk) -> None:
        self._raise()
        start = time.perf_counter()
        self._queue.put(chunk)
        self.wait_seconds += time.perf_counter() - start

    def wait_idle(self) -> None:
        """Return once every submitted chunk is committed (the store is closed again)."""
        start = time.perf_counter()
        self._queue.join()
        self.wait_seconds += time.perf_counter() - start
        self._raise()

    def close(self) -> None:
        start = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self.wait_seconds += time.perf_counter() - start
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
