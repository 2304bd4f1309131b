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
(``stat`` versus ``fstat``): a directory removed, renamed or replaced mid-run is detected
and surfaces as an ``OSError`` (the writer counts the drop and retries next flush with a
new segment) instead of silently writing into an unlinked file.

:class:`MemorySink` keeps the event objects in a list; it backs
:func:`runlake.emitter.testing.capture`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

import zstandard

from runlake.schemas.events import Event
from runlake.schemas.segments import segment_name, segment_seq

__all__ = ["FSYNC_POLICIES", "FileSink", "MemorySink", "Sink", "active_capture", "make_compressor"]

FSYNC_POLICIES = ("flush", "rotate", "never")

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


def make_compressor() -> zstandard.ZstdCompressor:
    """zstd level 3 with min_match 7: ~11 bytes per random float64 point, ~1.7 µs/event."""
    params = zstandard.ZstdCompressionParameters.from_level(
        3, min_match=7, write_checksum=1, write_content_size=1
    )
    return zstandard.ZstdCompressor(compression_params=params)


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
    """Append-only zstd segments in one writer directory (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: str = "flush",
        rotate_bytes: int = 64 << 20,
        rotate_seconds: float = 3600.0,
        clock=time.monotonic,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
        self.dir = Path(directory)
        self.fsync = fsync
        self.rotate_bytes = int(rotate_bytes)
        self.rotate_seconds = float(rotate_seconds)
        self._clock = clock
        self._cctx = make_compressor()
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

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / segment_name(self._next_seq, sealed=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        self._fd, self._path, self._ino = fd, path, (st.st_dev, st.st_ino)
        self._size = st.st_size
        self._opened_at = self._clock()
        self._next_seq += 1
        if self.fsync != "never":
            _fsync_dir(self.dir)

    def _still_ours(self) -> bool:
        try:
            st = os.stat(self._path)
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
        sealed = path.with_name(path.name[: -len(".open")])
        os.rename(path, sealed)
        if self.fsync != "never":
            _fsync_dir(self.dir)
        self.sealed.append(sealed)
        return sealed

    def close(self) -> None:
        self.seal()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
