"""The single-ingest lock: one ``runlake ingest`` per storage root at a time.

DuckDB already allows one writing process per file, but two ingest processes could still
both read the same new bytes before either commits. An exclusive ``fcntl.flock`` on
``<root>/.ingest.lock`` makes the whole read-decode-commit cycle single-flight. The lock
dies with its process (SIGKILL included), so a crashed ingest never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from runlake.schemas.errors import StoreBusyError

__all__ = ["IngestLock"]


class IngestLock:
    """Context manager holding ``<root>/.ingest.lock`` exclusively.

    Args:
        root: the storage root (must exist).
        wait_s: how long to wait for another ingest to finish before giving up.

    Raises:
        StoreBusyError: another ingest process still holds the lock after ``wait_s``.
    """

    def __init__(self, root: Path, wait_s: float = 3.0) -> None:
        self.path = Path(root) / ".ingest.lock"
        self.wait_s = wait_s
        self._fd: int | None = None

    def __enter__(self) -> "IngestLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                    os.close(fd)
                    raise StoreBusyError(
                        f"another `runlake ingest` is running on {self.path.parent} (pid "
                        f"{holder} holds {self.path}); wait for it to finish, or stop it "
                        f"(an `ingest --watch` keeps the store up to date on its own)"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
