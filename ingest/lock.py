"""The single-ingest lock: one ``runlake ingest`` per storage root at a time.

DuckDB already allows one writing process per file, but two ingest processes could still
both read the same new bytes before either commits. An exclusive ``fcntl.flock`` on
``<root>/.ingest.lock`` makes the whole read-decode-commit cycle single-flight. The lock
dies with its process (SIGKILL included), so a crashed ingest never blocks the next one.

The lock file is opened with ``O_NOFOLLOW`` and must be a regular file with one link: a
symbolic link, hard link, FIFO or folder planted at ``.ingest.lock`` is refused with a
clear error instead of being followed (the pid written into the lock would otherwise
overwrite whatever the link points to).

Sharded ingest (``runlake ingest --shard I/N``) holds the lock *shared*: shards of one root
run at once (each shard's exclusivity is its lease in the lake,
:mod:`runlake.store._lake_shards`), while unsharded ingest and ``runlake compact``, which
hold it exclusively, wait for every shard and are waited for by them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from runlake.schemas.errors import RootError, StoreBusyError

__all__ = ["IngestLock"]


class IngestLock:
    """Context manager holding ``<root>/.ingest.lock`` exclusively.

    Args:
        root: the storage root (must exist).
        wait_s: how long to wait for another ingest to finish before giving up.

    Raises:
        StoreBusyError: another ingest process still holds the lock after ``wait_s``.
        RootError: ``.ingest.lock`` is a symbolic link, hard link or not a regular file.
    """

    def __init__(self, root: Path, wait_s: float = 3.0, *, shared: bool = False) -> None:
        self.path = Path(root) / ".ingest.lock"
        self.wait_s = wait_s
        self.shared = shared
        self._fd: int | None = None

    def __enter__(self) -> "IngestLock":
        fd = self._open()
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
                            | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                    os.close(fd)
                    who = f"pid {holder}" if holder.isdigit() else "sharded ingest processes"
                    what = ("an unsharded `runlake ingest` or `runlake compact`" if self.shared
                            else "another `runlake ingest`")
                    raise StoreBusyError(
                        f"{what} is running on {self.path.parent} ({self.path} is held by "
                        f"{who}); wait for it to finish, or stop it "
                        f"(an `ingest --watch` keeps the store up to date on its own)"
                    ) from None
                time.sleep(0.05)
        if self.shared:
            os.pwrite(fd, b"shards     ", 0)  # every shard writes the same bytes
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def _refuse(self, what: str) -> RootError:
        return RootError(
            f"refusing to use the ingest lock {self.path}: it is {what}; runlake writes its "
            f"pid into this file, so it must be a plain file of its own: remove it (ingest "
            f"creates it again)")

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                try:
                    target = f" (to {os.readlink(self.path)})"
                except OSError:
                    target = ""
                raise self._refuse(f"a symbolic link{target}") from None
            if exc.errno == errno.EISDIR:
                raise self._refuse("a folder") from None
            raise RootError(f"cannot open the ingest lock {self.path}: {exc.strerror or exc}"
                            ) from None
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "not a regular file (a FIFO, device or socket)"
        elif st.st_nlink > 1:
            problem = f"a hard link shared with {st.st_nlink - 1} other name(s)"
        if problem is not None:
            os.close(fd)
            raise self._refuse(problem)
        os.set_blocking(fd, True)
        return fd

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
