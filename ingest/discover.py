"""Finding segment files under a storage root, and opening them without leaving it.

The layout is fixed by the contract (:mod:`runlake.schemas.segments`):
``<root>/<project>/<run_id>/<writer>/<seq>.jsonl.zst[.open]``. Discovery only lists and
``lstat``s entries; it never opens them. Each segment is identified by its ledger key (the
*sealed* path relative to the root), so an open segment and the same segment after the
writer sealed it by rename are one and the same entry.

Root hygiene: ingest reads only regular files that really lie inside the root. Symbolic
links are never followed (a link to a secret file or to ``/dev/zero``, a linked project
folder), and a FIFO, socket, device or folder named like a segment is never opened (a FIFO
would block the pass forever). Such entries are returned as :class:`Refused` so that the
pass reports each one once, without reading any of its bytes. :func:`open_segment` opens a
segment by walking down from the root with ``O_NOFOLLOW`` at every level and checks the
opened descriptor is a regular file, so an entry swapped for a link or a FIFO after
discovery is refused too (:class:`UnsafeEntry`).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runlake.schemas.blobs import BLOBS_DIR
from runlake.schemas.errors import RootError
from runlake.schemas.segments import OPEN_SUFFIX, segment_seq

__all__ = [
    "Refused",
    "SegmentFile",
    "UnsafeEntry",
    "describe_entry",
    "discover",
    "open_segment",
    "read_at",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOT_FOLLOWED = "ingest reads only regular files and folders that lie inside the root"


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One segment as seen on disk during discovery."""

    where: str  # its path as listed (a Path per file would cost a 1,000-run listing ~20 ms)
    key: str
    project: str
    run_id: str
    writer: str
    seq: int
    sealed: bool
    size: int

    @property
    def path(self) -> Path:
        """The segment's path as discovery listed it."""
        return Path(self.where)

    @property
    def sealed_path(self) -> Path:
        """Where the segment lives once sealed (itself when already sealed)."""
        p = self.where
        return Path(p[: -len(OPEN_SUFFIX)] if p.endswith(OPEN_SUFFIX) else p)


@dataclass(frozen=True, slots=True)
class Refused:
    """An entry in the layout's place that ingest does not take (a link, a FIFO...)."""

    key: str  # path relative to the root ('/'-joined; a segment's sealed name)
    project: str
    run_id: str
    writer: str
    reason: str


class UnsafeEntry(Exception):
    """A segment (or a folder above it) is not a regular file/folder inside the root."""


def describe_entry(path: str | os.PathLike, mode: int | None = None) -> str:
    """What a non-regular entry is, in words, from its ``lstat`` (a link names its target)."""
    try:
        mode = os.lstat(path).st_mode if mode is None else mode
    except OSError:
        return "gone"
    if stat.S_ISLNK(mode):
        try:
            return f"a symbolic link (to {os.readlink(path)})"
        except OSError:
            return "a symbolic link"
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return what
    return "not a regular file"


def _linked_dir(entry: os.DirEntry) -> bool:
    """A symbolic link to a folder: it would have been a project/run/writer folder."""
    return entry.is_symlink() and os.path.isdir(entry.path)


def _listing(path: str, rel: str, parts: tuple[str, ...], refused: list[Refused]
             ) -> list[os.DirEntry]:
    """The visible entries of a folder; one that cannot be listed is refused, not fatal."""
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []  # removed while we walked: nothing to read there
    except OSError as exc:
        if not rel:
            raise RootError(f"cannot list the storage root {path}: {exc.strerror or exc}; "
                            f"check its permissions") from None
        refused.append(Refused(rel, *(*parts, "", "", "")[:3],
                               f"cannot list {rel}: {exc.strerror or exc}; nothing in it is "
                               f"read (fix its permissions)"))
        return []


def _subdirs(path: str, rel: str, parts: tuple[str, ...], refused: list[Refused],
             skip: str | None = None) -> list[os.DirEntry]:
    entries = _listing(path, rel.rstrip("/"), parts, refused)
    out = []
    for e in entries:
        if e.name == skip:
            continue
        if e.is_dir(follow_symlinks=False):
            out.append(e)
        elif _linked_dir(e):
            key = f"{rel}{e.name}"
            names = (*parts, e.name, "", "")[:3]
            refused.append(Refused(key, *names, f"{key} is {describe_entry(e.path)}; not "
                                                 f"followed ({_NOT_FOLLOWED})"))
    return out


def discover(root: Path, owns: Callable[[str], bool] | None = None
             ) -> tuple[list[SegmentFile], list[Refused]]:
    """List every segment under ``root``, sorted by (project, run, writer, seq).

    ``owns`` (sharded ingest, :meth:`runlake.ingest.shard.Shard.owns`): only run folders
    whose run id it accepts are entered, so another shard's writer folders and segments
    are never listed nor ``lstat``-ed; a refused project-level entry (run id ``""``) is
    kept only where it accepts ``""``.

    When both ``N.jsonl.zst.open`` and ``N.jsonl.zst`` are listed (a rename racing the
    walk), only the sealed one is kept.

    Args:
        root: the storage root.

    Returns:
        ``(segments, refused)``: the regular segment files found (empty when the root holds
        none), and the entries in the layout's place that are not taken: symbolic links to
        folders at the project/run/writer levels, and anything named like a segment that is
        not a regular file (link, FIFO, socket, device, folder).
    """
    found: dict[str, SegmentFile] = {}
    refused: list[Refused] = []
    for project in _subdirs(str(root), "", (), refused):
        for run in _subdirs(project.path, f"{project.name}/", (project.name,), refused):
            if owns is not None and not owns(run.name):
                continue
            for writer in _subdirs(run.path, f"{project.name}/{run.name}/",
                                   (project.name, run.name), refused, skip=BLOBS_DIR):
                rel = f"{project.name}/{run.name}/{writer.name}"
                names = (project.name, run.name, writer.name)
                for entry in _listing(writer.path, rel, names, refused):
                    seq = segment_seq(entry.name)
                    if seq is None:
                        continue
                    name = entry.name
                    sealed = not name.endswith(OPEN_SUFFIX)
                    # segment_key() from the parts in hand (its pathlib costs ~50 us a file)
                    key = f"{rel}/{name if sealed else name[:-len(OPEN_SUFFIX)]}"
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # sealed (renamed) between listing and stat
                    if not stat.S_ISREG(st.st_mode):
                        refused.append(Refused(
                            key, project.name, run.name, writer.name,
                            f"{rel}/{entry.name} is {describe_entry(entry.path, st.st_mode)}, "
                            f"not a segment "
                            f"file; not read ({_NOT_FOLLOWED})"))
                        continue
                    if key in found and found[key].sealed and not sealed:
                        continue
                    found[key] = SegmentFile(entry.path, key, project.name, run.name,
                                             writer.name, seq, sealed, st.st_size)
    segments = sorted(found.values(), key=lambda s: (s.project, s.run_id, s.writer, s.seq))
    return segments, [r for r in refused if r.key not in found
                      and (owns is None or owns(r.run_id))]


def _open_dir(name: str, dir_fd: int, root: Path, rel: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeEntry(f"{rel} is no longer a folder inside the root (now "
                              f"{describe_entry(root / rel)}); not followed") from None
        raise


def open_segment(root: Path, seg: SegmentFile) -> tuple[int, bool, int] | None:
    """Open ``seg`` for reading without following any link below ``root``.

    Tries the name discovery saw, then the sealed name (an open segment sealed since).

    Returns:
        ``(fd, sealed, size)`` for a regular file (the caller closes ``fd``), or None when
        the segment (or a folder above it) vanished.

    Raises:
        UnsafeEntry: the segment or a folder above it is now a link, FIFO, device...
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root may be a link
    try:
        rel = ""
        for part in (seg.project, seg.run_id, seg.writer):
            rel += part
            nxt = _open_dir(part, fd, root, rel)
            if nxt is None:
                return None
            os.close(fd)
            fd = nxt
            rel += "/"
        name = os.path.basename(seg.where)
        sealed_name = name[:-len(OPEN_SUFFIX)] if name.endswith(OPEN_SUFFIX) else name
        for name, sealed in ((name, seg.sealed), (sealed_name, True)):
            try:
                sfd = os.open(name, _FILE_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue  # an open segment sealed (renamed) since discovery: try its new name
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafeEntry(f"{rel}{name} is {describe_entry(root / rel / name)}; "
                                      f"not followed") from None
                raise
            st = os.fstat(sfd)
            if not stat.S_ISREG(st.st_mode):
                os.close(sfd)
                what = describe_entry(root / rel / name, st.st_mode)
                raise UnsafeEntry(f"{rel}{name} is {what}, not a segment file; not read")
            os.set_blocking(sfd, True)
            return sfd, sealed, st.st_size
        return None
    finally:
        os.close(fd)


def read_at(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes of ``fd`` from ``offset`` (fewer only at the end of the file)."""
    parts = []
    while n > 0:
        part = os.pread(fd, n, offset)
        if not part:
            break  # truncated since fstat: the window simply ends here
        parts.append(part)
        n -= len(part)
        offset += len(part)
    return b"".join(parts)
