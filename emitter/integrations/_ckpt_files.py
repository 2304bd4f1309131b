"""File primitives of the checkpoint folder: atomic writes, refusing reads, a folder lock.

Why a module of its own: :class:`~runlake.emitter.integrations.checkpoints.CheckpointManager`
reads names out of files anyone can edit (``manifest.json``, ``latest``) and must never be
talked into touching anything outside its folder. Every path it uses comes from
:func:`member`, which accepts only a bare ``ckpt-<step>.pt`` name of a regular file directly
in the folder: no ``..``, no absolute path, no symbolic link, FIFO or device. Small JSON files
are read by :func:`read_json` (regular file, size-capped, no link followed), checkpoint bytes
through :func:`open_member` (``O_NOFOLLOW``, then ``fstat``: the file checked is the file
read, so a link swapped in between is refused as well).

:func:`folder_lock` serialises the read-check-write of the manifest between processes with
``flock`` on the folder itself (no lock file to leave behind; released by the kernel when
its process dies, SIGKILL included).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import IO, Iterator

from runlake.schemas.errors import RunlakeError
from runlake.schemas.segments import process_alive

CKPT_RE = re.compile(r"^ckpt-(\d{9,})\.pt$")
"""The only names a manifest or pointer may give: the files this manager writes."""
TMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")
MAX_JSON_BYTES = 16 << 20
"""A manifest of ~100k checkpoints; anything larger is not one of ours."""
LOCK_WAIT_S = 60.0


class HashingWriter:
    """A file-like that hashes and counts what torch.save writes through it."""

    def __init__(self, f):
        self._f = f
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.n += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """A same-folder temporary name whose pid lets a later opener remove it once stale."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` (a link there is replaced, never followed) with ``data``, durably."""
    tmp = temp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers cannot be in progress: we are not saving now
    return process_alive(pid)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "not a regular file"


def member(folder: Path, name: object, named_by: str) -> Path:
    """The path of checkpoint ``name`` in ``folder``, refusing anything that could escape it.

    Raises:
        RunlakeError: ``name`` is not a bare ``ckpt-<step>.pt`` name, or that entry of the
            folder exists but is not a regular file (a link, FIFO, directory...).
    """
    if not isinstance(name, str) or not CKPT_RE.match(name):
        raise RunlakeError(
            f"{named_by} names {name!r}, not a checkpoint file of {folder} (expected a bare "
            f"name ckpt-<step>.pt); refusing to load or delete it: was the file edited? "
            f"Restore it, or delete it to rebuild from the checkpoint files")
    path = folder / name
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(mode):
        raise RunlakeError(
            f"{path} (named by {named_by}) is {_kind(mode)}; checkpoints must be regular files "
            f"inside {folder}: refusing to load or delete it")
    return path


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def open_member(path: Path) -> Iterator[IO[bytes]]:
    """Open a checkpoint for reading without following a link; refuse non-regular files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunlakeError(f"{path} is a symbolic link; checkpoints must be regular files "
                               f"inside their folder: refusing to read it") from None
        raise
    f = os.fdopen(fd, "rb")
    with f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RunlakeError(f"{path} is {_kind(mode)}, not a checkpoint file: refusing to read it")
        yield f


def sha256_of(f: IO[bytes], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    while block := f.read(chunk):
        h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a regular file (links refused), read in chunks."""
    with open_member(path) as f:
        return sha256_of(f)


def read_json(path: Path, what: str, fix: str) -> object | None:
    """Parse a small JSON file of the folder; None when it does not exist.

    Raises:
        RunlakeError: not a regular file, larger than :data:`MAX_JSON_BYTES`, or not JSON.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunlakeError(f"checkpoint {what} {path} is a symbolic link; {fix}") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunlakeError(f"checkpoint {what} {path} is {_kind(st.st_mode)}; {fix}")
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise RunlakeError(f"checkpoint {what} {path} is larger than {MAX_JSON_BYTES} bytes; {fix}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise RunlakeError(f"checkpoint {what} {path} is not JSON ({exc}); {fix}") from exc


@contextlib.contextmanager
def folder_lock(folder: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder while the block runs.

    Where the file system has no ``flock`` for directories (some network mounts) the block
    runs unlocked: the run-id check in the manifest still refuses a second run.

    Raises:
        RunlakeError: another process held the lock for ``wait_s`` seconds.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunlakeError(
                        f"checkpoint folder {folder} stayed locked by another process for "
                        f"{wait_s:.0f} s; is another run saving into it?") from None
                time.sleep(0.02)
            except OSError:
                break  # no flock here: see the docstring
        yield
    finally:
        os.close(fd)  # releases the lock
