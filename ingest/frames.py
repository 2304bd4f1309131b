"""Which frames each writer has loaded, so a duplicated frame is detected and loaded once.

The byte ledger makes each *segment file* exactly-once; this makes each *frame*
exactly-once across files. A segment copied under another name or into another project,
or concatenated onto another one, repeats frames the store already holds. Every event
carries its writer's envelope and ``seq`` is unique per writer, so a frame is identified by
``(run_id, writer, seq of one of its events, content checksum)`` (see
:func:`runlake.ingest.decode.frame_identity`; the checksum guards against writers that
reuse seqs). Frames whose identity was already loaded, from any file, are skipped and
reported; their bytes are consumed so they are never looked at again.

Cost: the table ``ingest_frames`` holds one row per loaded frame, and the ledger holds per
segment the range ``seq_lo..seq_hi`` of its frames' seqs. A pass checks each frame only
against those ranges (a few comparisons per frame, nothing per point). Only when a seq
falls inside another segment's range (a copy, or a rare straggler at a segment boundary:
seqs are taken before events are appended, so neighbouring frames can interleave by an
event or two) are that segment's exact frame keys looked up, once per pass, through
``lookup``.

Frames loaded by a runlake older than this check (ledger rows without a range) are made
known on demand: the first time a frame of such a writer is checked, ``backfill`` reads
that writer's old segments once (up to their ledger offset) and records their frames.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Callable, Iterable

from runlake.ingest.decode import FrameDecoder, frame_identity
from runlake.ingest.discover import SegmentFile, UnsafeEntry, open_segment, read_at
from runlake.schemas.segments import OPEN_SUFFIX, iter_frames

__all__ = ["FrameBook", "frame_checksum", "loaded_frames"]

Key = tuple[int, int]  # (seq, checksum)
_MAX_BYTES = 1 << 30


def frame_checksum(frame: bytes) -> int:
    """The frame's zstd content checksum (its last 4 bytes), else a CRC-32 of its bytes."""
    if len(frame) > 8 and frame[4] & 0x04:  # frame header descriptor: checksum flag
        return int.from_bytes(frame[-4:], "little")
    return zlib.crc32(frame)


class FrameBook:
    """Frame identities known for a pass: ranges per segment, exact keys when needed.

    Args:
        ranges: ``(segment, run_id, writer, seq_lo, seq_hi)`` per ledger row with a range.
        lookup: ``lookup(segment) -> {(seq, checksum): byte_offset}`` from the store.
        legacy: ``{(run_id, writer): [ledger entries]}`` loaded before frame keys existed.
        backfill: ``backfill(entry)`` records a legacy entry's frames (through :meth:`add`).
    """

    def __init__(self, ranges: Iterable[tuple[str, str, str, int, int]],
                 lookup: Callable[[str], dict[Key, int]],
                 legacy: dict[tuple[str, str], list] | None = None,
                 backfill: Callable[[object], None] | None = None) -> None:
        self._legacy = legacy or {}
        self._backfill = backfill
        self._ranges: dict[tuple[str, str], dict[str, list[int]]] = {}
        self._top: dict[tuple[str, str], int] = {}  # per writer: the highest seq of any range
        for segment, run_id, writer, lo, hi in ranges:
            self._ranges.setdefault((run_id, writer), {})[segment] = [lo, hi]
            if hi > self._top.get((run_id, writer), hi - 1):
                self._top[(run_id, writer)] = hi
        self._stored = {segment for segs in self._ranges.values() for segment in segs}
        self._lookup = lookup
        self._exact: dict[str, dict[Key, int]] = {}  # segment -> keys from the store
        self._new: dict[str, dict[Key, int]] = {}  # segment -> keys loaded in this pass
        self.rows: list[tuple[str, str, int, int, str, int]] = []  # for ingest_frames

    def seen(self, run_id: str, writer: str, seq: int, checksum: int) -> tuple[str, int] | None:
        """Where a frame with this identity was loaded before: ``(segment, offset)``, or None."""
        old = self._legacy.pop((run_id, writer), None)
        for entry in old or ():
            self._backfill(entry)
        segments = self._ranges.get((run_id, writer))
        if not segments or seq > self._top[(run_id, writer)]:
            return None  # past every range (a writer's next frame): no segment to scan
        key = (seq, checksum)
        for segment, (lo, hi) in segments.items():
            if lo <= seq <= hi:
                new = self._new.get(segment)
                if new is not None and key in new:
                    return segment, new[key]
                if segment in self._stored:
                    exact = self._exact.get(segment)
                    if exact is None:
                        exact = self._exact[segment] = self._lookup(segment)
                    if key in exact:
                        return segment, exact[key]
        return None

    def add(self, run_id: str, writer: str, seq: int, checksum: int, segment: str,
            offset: int) -> tuple[int, int]:
        """Record a frame loaded now; returns the segment's new ``(seq_lo, seq_hi)``."""
        segments = self._ranges.setdefault((run_id, writer), {})
        r = segments.get(segment)
        if r is None:
            r = segments[segment] = [seq, seq]
        elif seq < r[0]:
            r[0] = seq
        elif seq > r[1]:
            r[1] = seq
        if seq > self._top.get((run_id, writer), seq - 1):
            self._top[(run_id, writer)] = seq
        self._new.setdefault(segment, {})[(seq, checksum)] = offset
        self.rows.append((run_id, writer, seq, checksum, segment, offset))
        return r[0], r[1]

    def take_rows(self) -> list[tuple[str, str, int, int, str, int]]:
        """The rows added since the last call (committed with their chunk)."""
        rows, self.rows = self.rows, []
        return rows


def loaded_frames(root: Path, entry, decoder: FrameDecoder) -> list[tuple[int, int, int]]:
    """``(seq, checksum, offset)`` of the frames in a ledger entry's consumed bytes.

    For ledger rows written before frame keys existed; an unreadable segment gives none.
    """
    seg = SegmentFile(str(root / (entry.segment + OPEN_SUFFIX)), entry.segment, entry.project,
                      entry.run_id, entry.writer, 0, False, 0)
    try:
        opened = open_segment(root, seg)
    except (UnsafeEntry, OSError):
        return []
    if opened is None:
        return []
    fd, _, size = opened
    try:
        data = read_at(fd, min(entry.bytes, size, _MAX_BYTES), 0)
    finally:
        os.close(fd)
    out = []
    for span, content in iter_frames(data, sealed=True):
        ident = frame_identity(content, *decoder.decode(content)[:2])
        if ident is not None and ident[:2] == (entry.run_id, entry.writer):
            out.append((ident[2], frame_checksum(data[span.offset:span.end]), span.offset))
    return out
