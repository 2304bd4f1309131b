"""Exactly-once loading of segment bytes into the store (a DuckDB file or a lake).

Durability story: the ledger (``ingest_ledger``) records, per segment, how many bytes have
been consumed, and only whole frames are ever consumed. A pass reads each segment from its
ledger offset, decodes the complete frames, and hands the resulting rows, the quarantine
rows, the writers/runs updates and the advanced ledger offsets to the store's
:class:`~runlake.store.backend.Backend` as ONE chunk, committed all-or-nothing (the DuckDB
file in one transaction, the lake as :mod:`runlake.store.lake` tells). If the process dies
anywhere (SIGKILL included) the chunk either committed, and the next pass starts after
those bytes, or it did not, and the next pass reads them again: nothing is lost or loaded
twice. A large backlog is committed in chunks of about ``CHUNK_POINTS`` rows, each chunk
its own such commit, decoded while the previous chunk commits on a second thread. A torn tail of an open segment is left for the next
pass; in a sealed segment it can never complete, so it is quarantined and the segment is
marked done. Damaged frames and bad lines are quarantined with file, offset and reason;
everything else loads. Only one ingest runs per root (:class:`IngestLock`); the pass reads
the store's state through the backend's short-lived reader and writes only by committing.

Exactly-once also holds across files: each frame's identity (writer, seq, checksum) is
committed with it (:mod:`runlake.ingest.frames`), so a segment copied under another name
or into another project, or a folder copied under new ids, loads nothing twice; the
skipped frames are one quarantine row per run of them. Only regular files inside the root
are read, in bounded windows (:mod:`runlake.ingest.discover`); a link, FIFO, device or
folder in a segment's place is reported once (ledger status ``skipped``) and never opened.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from runlake.ingest.commit import Committer
from runlake.ingest.decode import FrameDecoder, Problem, TableBuilder, frame_identity
from runlake.ingest.discover import Refused, SegmentFile, UnsafeEntry
from runlake.ingest.frames import FrameBook, frame_checksum, loaded_frames
from runlake.ingest.progress import Progress
from runlake.ingest.report import IngestReport
from runlake.ingest.sources import Opened, source_for
from runlake.ingest.status import StatusBook
from runlake.schemas.errors import RootError
from runlake.schemas.objects import ObjectMissing, ObjectStore, is_url
from runlake.schemas.segments import (
    FRAME_MAGIC,
    FrameError,
    is_skippable,
    iter_frame_spans,
    resolve_root,
)
from runlake.store.backend import Backend
from runlake.store.chunk import LEDGER_COLS, Chunk, LedgerEntry

__all__ = ["CHUNK_POINTS", "READ_WINDOW", "run_pass"]

log = logging.getLogger("runlake.ingest")

CHUNK_POINTS = 1_000_000
"""Rows per commit when a pass has a large backlog."""

READ_WINDOW = 64 << 20
"""Bytes of a segment read at once; a window grows (up to :data:`_MAX_WINDOW`) only to hold
one frame that does not fit, so memory stays bounded whatever the file's size."""
_MAX_WINDOW = 1 << 30


def _needs_read(seg: SegmentFile, entry: LedgerEntry | None) -> bool:
    if entry is None or entry.status == "skipped":
        return True
    if seg.sealed and (not entry.sealed or entry.status == "live"):
        return True  # "live" + sealed: a kill between its last frame's chunk and "done"
    return seg.size > entry.bytes


def _ledger(con) -> dict[str, LedgerEntry]:
    cur = con.execute("SELECT * FROM ingest_ledger")
    names = [d[0] for d in cur.description]
    idx = [names.index(c) for c in LEDGER_COLS]
    return {row[idx[0]]: LedgerEntry(*(row[i] for i in idx)) for row in cur.fetchall()}


class _Skips:
    """Consecutive frames of a segment skipped for one cause: one problem, not one each."""

    __slots__ = ("entry", "cause", "reason", "start", "end", "frames")

    def __init__(self, entry: LedgerEntry, cause: tuple, reason: str, start: int, end: int):
        self.entry, self.cause, self.reason = entry, cause, reason
        self.start, self.end, self.frames = start, end, 1

    def problem(self) -> Problem:
        what = "1 frame" if self.frames == 1 else f"{self.frames} frames"
        return Problem(self.entry.segment, self.start, self.end - self.start, None,
                       f"{what} ({self.end - self.start} bytes): {self.reason}", "")


class _Pass:
    def __init__(self, root: Path | str, backend: Backend, progress: bool,
                 stale_after: float | None, chunk_points: int, read_window: int,
                 owns: Callable[[str], bool] | None = None):
        self.root, self.backend = root, backend
        self.source = source_for(root)  # a folder, or an s3:// prefix (ingest.sources)
        self.owns = owns
        self.chunk_points = chunk_points
        self.read_window = read_window
        self.progress = progress
        self.report = IngestReport()
        self.book = StatusBook(stale_after)
        self.decoder = FrameDecoder()
        self.builder = TableBuilder()
        self.problems: list[Problem] = []
        self.touched: dict[str, LedgerEntry] = {}
        self.skips: _Skips | None = None
        self._last_garbage: Problem | None = None
        self.committer: Committer | None = None
        self.frames = FrameBook((), self._frame_keys)

    def run(self) -> IngestReport:
        start = time.perf_counter()
        segments, refused = self.source.discover(self.owns)
        self.report.segments_seen = len(segments)
        self.backend.prepare()  # created, migrated, a half-done commit finished or undone
        with self.backend.reader() as con:
            ledger = _ledger(con)
            pending = [s for s in segments if _needs_read(s, ledger.get(s.key))]
            self.book.load(con, {s.run_id for s in pending}, self.owns)
        legacy: dict[tuple[str, str], list[LedgerEntry]] = {}
        for e in ledger.values():
            if e.seq_lo is None and e.bytes and e.status != "skipped":
                legacy.setdefault((e.run_id, e.writer), []).append(e)
        self.frames = FrameBook(
            ((e.segment, e.run_id, e.writer, e.seq_lo, e.seq_hi) for e in ledger.values()
             if e.seq_lo is not None), self._frame_keys, legacy, self._backfill)
        for r in refused:
            self._refused(ledger, r)
        total = sum(s.size - (ledger[s.key].bytes if s.key in ledger else 0) for s in pending)
        bar = Progress(total, self.progress)
        self.committer = committer = Committer(self.backend)
        self.source.prefetch([(s, ledger[s.key].bytes if s.key in ledger else 0)
                              for s in pending])
        try:
            for seg in pending:
                entry = ledger.get(seg.key) or LedgerEntry(
                    seg.key, seg.project, seg.run_id, seg.writer)
                self._read_segment(seg, entry, committer, bar)
            self._flush(committer, final=True)
        finally:
            self.source.close()
            committer.close()
            bar.close()
        self.backend.maintain()
        self.report.commits = committer.commits
        self.report.commit_seconds = committer.commit_seconds
        self.report.wait_seconds = committer.wait_seconds
        self.report.runs = self.book.statuses()
        self.report.seconds = time.perf_counter() - start
        return self.report

    def _frame_keys(self, segment: str) -> dict[tuple[int, int], int]:
        """Exact frame keys of a segment loaded by earlier passes (rare: see FrameBook)."""
        self.committer.wait_idle()  # the store is closed between commits
        with self.backend.reader() as con:
            rows = con.execute("SELECT seq, checksum, byte_offset FROM ingest_frames "
                               "WHERE segment = ?", [segment]).fetchall()
        return {(seq, checksum): offset for seq, checksum, offset in rows}

    def _backfill(self, entry: LedgerEntry) -> None:
        """Record the frames a runlake without frame keys loaded from ``entry`` (read once)."""
        for seq, checksum, offset in loaded_frames(self.root, entry, self.decoder):
            entry.seq_lo, entry.seq_hi = self.frames.add(entry.run_id, entry.writer, seq,
                                                         checksum, entry.segment, offset)
        if entry.seq_lo is None:
            entry.seq_lo, entry.seq_hi = 0, -1  # nothing readable: an empty range
        self.touched[entry.segment] = entry

    def _problem(self, entry: LedgerEntry, problem: Problem) -> None:
        self.problems.append(problem)
        if entry.error is None:
            entry.error = problem.reason
        log.warning("runlake ingest: %s", problem.message())

    def _refuse(self, entry: LedgerEntry, reason: str) -> None:
        """Report a path that is not read (a link, FIFO...) once; the ledger remembers it."""
        if entry.status == "skipped":
            return  # reported when first seen
        entry.error = None
        self._problem(entry, Problem(entry.segment, entry.bytes, None, None, reason, ""))
        self.report.refused += 1
        entry.status = "skipped"
        self.touched[entry.segment] = entry

    def _refused(self, ledger: dict[str, LedgerEntry], r: Refused) -> None:
        self._refuse(ledger.get(r.key) or LedgerEntry(r.key, r.project, r.run_id, r.writer),
                     r.reason)

    def _read_segment(self, seg: SegmentFile, entry: LedgerEntry, committer: Committer,
                      bar: Progress) -> None:
        try:
            opened = self.source.open(seg)
        except UnsafeEntry as exc:
            self._refuse(entry, f"{exc} (ingest reads only regular files inside the root)")
            return
        except OSError as exc:
            self._refuse(entry, f"cannot open {seg.key}: {exc.strerror or exc}; it is read "
                                f"again once it is a readable regular file")
            return
        if opened is None:
            return
        if entry.status == "skipped":
            entry.error = None  # readable again: problems are counted afresh
        try:
            self._read_opened(seg, entry, opened, committer, bar)
        finally:
            opened.close()

    def _read_opened(self, seg: SegmentFile, entry: LedgerEntry, opened: Opened,
                     committer: Committer, bar: Progress) -> None:
        sealed, size = opened.sealed, opened.size
        start = pos = entry.bytes
        self.report.segments += 1
        window = self.read_window
        while True:
            try:
                data = opened.read(max(0, min(size - pos, window)), pos)
            except ObjectMissing as exc:  # deleted since the listing: the rest goes on
                self._end_skips()
                self._problem(entry, Problem(seg.key, pos, None, None, (
                    f"{exc} (deleted after it was listed); its bytes from offset {pos} were "
                    f"not read: they are read if the object is uploaded again"), ""))
                self._set_offset(entry, pos, False, done=False)
                self.report.bytes += pos - start
                return
            last = pos + len(data) >= size
            forced = not last and window >= _MAX_WINDOW  # a "frame" over 1 GiB: damage
            consumed = self._spans(seg, entry, data, pos, sealed, not last, forced,
                                   committer, bar)
            pos += consumed
            bar.update(consumed)
            if last or (forced and not consumed):
                break
            window = window * 2 if consumed == 0 else self.read_window  # grow for one frame
        self._end_skips()
        if sealed and size == 0:
            self._problem(entry, Problem(
                seg.key, 0, 0, None,
                "sealed segment is empty (0 bytes): its writer sealed it without writing a "
                "frame (every write failed?) or it was truncated; nothing to load", ""))
        self._set_offset(entry, pos, sealed, done=True)
        self.report.bytes += pos - start

    def _spans(self, seg: SegmentFile, entry: LedgerEntry, data: bytes, base: int,
               sealed: bool, more: bool, forced: bool, committer: Committer,
               bar: Progress) -> int:
        """Load the frames of one window; returns the bytes consumed from its start.

        ``more``: the file goes on after this window. At the end of a sealed segment (or
        when ``forced``: a window at its size cap) a torn frame is damage; otherwise it is
        waited for (the writer's next bytes, or the next window).
        """
        final = (sealed and not more) or forced
        consumed = 0
        n = len(data)
        spans = iter_frame_spans(data, 0, sealed=final)
        while (span := next(spans, None)) is not None:
            where = base + span.offset
            length = span.end - span.offset
            if span.status == "torn" and not final:
                break  # the writer is still appending this frame (or the next window has it)
            if span.status == "torn":
                self._end_skips()
                self._problem(entry, Problem(
                    seg.key, where, length, None,
                    f"sealed segment ends with an incomplete zstd frame of {length} bytes "
                    f"(cut by a crash or a copy); skipped", ""))
            elif span.status == "garbage":
                if more and not forced and span.end == n:  # a magic may straddle windows
                    if length <= 3:
                        break
                    span = replace(span, end=n - 3)
                    length -= 3
                self._end_skips()
                self._garbage(entry, where, length, span.reason,
                              data[span.offset:span.offset + 60].hex())
            else:
                resync = self._frame(seg, entry, data, span.offset, span.end, where)
                if resync is not None:  # a damaged frame swallowed the start of the next one
                    spans = iter_frame_spans(data, resync, sealed=final)
                    span = replace(span, end=resync)
            consumed = span.end
            if self.builder.points >= self.chunk_points:
                self._end_skips()  # a skip's problem commits with the bytes it covers
                self._set_offset(entry, base + consumed, sealed, done=False)
                bar.update(0, self.builder.points)
                self._flush(committer)
        return consumed

    def _garbage(self, entry: LedgerEntry, where: int, length: int, why: str, excerpt: str):
        """Bytes that are not a frame; one run of them across windows is one problem."""
        last = self.problems[-1] if self.problems else None
        if last is not None and last is self._last_garbage and last.segment == entry.segment \
                and last.offset + last.length == where:
            length += last.length
            self.problems[-1] = self._last_garbage = replace(
                last, length=length, reason=f"{length} bytes that are not a zstd frame "
                                            f"({why}); skipped to the next frame")
            return
        self._last_garbage = Problem(
            entry.segment, where, length, None,
            f"{length} bytes that are not a zstd frame ({why}); skipped to the next frame",
            excerpt)
        self._problem(entry, self._last_garbage)

    def _skip(self, entry: LedgerEntry, cause: tuple, reason: str, where: int, end: int):
        """A whole frame not loaded; consecutive ones with the same cause are one problem."""
        s = self.skips
        if s is not None and s.entry is entry and s.cause == cause and s.end == where:
            s.end, s.frames = end, s.frames + 1
            return
        self._end_skips()
        self.skips = _Skips(entry, cause, reason, where, end)

    def _end_skips(self) -> None:
        s, self.skips = self.skips, None
        if s is not None:
            self._problem(s.entry, s.problem())
            if s.cause[0] == "duplicate":
                self.report.duplicates += s.frames

    def _frame(self, seg: SegmentFile, entry: LedgerEntry, data: bytes, begin: int, end: int,
               where: int) -> int | None:
        """Load one frame; returns where to resume parsing if it was damaged."""
        frame = data[begin:end]
        entry.frames += 1
        self.report.frames += 1
        if is_skippable(frame):
            return
        try:
            content = self.decoder.decompress(frame)
        except FrameError as exc:
            nxt = data.find(FRAME_MAGIC, begin + 1, end)
            length = (nxt if nxt > 0 else end) - begin
            self._end_skips()
            self._problem(entry, Problem(
                seg.key, where, length, None,
                f"zstd frame of {length} bytes does not decompress ({exc}); skipped",
                frame[:30].hex()))
            return nxt if nxt > 0 else None
        metrics, others, bad = self.decoder.decode(content)
        n = len(metrics) + len(others)
        ident = frame_identity(content, metrics, others) if n else None
        if ident is not None and self._not_new(seg, entry, ident, frame, where, where + len(frame)):
            return None
        self._end_skips()
        for line_no, reason, text in bad:
            self._problem(entry, Problem(seg.key, where, len(frame), line_no, reason, text))
        if n:
            summary = self.builder.add(metrics, others, seg.run_id, seg.key, where)
            self.book.observe(seg.project, seg.run_id, seg.writer, summary)
        entry.events += n
        self.report.events += n
        return None

    def _not_new(self, seg: SegmentFile, entry: LedgerEntry, ident: tuple[str, str, int],
                 frame: bytes, where: int, end: int) -> bool:
        """Skip (and report) a frame of another folder's writer, or one loaded before."""
        run_id, writer, seq = ident
        if run_id != seg.run_id or writer != seg.writer:
            self._skip(entry, ("foreign", run_id, writer),
                       f"events of run {run_id!r}, writer {writer!r} in the folder of run "
                       f"{seg.run_id!r}, writer {seg.writer!r} (a copied or renamed folder?); "
                       f"not loaded", where, end)
            return True
        checksum = frame_checksum(frame)
        prior = self.frames.seen(run_id, writer, seq, checksum)
        if prior is not None:
            self._skip(entry, ("duplicate", prior[0]),
                       f"already loaded from {prior[0]} (the first at byte {prior[1]}: same "
                       f"writer, seq and checksum; a copied segment?); not loaded again",
                       where, end)
            return True
        entry.seq_lo, entry.seq_hi = self.frames.add(run_id, writer, seq, checksum, seg.key,
                                                     where)
        return False

    def _set_offset(self, entry: LedgerEntry, offset: int, sealed: bool, done: bool) -> None:
        entry.bytes = offset
        entry.sealed = sealed
        if sealed and done:
            entry.status = "damaged" if entry.error else "done"
        else:
            entry.status = "live"
        self.touched[entry.segment] = entry

    def _flush(self, committer: Committer, final: bool = False) -> None:
        self.book.refresh()
        runs, writers = self.book.take_dirty()
        tables = self.builder.to_arrow()
        for problem in self.builder.problems:
            self._problem(self.touched.get(problem.segment) or LedgerEntry(
                problem.segment, "", "", ""), problem)
        if not (tables or self.touched or self.problems or runs is not None):
            return
        self.report.add_rows(self.builder.rows())
        self.report.problems.extend(p.message() for p in self.problems)
        committer.submit(Chunk(tables, [replace(e) for e in self.touched.values()],
                               self.problems, runs, writers, self.frames.take_rows()))
        self.builder = TableBuilder()
        self.problems = []
        self.touched = {}


def run_pass(
    root: Path | str,
    backend: Backend,
    *,
    progress: bool = False,
    stale_after: float | None = None,
    chunk_points: int = CHUNK_POINTS,
    read_window: int = READ_WINDOW,
    owns: Callable[[str], bool] | None = None,
) -> IngestReport:
    """One ingest pass over ``root`` into ``backend``'s store; the caller holds the ingest
    lock. ``backend``: ``runlake.store.open_backend(runlake.store.locate(root, db))``.

    ``chunk_points`` bounds the rows of one commit (memory and reader wait);
    ``read_window`` the bytes of a segment held in memory at once (see :data:`READ_WINDOW`);
    ``owns`` (sharded ingest): the run ids this pass loads and keeps the status of, see
    :mod:`runlake.ingest.shard` (None: every run).
    """
    return _Pass(root, backend, progress, stale_after, chunk_points, read_window,
                 owns).run()


def check_root(root: str | Path | None) -> Path | str:
    """The resolved storage root (an ``s3://`` root stays its URL string).

    Raises:
        RootError: it does not exist or is not a directory.
        ObjectStoreError: an ``s3://`` root's bucket is missing, refused or unreachable.
    """
    path = resolve_root(root)
    if is_url(path):
        ObjectStore(path).check()
        return path
    if not path.is_dir():
        raise RootError(
            f"storage root {path} is not a directory: pass --root (or set RUNLAKE_DIR) to "
            f"the folder your training runs write to"
        )
    return path
