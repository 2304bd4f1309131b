"""Content-addressed blobs: the bytes of ``media`` events, stored beside a run's segments.

Layout: ``<root>/<project>/<run_id>/blobs/<sha256[:2]>/<sha256>`` (no extension: the
``media`` event carries the mime type). The name is the SHA-256 of the content, so it is
also the checksum: a reader recomputes it (:func:`verify_blob`), the same content logged
twice is stored once, and writing is idempotent. A blob is written to a temporary name and
renamed, so no reader ever sees a partial blob, and it is written before the segment frame
holding its event, so an event never refers to a blob that is not there yet.

``blobs`` is not a writer folder: ingest's discovery skips it (:data:`BLOBS_DIR`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

__all__ = [
    "BLOBS_DIR",
    "DEFAULT_MEDIA_MAX_BYTES",
    "MEDIA_MAX_BYTES_ENV",
    "blob_path",
    "blob_relpath",
    "is_sha256",
    "media_max_bytes",
    "verify_blob",
    "write_blob",
]

BLOBS_DIR = "blobs"
"""The folder of a run holding its blobs (never a writer id)."""
MEDIA_MAX_BYTES_ENV = "RUNLAKE_MEDIA_MAX_BYTES"
"""The variable capping one blob's size (the emitter's ``log_media`` and the importers)."""
DEFAULT_MEDIA_MAX_BYTES = 256 * 1024 * 1024

_SHA = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a lowercase hex SHA-256 (what a blob name must be)."""
    return isinstance(value, str) and _SHA.fullmatch(value) is not None


def media_max_bytes() -> int:
    """The largest blob accepted: ``$RUNLAKE_MEDIA_MAX_BYTES`` (a positive int), else 256 MiB.

    Read at each call (cheap), so a test or a job script can lower it; a value that is not
    a positive integer counts as unset.
    """
    raw = os.environ.get(MEDIA_MAX_BYTES_ENV, "").strip().replace("_", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_MEDIA_MAX_BYTES


def blob_relpath(project: str, run_id: str, sha256: str) -> str:
    """The blob's path relative to the root, with ``/`` separators (the ``media.blob`` column)."""
    if not is_sha256(sha256):
        raise ValueError(f"not a blob name (64 lowercase hex digits): {sha256[:80]!r}")
    return f"{project}/{run_id}/{BLOBS_DIR}/{sha256[:2]}/{sha256}"


def blob_path(run_dir: str | os.PathLike, sha256: str) -> Path:
    """Where the blob ``sha256`` of the run folder ``run_dir`` lives."""
    if not is_sha256(sha256):
        raise ValueError(f"not a blob name (64 lowercase hex digits): {sha256[:80]!r}")
    return Path(run_dir) / BLOBS_DIR / sha256[:2] / sha256


def write_blob(run_dir: str | os.PathLike, data: bytes) -> str:
    """Store ``data`` as a blob of the run folder ``run_dir``; returns its SHA-256 (hex).

    Idempotent: a blob already present with the right size is not written again.
    Raises OSError (a full disk, a read-only root) with nothing partial left behind.
    """
    sha = hashlib.sha256(data).hexdigest()
    path = blob_path(run_dir, sha)
    try:
        if path.stat().st_size == len(data):
            return sha
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{sha}.{os.getpid()}.tmp")
    for attempt in range(3):  # an uploader may remove an emptied folder between the two
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            f = open(tmp, "wb")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha


def verify_blob(path: str | os.PathLike, sha256: str) -> bool:
    """Whether the file at ``path`` exists and its content hashes to ``sha256``."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return False
    return h.hexdigest() == sha256
