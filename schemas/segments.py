"""The segment file format: layout on disk, names, and zstd framing.

This is part of the contract between the emitter (writer) and ingest (reader), so it lives
with the schemas. It needs only the stdlib and ``zstandard`` (a core dependency).

Durability story
----------------
A run is a directory ``<root>/<project>/<run_id>/``; every writing process (one per rank
and attempt) owns a sub-directory ``<writer>/`` that no other process touches. A writer
appends to ``<seq>.jsonl.zst.open``. Each flush appends exactly one complete zstd frame
(content size and content checksum in it) holding whole JSON lines, then fsyncs by policy.
When the segment reaches its size or age threshold the writer closes it and renames it to
``<seq>.jsonl.zst`` (sealed): from then on it never changes. Because frames are appended
whole and each carries a checksum, a reader can always tell three cases apart at the end of
what it has read: a complete frame (load it), a frame still being written or cut by a crash
(a *torn tail*: wait for more bytes while the segment is open, report it once sealed), or
damaged bytes (a *corrupt frame*: report file and offset, then resynchronise on the next
frame magic so everything after it still loads). The files are plain concatenated zstd
frames, so ``zstdcat <seq>.jsonl.zst`` shows the events without runlake.

One home: every frame runlake writes (the emitter's sink, the TensorBoard import, benches)
comes from :func:`frame_compressor`, and every frame it reads (ingest, resume, the frame
ledger's backfill) goes through :class:`FrameReader`, which refuses a header declaring an
absurd content size before allocating anything. The magic numbers, the skippable-frame
range, the suffixes and the writer-id layout are declared here and imported elsewhere.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import zstandard

__all__ = [
    "DEFAULT_ROOT",
    "FRAME_LEVEL",
    "FRAME_MAGIC",
    "FrameError",
    "FrameReader",
    "FrameSpan",
    "LEGACY_ROOT",
    "MAX_FRAME_CONTENT",
    "OPEN_SUFFIX",
    "SEGMENT_SUFFIX",
    "STORE_FILE",
    "check_name",
    "frame_compressor",
    "frame_length",
    "is_skippable",
    "iter_frame_spans",
    "iter_frames",
    "new_writer_id",
    "parse_writer_id",
    "process_alive",
    "resolve_root",
    "segment_key",
    "segment_name",
    "segment_seq",
    "writer_id",
]

FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
SEGMENT_SUFFIX = ".jsonl.zst"
OPEN_SUFFIX = ".open"
_ZSTD_MAGIC = int.from_bytes(FRAME_MAGIC, "little")
_SKIPPABLE_LO, _SKIPPABLE_HI = 0x184D2A50, 0x184D2A5F
"""Magic numbers of zstd skippable frames: they hold no events, readers step over them."""
FRAME_LEVEL = 3
"""zstd level of every frame written (with ``min_match`` 7, content size and checksum)."""
MAX_FRAME_CONTENT = 1 << 31
"""Largest content a frame header may declare; a bigger one is a corrupt header, refused
before anything is allocated (a flipped bit must not ask for terabytes)."""
_WRITER_RE = re.compile(r"r(\d{4,})-a(\d{3,})-[0-9a-f]+")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,127}")
_RESERVED_ENDINGS = (SEGMENT_SUFFIX, OPEN_SUFFIX, ".duckdb", ".wal")
"""Endings a folder name may not have: ingest would take it for a segment, or it would
collide with the store file (``runlake.duckdb`` and its ``.wal``)."""


def check_name(value: str, what: str) -> str:
    """Validate a project / run id / writer name used as one path component.

    This is the one rule for every name that becomes a folder under the storage root
    (emitter, TensorBoard import, ingest's view of the layout). Names never escape the
    root and never look like runlake's own files: 1-128 characters from
    ``[A-Za-z0-9._+=@-]`` (so no separator, control character, space or newline), starting
    with a letter or digit (no leading dot), without ``..``, and not ending like a segment
    or store file (:data:`_RESERVED_ENDINGS`). The whole string must match: a trailing
    newline is refused too.

    Raises:
        ValueError: naming what was expected and what was received.
    """
    if (not isinstance(value, str) or _NAME_RE.fullmatch(value) is None or ".." in value
            or value.lower().endswith(_RESERVED_ENDINGS)):
        raise ValueError(
            f"invalid {what} {value!r}: expected 1-128 characters from letters, digits and "
            f"'._+=@-', starting with a letter or digit, without '..' and not ending in "
            f"{'/'.join(_RESERVED_ENDINGS)} (it names a folder under the storage root)"
        )
    return value


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a writer, a reader's lease holder).

    ``PermissionError`` means it exists under another user, so it counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False  # not a pid at all (a damaged lease or marker file)
    return True


def writer_id(rank: int, attempt: int, suffix: str) -> str:
    """The writer folder name ``r<rank>-a<attempt>-<suffix>`` (read back by
    :func:`parse_writer_id`); ``suffix`` is lower-case hex digits."""
    return f"r{rank:04d}-a{attempt:03d}-{suffix}"


def new_writer_id(rank: int, attempt: int) -> str:
    """A writer id unique per process: rank, attempt and a random suffix."""
    return writer_id(rank, attempt, secrets.token_hex(4))


def parse_writer_id(name: str) -> tuple[int, int] | None:
    """``(rank, attempt)`` of a writer folder name, or None when it is not one."""
    m = _WRITER_RE.fullmatch(name)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


def segment_name(seq: int, *, sealed: bool) -> str:
    name = f"{seq:06d}{SEGMENT_SUFFIX}"
    return name if sealed else name + OPEN_SUFFIX


def segment_seq(name: str) -> int | None:
    """The sequence number of a segment file name, or None if it is not a segment."""
    base = name[: -len(OPEN_SUFFIX)] if name.endswith(OPEN_SUFFIX) else name
    if not base.endswith(SEGMENT_SUFFIX):
        return None
    stem = base[: -len(SEGMENT_SUFFIX)]
    return int(stem) if stem.isdigit() else None


def segment_key(path: Path, root: Path) -> str:
    """The stable ledger key of a segment: its sealed path relative to the root, '/'-joined.

    An open segment and the same segment after sealing share one key, so bytes consumed
    before the rename are never read twice.
    """
    rel = path.relative_to(root).as_posix()
    return rel[: -len(OPEN_SUFFIX)] if rel.endswith(OPEN_SUFFIX) else rel


def frame_length(buf: bytes | memoryview, offset: int) -> int | None:
    """Length in bytes of the zstd frame (or skippable frame) starting at ``offset``.

    Walks the frame header and block headers only; nothing is decompressed.

    Returns:
        The frame's total length, or None when ``buf`` ends before the frame does (a torn
        tail, or a frame still being written).

    Raises:
        ValueError: the bytes at ``offset`` are not a zstd frame.
    """
    n = len(buf)
    if offset + 4 > n:
        return None
    magic = int.from_bytes(buf[offset : offset + 4], "little")
    if _SKIPPABLE_LO <= magic <= _SKIPPABLE_HI:
        if offset + 8 > n:
            return None
        size = 8 + int.from_bytes(buf[offset + 4 : offset + 8], "little")
        return size if offset + size <= n else None
    if magic != _ZSTD_MAGIC:
        raise ValueError(f"no zstd frame magic at offset {offset}")
    pos = offset + 4
    if pos >= n:
        return None
    fhd = buf[pos]
    pos += 1
    fcs_flag = fhd >> 6
    single_segment = (fhd >> 5) & 1
    if (fhd >> 3) & 1:
        raise ValueError(f"reserved bit set in zstd frame header at offset {offset}")
    has_checksum = (fhd >> 2) & 1
    did_size = (0, 1, 2, 4)[fhd & 3]
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    pos += (0 if single_segment else 1) + did_size + fcs_size
    while True:
        if pos + 3 > n:
            return None
        header = int.from_bytes(buf[pos : pos + 3], "little")
        pos += 3
        last = header & 1
        block_type = (header >> 1) & 3
        size = header >> 3
        if block_type == 3:
            raise ValueError(f"reserved block type in zstd frame at offset {offset}")
        pos += 1 if block_type == 1 else size
        if pos > n:
            return None
        if last:
            break
    pos += 4 if has_checksum else 0
    return pos - offset if pos <= n else None


@dataclass(frozen=True, slots=True)
class FrameSpan:
    """One piece of a segment: a whole frame, a torn tail, or damaged bytes."""

    offset: int
    end: int
    status: str  # "frame" | "torn" | "garbage"
    reason: str = ""


def iter_frame_spans(
    buf: bytes | memoryview, offset: int = 0, *, sealed: bool = False
) -> Iterator[FrameSpan]:
    """Split ``buf[offset:]`` into frame spans without decompressing.

    Yields ``frame`` spans for complete frames, ``garbage`` spans for bytes that are not a
    frame (followed by a resync on the next magic), and finally at most one ``torn`` span
    for an incomplete frame at the end. In a sealed segment nothing more will come, so an
    incomplete frame followed by another magic is garbage and reading resumes there.
    """
    n = len(buf)
    view = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = offset
    while pos < n:
        try:
            length = frame_length(buf, pos)
        except ValueError as exc:
            nxt = view.find(FRAME_MAGIC, pos + 1)
            end = n if nxt < 0 else nxt
            yield FrameSpan(pos, end, "garbage", str(exc))
            pos = end
            continue
        if length is None:
            nxt = view.find(FRAME_MAGIC, pos + 1) if sealed else -1
            if nxt < 0:
                yield FrameSpan(pos, n, "torn", "incomplete zstd frame at end of file")
                return
            yield FrameSpan(pos, nxt, "garbage", "incomplete zstd frame before another frame")
            pos = nxt
            continue
        yield FrameSpan(pos, pos + length, "frame")
        pos += length


def is_skippable(frame: bytes | memoryview) -> bool:
    """True for a zstd skippable frame (user metadata, never events)."""
    return _SKIPPABLE_LO <= int.from_bytes(frame[:4], "little") <= _SKIPPABLE_HI


def frame_compressor() -> zstandard.ZstdCompressor:
    """The compressor of every frame runlake writes: ``compress(lines)`` is one frame.

    zstd level :data:`FRAME_LEVEL` with min_match 7 (~11 bytes per random float64 point,
    ~1.7 µs/event), content size and content checksum in every frame (readers tell torn
    and damaged frames apart by them). Not thread-safe: one per writing thread.
    """
    params = zstandard.ZstdCompressionParameters.from_level(
        FRAME_LEVEL, min_match=7, write_checksum=1, write_content_size=1
    )
    return zstandard.ZstdCompressor(compression_params=params)


class FrameError(ValueError):
    """A frame that does not decompress: bad checksum, damaged blocks, absurd header."""


class FrameReader:
    """Decompresses whole frames. Not thread-safe: one per reading thread."""

    def __init__(self, max_content: int = MAX_FRAME_CONTENT) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self.max_content = max_content

    def decompress(self, frame: bytes) -> bytes:
        """The content of one whole frame, its checksum verified.

        Raises:
            FrameError: the frame is damaged, or its header declares more than
                ``max_content`` bytes (checked before any allocation).
        """
        try:
            size = zstandard.frame_content_size(frame)
            if size > self.max_content:
                raise FrameError(f"frame header declares {size} bytes of content, more than "
                                 f"{self.max_content} (corrupt header?)")
            if size < 0:  # no content size in the header (not written by runlake): stream it
                return self._dctx.decompressobj().decompress(frame)
            return self._dctx.decompress(frame)
        except zstandard.ZstdError as exc:
            raise FrameError(str(exc)) from None


def iter_frames(buf: bytes, *, sealed: bool, reader: FrameReader | None = None
                ) -> Iterator[tuple[FrameSpan, bytes]]:
    """``(span, content)`` of every whole event frame of ``buf``, in order.

    Torn tails, damaged bytes, skippable frames and frames that do not decompress are
    stepped over silently: for readers that only need the good frames (resume, the frame
    ledger's backfill). Ingest, which reports damage, walks :func:`iter_frame_spans` itself.
    """
    reader = reader or FrameReader()
    for span in iter_frame_spans(buf, sealed=sealed):
        if span.status != "frame":
            continue
        frame = buf[span.offset:span.end]
        if is_skippable(frame):
            continue
        try:
            yield span, reader.decompress(frame)
        except FrameError:
            continue


# The default storage root, relative to the working directory. It is not a valid module
# name, so a data folder next to a user's script can never shadow the ``runlake`` package
# (``./runlake`` did, under an editable install: "module 'runlake' has no attribute 'init'").
DEFAULT_ROOT = "runlake-data"
# The v0.1 default. Still used (with a notice) where it holds a store and DEFAULT_ROOT does
# not exist yet, so nobody's existing runs disappear on upgrade.
LEGACY_ROOT = "runlake"
STORE_FILE = "runlake.duckdb"
_legacy_noticed = False


def _legacy_root() -> Path | None:
    """``./runlake`` when it is an old data folder (a store, not a Python package) and
    ``./runlake-data`` does not exist."""
    legacy = Path(LEGACY_ROOT)
    if Path(DEFAULT_ROOT).exists() or (legacy / "__init__.py").exists():
        return None
    return legacy if (legacy / STORE_FILE).is_file() else None


def resolve_root(root: str | Path | None = None) -> Path:
    """The storage root: ``root`` if given, else ``$RUNLAKE_DIR``, else ``./runlake-data``.

    An ``s3://bucket/prefix`` root (:mod:`runlake.schemas.objects`) is returned as the URL
    string itself (a Path would fold its ``//``).

    A v0.1 data folder ``./runlake`` holding a store keeps being used while
    ``./runlake-data`` does not exist; a one-time notice on stderr says how to move it.
    """
    import os

    from runlake.schemas.objects import is_url

    if root is None:
        root = os.environ.get("RUNLAKE_DIR")
    if is_url(root):
        return root  # type: ignore[return-value]  # object storage: a URL, never a Path
    if not root:
        legacy = _legacy_root()
        if legacy is None:
            return Path(DEFAULT_ROOT)
        global _legacy_noticed
        if not _legacy_noticed:
            _legacy_noticed = True
            import sys

            print(f"runlake: note: using the old default data folder ./{LEGACY_ROOT} (it holds "
                  f"{STORE_FILE}); the default is now ./{DEFAULT_ROOT}, which cannot shadow "
                  f"the runlake package: `mv {LEGACY_ROOT} {DEFAULT_ROOT}` or set RUNLAKE_DIR",
                  file=sys.stderr)
        return legacy
    return Path(root).expanduser()

