"""The local spool of an object-storage root: where it is, who owns what, how it is pushed.

A run whose root is ``s3://bucket/prefix`` writes exactly what it would write to a local
root, into a *spool* folder on the node (``$RUNLAKE_SPOOL``, else
``~/.cache/runlake/spool/<bucket>/<prefix>``): ``<project>/<run_id>/<writer>/<seq>.jsonl.zst``.
Sealed spool files are uploaded once, with ``put_new``, to the same relative key under the
prefix, and deleted once the upload is confirmed; a run's media blobs
(``<project>/<run_id>/blobs/..``, :mod:`runlake.schemas.blobs`) the same way, always before
the segments that name them (:func:`upload_blobs`) (:mod:`runlake.emitter.upload` does it
while the process lives; :func:`push` does it for what a dead process left).

Ownership. Every writer folder of a spool holds ``writer.lock``, ``flock``-ed by the live
process that writes there (it records its pid and host for messages), taken *before* the
first segment exists. The kernel drops the lock when the process dies, even by SIGKILL,
so :func:`push` can tell a dead writer's folder (lock free, or no lock file) from a live
one (lock held: skipped, its open segment is never touched). Forked children close their
copy of the lock (``os.register_at_fork``), so a DataLoader worker never keeps a dead
parent's folder looking alive.

Leftovers. A dead writer's ``.open`` segment holds whole frames and at most one torn frame
at its end (a frame is written with one ``write``). :func:`seal_leftover` cuts the torn
tail (it holds no event a reader could decode) and seals the rest by rename, the state
the writer itself would have reached at ``finish()``; then it is uploaded like any other.

Confirmation. An upload is confirmed when ``put_new`` wrote the object, or when an object
of the same size already has the key (the previous attempt's response was lost, or two
uploaders raced): only then is the spool file deleted. A different size under the same
key is a conflict: the spool file is kept and reported, never overwritten in the bucket.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from runlake.schemas.blobs import BLOBS_DIR, is_sha256
from runlake.schemas.errors import RootError
from runlake.schemas.objects import ObjectStore, split_url
from runlake.schemas.segments import (
    OPEN_SUFFIX, iter_frame_spans, parse_writer_id, segment_name, segment_seq,
)

__all__ = [
    "LOCK_NAME",
    "MARKER_NAME",
    "PushReport",
    "WriterLock",
    "claim_spool",
    "default_spool",
    "push",
    "seal_leftover",
    "sealed_segments",
    "spool_url",
    "upload_blobs",
    "upload_segment",
]

LOCK_NAME = "writer.lock"
"""The lock file of a spool writer folder (never uploaded: not a segment name)."""
MARKER_NAME = ".runlake-spool.json"
"""At the top of a spool: the URL its segments go to (read by ``runlake push``)."""

_HELD: set[int] = set()
"""Lock descriptors held by this process; closed in forked children (hook installed with
the first lock, never at import)."""
_FORK_HOOK: list[bool] = []


def _close_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass  # already closed: the child holds nothing either way
    _HELD.clear()


def default_spool(url: str) -> Path:
    """The spool folder of ``url``: ``$RUNLAKE_SPOOL``, else under the user's cache."""
    given = os.environ.get("RUNLAKE_SPOOL")
    if given:
        return Path(given).expanduser().absolute()
    bucket, prefix = split_url(url)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return (cache / "runlake" / "spool" / bucket / prefix).absolute()


def spool_url(spool: Path) -> str | None:
    """The URL recorded in a spool's marker, or None when it has none (or it is damaged)."""
    try:
        url = json.loads((spool / MARKER_NAME).read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def claim_spool(spool: Path, url: str) -> None:
    """Record ``url`` as the spool's destination; refuse a spool that belongs to another.

    Raises:
        RootError: the spool records another URL (two buckets must not share a spool).
    """
    known = spool_url(spool)
    if known is None:
        tmp = spool / f"{MARKER_NAME}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({"url": url}) + "\n")
            os.replace(tmp, spool / MARKER_NAME)
        except OSError as exc:
            raise RootError(f"cannot write {spool / MARKER_NAME}: {exc.strerror or exc}; set "
                            f"RUNLAKE_SPOOL to a writable folder") from None
    elif known.rstrip("/") != url.rstrip("/"):
        raise RootError(f"the spool {spool} holds segments for {known}, not {url}; set "
                        f"RUNLAKE_SPOOL to another folder (or run `runlake push --spool "
                        f"{spool}` first)")


class WriterLock:
    """``writer.lock`` of one writer folder, ``flock``-ed by its owner (module docstring)."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory, self.path, self._fd = directory, directory / LOCK_NAME, fd

    @classmethod
    def take(cls, directory: Path, *, wait: bool = True) -> "WriterLock | None":
        """Create the folder if needed and lock it; None when ``wait`` is False and a live
        process holds it. The lock file is re-checked after locking, so a folder removed
        by a pusher meanwhile is re-created, never locked through a deleted file.

        Raises:
            OSError: the folder or the lock file cannot be created.
        """
        for _ in range(100):
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / LOCK_NAME
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue  # the folder went away between mkdir and open: make it again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    return None
                raise
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            if not _FORK_HOOK and hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_close_in_child)
                _FORK_HOOK.append(True)
            _HELD.add(fd)
            return cls(directory, fd)
        raise OSError(errno.EAGAIN, f"cannot lock {directory / LOCK_NAME}: it keeps vanishing")

    def release(self, *, remove: bool) -> bool:
        """Unlock; with ``remove``, delete the lock file and the folder when nothing else is
        left in it (then its empty run and project folders too). True when removed."""
        removed = False
        try:
            if remove and set(os.listdir(self.directory)) <= {LOCK_NAME}:
                os.unlink(self.path)
                os.rmdir(self.directory)
                removed = True
                for parent in (self.directory.parent, self.directory.parent.parent):
                    os.rmdir(parent)  # fails (kept) while another writer lives there
        except OSError:
            pass
        finally:
            if self._fd in _HELD:
                _HELD.discard(self._fd)
                os.close(self._fd)
        return removed


def sealed_segments(directory: Path) -> list[Path]:
    """The sealed segments of a writer folder, oldest (lowest sequence number) first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(segment_seq(n), n) for n in names if not n.endswith(OPEN_SUFFIX)]
    return [directory / n for s, n in sorted(x for x in found if x[0] is not None)]


def seal_leftover(path: Path) -> tuple[Path | None, int]:
    """Seal a dead writer's ``.open`` segment (module docstring): ``(sealed path or None
    when nothing whole was in it, torn bytes cut)``."""
    data = path.read_bytes()
    end = len(data)
    for span in iter_frame_spans(data, 0, sealed=False):
        if span.status == "torn":
            end = span.offset
    if end == 0:
        path.unlink()
        return None, len(data)
    if end < len(data):
        os.truncate(path, end)
    seq = segment_seq(path.name)
    sealed = path.with_name(segment_name(seq, sealed=True))
    if sealed.exists():
        raise OSError(errno.EEXIST, f"cannot seal {path}: {sealed.name} exists already")
    os.rename(path, sealed)
    return sealed, len(data) - end


def upload_segment(store: ObjectStore, spool: Path, path: Path) -> int | None:
    """Upload one sealed spool file to its key and delete it once confirmed.

    Returns:
        The bytes uploaded (0 for an empty or vanished file: someone else took it), or None
        on a conflict (another object of a different size has the key: the file is kept).

    Raises:
        ObjectStoreError: the request failed after its retries (the file is kept).
    """
    rel = path.relative_to(spool).as_posix()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if data and not store.put_new(rel, data):
        info = store.head(rel)
        if info is None or info.size != len(data):
            return None
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return len(data)


def upload_blobs(store: ObjectStore, spool: Path, run_dir: Path) -> tuple[int, int, list[str]]:
    """Upload the media blobs of a spool run folder (``<run>/blobs/..``), deleting each once
    confirmed; a blob already in the bucket with the same size counts (its name is its hash).

    Called before the segments listed *earlier* are uploaded: any segment sealed before
    the call names only blobs written before it, so an object-store reader never meets a
    media event whose blob is not there yet.

    Emptied ``blobs`` folders are removed (so the spool drains); another writer of the run
    writing a blob meanwhile makes its folder again (:func:`~runlake.schemas.blobs.write_blob`).

    Returns:
        ``(uploaded, bytes, conflicts)``: conflicts are the keys held by an object of
        another size (the local blob is kept).

    Raises:
        ObjectStoreError: a request failed after its retries (the blobs are kept).
    """
    uploaded, total, conflicts = 0, 0, []
    top = run_dir / BLOBS_DIR
    try:
        folders = sorted(os.listdir(top))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0, []
    for folder in folders:
        try:
            names = sorted(n for n in os.listdir(top / folder) if is_sha256(n))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            n = upload_segment(store, spool, top / folder / name)  # the same confirm rule
            if n is None:
                conflicts.append(f"{(top / folder / name).relative_to(spool)}")
            elif n:
                uploaded, total = uploaded + 1, total + n
        try:
            os.rmdir(top / folder)  # only once empty
        except OSError:
            pass
    try:
        os.rmdir(top)
    except OSError:
        pass
    return uploaded, total, conflicts


@dataclass
class PushReport:
    """What :func:`push` did: counts, and one line per thing it left in the spool."""

    spool: Path
    url: str
    uploaded: int = 0
    blobs: int = 0
    bytes: int = 0
    sealed: int = 0
    torn_bytes: int = 0
    live: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def rows(self) -> list[list[Any]]:
        return [["uploaded", self.uploaded, f"{self.bytes:,} bytes to {self.url}"],
                ["media blobs uploaded", self.blobs, "before the segments naming them"],
                ["sealed leftovers", self.sealed, f"{self.torn_bytes:,} torn bytes cut"],
                ["live writers skipped", len(self.live), "; ".join(self.live)],
                ["left in the spool", len(self.left), "; ".join(self.left)]]


def _writer_dirs(spool: Path) -> Iterator[Path]:
    for project in sorted(p for p in spool.iterdir() if p.is_dir() and not p.is_symlink()):
        for run in sorted(r for r in project.iterdir() if r.is_dir() and not r.is_symlink()):
            for writer in sorted(w for w in run.iterdir() if w.is_dir() and not w.is_symlink()):
                if parse_writer_id(writer.name) is not None:
                    yield writer


def push(spool: Path, url: str | None = None, *, store: ObjectStore | None = None) -> PushReport:
    """Upload what dead writers left in ``spool`` (``runlake push``); skip live ones.

    Args:
        spool: the spool folder.
        url: where to upload (default: the URL the spool records).
        store: an open store for ``url`` (default: a new one).

    Raises:
        RootError: no such spool, or no URL given or recorded, or another URL recorded.
        ObjectStoreError: the bucket cannot be reached (what was left stays in the spool).
    """
    spool = Path(spool).expanduser().absolute()
    if not spool.is_dir():
        raise RootError(f"no spool folder {spool}; pass --spool DIR (the RUNLAKE_SPOOL of the "
                        f"training job)")
    known = spool_url(spool)
    url = url or known
    if url is None:
        raise RootError(f"the spool {spool} records no destination; pass --root s3://bucket/prefix")
    if known is not None and known.rstrip("/") != url.rstrip("/"):
        raise RootError(f"the spool {spool} holds segments for {known}, not {url}; pass "
                        f"--root {known}")
    store = store or ObjectStore(url)
    report = PushReport(spool, store.url)
    for writer in _writer_dirs(spool):
        lock = WriterLock.take(writer, wait=False)
        if lock is None:
            report.live.append(f"{writer.relative_to(spool)} ({_holder(writer)})")
            continue
        try:
            _push_writer(store, spool, writer, report)
        finally:
            lock.release(remove=True)
    return report


def _push_writer(store: ObjectStore, spool: Path, writer: Path, report: PushReport) -> None:
    for path in sorted(writer.glob(f"*{OPEN_SUFFIX}")):
        if segment_seq(path.name) is None:
            continue
        sealed, torn = seal_leftover(path)
        report.torn_bytes += torn
        report.sealed += sealed is not None
    segments = sealed_segments(writer)  # listed before the blobs: see upload_blobs
    n, size, conflicts = upload_blobs(store, spool, writer.parent)
    report.blobs += n
    report.bytes += size
    report.left += [f"{c}: exists in the bucket with another size (kept)" for c in conflicts]
    for path in segments:
        n = upload_segment(store, spool, path)
        if n is None:
            report.left.append(f"{path.relative_to(spool)}: {store.url_of(path.relative_to(spool).as_posix())} "
                               f"exists with another size (kept)")
        elif n:
            report.uploaded += 1
            report.bytes += n


def _holder(writer: Path) -> str:
    try:
        pid, host = (writer / LOCK_NAME).read_text().split()[:2]
    except (OSError, ValueError):
        return "lock held"
    return f"pid {pid} on {host} is writing"
