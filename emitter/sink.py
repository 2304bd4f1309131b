"""Where a writer's encoded events go: segment files on disk, or memory (tests).

:class:`FileSink` owns one writer directory ``<root>/<project>/<run_id>/<writer>/`` and
implements the durability story of :mod:`runlake.schemas.segments`: every ``write()``
appends exactly one complete zstd frame (content size and checksum included) to
``<seq>.jsonl.zst.open`` and fsyncs it by policy; at the size or age threshold, and at
``close()``, the segment is sealed by renaming it to ``<seq>.jsonl.zst`` and fsyncing the
directory. A frame is written with a single ``os.write`` of the whole frame, so a crash
leaves at most one torn frame at the end, which readers skip. A write that fails (disk
full, file size limit, I/O error) is cut back with ``ftruncate``, so the segment keeps whole
frames only and the next flush appends to it again once there is room.

Before each write the sink checks that its open segment is still the file at its path
(``lstat`` of every folder from the root down, versus ``fstat``): a directory removed,
renamed or replaced mid-run is detected and surfaces as an ``OSError`` (the writer counts
the drop and retries next flush with a new segment) instead of silently writing into an
unlinked file.

Given the storage ``root``, the sink never writes outside it: the project, run and writer
folders are created and opened one level at a time with ``O_NOFOLLOW``, so a folder that is
a symbolic link (to anywhere, even inside the root: ingest does not follow links either) is
refused with a clear ``OSError`` (at ``init()``: a ``RootError``; later: a counted drop).
Each segment is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a link or file planted at
its name is never followed or appended to: the sink moves on to the next free number.

:class:`MemorySink` keeps the event objects in a list; it backs
:func:`runlake.emitter.testing.capture`.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Protocol

from runlake.schemas.events import Event
from runlake.schemas.segments import OPEN_SUFFIX, frame_compressor, segment_name, segment_seq

__all__ = ["FSYNC_POLICIES", "FileSink", "MemorySink", "Sink", "active_capture"]

FSYNC_POLICIES = ("flush", "rotate", "never")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SEGMENT_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
                  | os.O_CLOEXEC)

_CAPTURES: list["MemorySink"] = []
"""Sinks of active :func:`runlake.emitter.testing.capture` blocks, innermost last."""


def active_capture() -> "MemorySink | None":
    """The sink of the innermost active ``testing.capture()`` block, if any."""
    return _CAPTURES[-1] if _CAPTURES else None


class Sink(Protocol):
    """What the writer thread needs from a destination."""

    def write(self, events: list[Event], data: bytes) -> None:
        """Store one flush: the events and their encoded JSON lines. Raises OSError."""

    def close(self) -> None:
        """Seal whatever is open. Raises OSError."""


class MemorySink:
    """Keeps every written event in ``events`` (a list that callers may share)."""

    def __init__(self, events: list[Event] | None = None) -> None:
        self.events: list[Event] = [] if events is None else events
        self.closed = False

    def write(self, events: list[Event], data: bytes) -> None:
        self.events.extend(events)

    def close(self) -> None:
        self.closed = True


class FileSink:
    """Append-only zstd segments in one writer directory (see the module docstring).

    Args:
        directory: the writer folder, ``<root>/<project>/<run_id>/<writer>``.
        root: the storage root; when given, ``directory`` must lie under it and no folder
            between them may be a symbolic link. Without it, ``directory`` itself is used as
            given (links included) and only the segment files are protected.
        fsync, rotate_bytes, rotate_seconds: see :func:`runlake.init`.
    """

    def __init__(
        self,
        directory: Path,
        *,
        root: Path | None = None,
        fsync: str = "flush",
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float = 3600.0,
        clock=time.monotonic,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        self.dir = Path(directory)
        self.root = self.dir if root is None else Path(root)
        self._parts = self.dir.relative_to(self.root).parts  # ValueError: not under the root
        self.fsync = fsync
        self.rotate_bytes = int(rotate_bytes)
        self.rotate_seconds = float(rotate_seconds)
        self._clock = clock
        self._cctx = frame_compressor()  # the one frame format (schemas.segments)
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._next_seq = self._first_free_seq()
        self.sealed: list[Path] = []

    def _first_free_seq(self) -> int:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        seqs = [s for s in map(segment_seq, names) if s is not None]
        return max(seqs) + 1 if seqs else 0

    @property
    def path(self) -> Path | None:
        """The open segment, if any."""
        return self._path

    def open(self) -> None:
        """Create the directory and the first open segment now (init validates the setup).

        Raises:
            OSError: the directory or file cannot be created.
        """
        if self._fd is None:
            self._open()

    def _dir_fd(self, create: bool) -> int:
        """The writer folder, opened from the root one level at a time without links.

        Raises:
            OSError: a folder on the way is a symbolic link (or not a folder), or cannot be
                created.
        """
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        rel = self.root
        try:
            for part in self._parts:
                rel = rel / part
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise OSError(exc.errno, _refusal(rel)) from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self) -> None:
        dfd = self._dir_fd(create=True)
        try:
            for _ in range(1000):
                name = segment_name(self._next_seq, sealed=False)
                if _exists(name[: -len(OPEN_SUFFIX)], dfd):
                    self._next_seq += 1  # a sealed segment (or something planted) has it
                    continue
                try:
                    fd = os.open(name, _SEGMENT_FLAGS, 0o644, dir_fd=dfd)
                except FileExistsError:
                    self._next_seq += 1  # planted at the name (a link?): never followed
                    continue
                self._next_seq += 1
                break
            else:
                raise FileExistsError(errno.EEXIST, f"no free segment name in {self.dir}")
            st = os.fstat(fd)
            self._fd, self._path, self._ino = fd, self.dir / name, (st.st_dev, st.st_ino)
            self._size = st.st_size
            self._opened_at = self._clock()
            if self.fsync != "never":
                os.fsync(dfd)
        finally:
            os.close(dfd)

    def _still_ours(self) -> bool:
        """The open segment is still reachable at its path, through real folders only."""
        path = self.root
        try:
            for part in self._parts:
                path = path / part
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return False
            st = os.lstat(self._path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ino

    def _abandon(self) -> None:
        """Forget an open segment that is no longer reachable at its path."""
        fd, self._fd, self._path = self._fd, None, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor is gone either way; nothing else to release

    def _undo(self, size: int) -> None:
        """After a failed write (disk full, I/O error): cut the segment back to ``size``.

        A partial frame would otherwise sit between good frames. Truncating frees space, so
        it works on a full disk; when it fails too, the segment is abandoned (its torn tail
        is skipped by readers) and the next write starts a new one.
        """
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            self._abandon()

    def write(self, events: list[Event], data: bytes) -> None:
        """Append ``data`` as one zstd frame; rotate when the segment is big or old.

        Raises:
            OSError: the directory or file cannot be created or written.
        """
        if not data:
            return
        if self._fd is not None and not self._still_ours():
            self._abandon()
            raise FileNotFoundError(f"segment {self._path} vanished or was replaced mid-run")
        if self._fd is None:
            self._open()
        frame = self._cctx.compress(data)
        try:
            written = os.write(self._fd, frame)
            while written < len(frame):  # short writes happen on some filesystems
                written += os.write(self._fd, memoryview(frame)[written:])
            if self.fsync == "flush":
                os.fsync(self._fd)
        except OSError:
            self._undo(self._size)
            raise
        self._size += len(frame)
        if self._size >= self.rotate_bytes or self._clock() - self._opened_at >= self.rotate_seconds:
            self.seal()

    def seal(self) -> Path | None:
        """Close and rename the open segment to its sealed name; fsync the directory.

        Returns:
            The sealed path, or None when nothing was open.

        Raises:
            OSError: the rename or the fsync failed.
        """
        if self._fd is None:
            return None
        fd, path = self._fd, self._path
        self._fd = self._path = None
        try:
            if self.fsync != "never":
                os.fsync(fd)
        finally:
            os.close(fd)
        sealed = path.with_name(path.name[: -len(OPEN_SUFFIX)])
        dfd = self._dir_fd(create=False)
        try:
            os.rename(path.name, sealed.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            if self.fsync != "never":
                os.fsync(dfd)
        finally:
            os.close(dfd)
        self.sealed.append(sealed)
        return sealed

    def close(self) -> None:
        self.seal()


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _refusal(path: Path) -> str:
    try:
        what = f"a symbolic link (to {os.readlink(path)})"
    except OSError:
        what = "not a folder"
    return (f"refusing to write through {path}: it is {what}, not a folder inside the storage "
            f"root (runlake writes, and ingest reads, only real folders under the root); "
            f"remove it, or pass root= pointing at the real location")
