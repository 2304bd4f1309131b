"""Rebuilding a store from its segments (``runlake ingest --rebuild``), atomically.

Segments are the source of truth: every row of the store but the derived ``anomalies``
comes from them. A rebuild is an ordinary ingest pass into an empty store of the same kind
built *beside* the old one, in a hidden sibling ``.<name>.rebuild`` (discovery skips hidden
names, so its files are never taken for segments). Only when that pass has finished does
the new store take the old one's place:

* **DuckDB file**: the old file gets a second name, ``<name>.old`` (a hard link), then the
  new file is renamed over ``<name>`` (``rename(2)`` replaces atomically: a reader opens
  the old store or the new one, never nothing; one already open keeps reading the old).
* **Lake folder**: the two folders are exchanged in one step (Linux ``renameat2`` with
  ``RENAME_EXCHANGE``), then the old one is renamed ``<name>.old``. Where the file system
  cannot exchange, two renames are used and a reader opening in between finds no store
  for that moment. A reader holding a lake connection across the swap must reconnect.

Killed at any moment (SIGKILL included) before the swap, the old store is untouched and
the next rebuild removes the half-built sibling; after it, the new store is complete. The
previous ``<name>.old`` is replaced by each rebuild; delete it once satisfied. The caller
holds the root's ingest lock and gives the pass to run (``load``), so this module needs
nothing from :mod:`runlake.ingest`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from runlake.schemas.errors import StoreError

if TYPE_CHECKING:
    from runlake.store.backend import Backend
    from runlake.store.location import StoreLocation

__all__ = ["REFRESH_ANOMALIES", "Rebuilt", "checkpoint", "old_path", "rebuild", "remove_store", "swap_in",
           "temp_sibling"]

_R = TypeVar("_R")

REFRESH_ANOMALIES = "runlake anomalies --refresh"
"""The command that recomputes the derived ``anomalies`` rows (they are not in segments)."""

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a rebuild did: the pass's result, the store now in place, the one kept."""

    result: object  # what ``load`` returned (an IngestReport)
    store: Path
    old: Path | None
    anomalies_dropped: int


def temp_sibling(path: Path, purpose: str) -> Path:
    """``<dir>/.<name>.<purpose>``: hidden, on the same file system (renames are atomic)."""
    return path.with_name(f".{path.name}.{purpose}")


def old_path(path: Path) -> Path:
    """Where a replaced store is kept: ``<name>.old``."""
    return path.with_name(f"{path.name}.old")


def remove_store(path: Path) -> None:
    """Remove a store (a DuckDB file with its ``.wal``, or a lake folder) if present."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    Path(f"{path}.wal").unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step; False where the system cannot (then nothing moved)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in(new: Path, path: Path) -> Path | None:
    """Put the finished store ``new`` at ``path`` atomically; the one it replaces is kept
    as ``<name>.old`` (returned; None when ``path`` held no store)."""
    old = old_path(path)
    if not path.exists():
        os.rename(new, path)
        _fsync_dir(path.parent)
        return None
    remove_store(old)
    if new.is_dir():
        if _exchange(new, path):
            os.rename(new, old)  # ``new`` names the previous lake now
        else:
            os.rename(path, old)
            os.rename(new, path)
    else:
        checkpoint(new)
        checkpoint(path)  # a write-ahead log must never be paired with the other file
        try:
            os.link(path, old)
        except OSError:  # no hard links here: two renames (a reader may find no store between)
            os.rename(path, old)
        os.replace(new, path)
    _fsync_dir(path.parent)
    return old


def checkpoint(path: Path, *, always: bool = False) -> bool:
    """Fold the write-ahead log a crashed writer left (``<file>.wal``) into a DuckDB file;
    False when there was none (``always``: checkpoint anyway). The caller holds the ingest
    lock (no other writer)."""
    if not always and not Path(f"{path}.wal").exists():
        return False
    from runlake.store.duck import connect

    con = connect(path, read_only=False)
    try:
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return True


def rebuild(
    location: StoreLocation,
    open_backend: Callable[[StoreLocation], Backend],
    load: Callable[[Backend], _R],
    count_anomalies: Callable[[StoreLocation], int],
) -> Rebuilt:
    """Rebuild the store at ``location`` from the root's segments, then swap it in.

    Args:
        location: the store to rebuild (it may not exist yet: then this is a first ingest).
        open_backend: makes the backend for a location (``runlake.store.open_backend``).
        load: one ingest pass into the given (empty) backend; the caller holds the lock.
        count_anomalies: how many ``anomalies`` rows the old store has (they are derived,
            not in segments: the caller tells the user to recompute them).

    Returns:
        :class:`Rebuilt`.

    Raises:
        StoreError: the new store could not be built or swapped in (the old one is kept).
    """
    path = location.path
    tmp = temp_sibling(path, "rebuild")
    remove_store(tmp)  # a rebuild killed midway left it
    dropped = count_anomalies(location) if path.exists() else 0
    try:
        result = load(open_backend(replace(location, path=tmp)))
        old = swap_in(tmp, path)
    except BaseException:
        remove_store(tmp)
        raise
    return Rebuilt(result, path, old, dropped)
