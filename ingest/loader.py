"""Exactly-once loading of segment bytes into the DuckDB store.

Durability story: the ledger (``ingest_ledger``) records, per segment, how many bytes have
been consumed, and only whole frames are ever consumed. A pass reads each segment from its
ledger offset, decodes the complete frames, and commits the resulting rows, the quarantine
rows, the writers/runs updates and the advanced ledger offsets in ONE DuckDB transaction.
If the process dies anywhere (SIGKILL included) the transaction either committed, and the
next pass starts after those bytes, or it did not, and the next pass reads them again:
nothing is lost or loaded twice. A large backlog is committed in chunks of about
``CHUNK_POINTS`` rows, each chunk its own such transaction, decoded while the previous
chunk commits on a second thread. A torn tail of an open segment is left for the next
pass; in a sealed segment it can never complete, so it is quarantined and the segment is
marked done. Damaged frames and bad lines are quarantined with file, offset and reason;
everything else loads. Only one ingest runs per root (:class:`IngestLock`), and the store
is opened for writing only while a chunk commits, so readers only ever wait briefly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import zstandard

from runlake.ingest.decode import FrameDecoder, Problem, TableBuilder
from runlake.ingest.discover import SegmentFile, discover
from runlake.ingest.progress import Progress
from runlake.ingest.report import IngestReport
from runlake.ingest.status import StatusBook
from runlake.ingest.store import read_store, write_store
from runlake.schemas.errors import RootError, StoreError
from runlake.schemas.segments import FRAME_MAGIC, default_db, iter_frame_spans, resolve_root

__all__ = ["CHUNK_POINTS", "run_pass"]

log = logging.getLogger("runlake.ingest")

CHUNK_POINTS = 1_000_000
"""Rows per commit when a pass has a large backlog."""

_LEDGER_COLS = ["segment", "project", "run_id", "writer", "bytes", "frames", "events",
                "sealed", "status", "error"]
_LEDGER_TYPES = [pa.string()] * 4 + [pa.int64()] * 3 + [pa.bool_(), pa.string(), pa.string()]
_QUARANTINE_COLS = ["segment", "byte_offset", "byte_length", "line_no", "reason", "excerpt"]
_QUARANTINE_TYPES = [pa.string(), pa.int64(), pa.int64(), pa.int32(), pa.string(), pa.string()]


@dataclass(slots=True)
class LedgerEntry:
    segment: str
    project: str
    run_id: str
    writer: str
    bytes: int = 0
    frames: int = 0
    events: int = 0
    sealed: bool = False
    status: str = "live"
    error: str | None = None


@dataclass(slots=True)
class _Chunk:
    tables: dict[str, pa.Table]
    ledger: list[LedgerEntry]
    problems: list[Problem]
    runs: pa.Table | None
    writers: pa.Table | None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _insert(con, table: str, tbl: pa.Table, verb: str = "INSERT") -> None:
    cols = ", ".join(_q(c) for c in tbl.column_names)
    con.register("_runlake_in", tbl)
    try:
        con.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM _runlake_in")
    finally:
        try:
            con.unregister("_runlake_in")
        except duckdb.Error:
            pass  # an aborted transaction refuses even this; the original error matters


def _commit(db: Path, chunk: _Chunk) -> None:
    """Write one chunk and its ledger offsets atomically."""
    ledger = pa.table(
        [pa.array([getattr(e, c) for e in chunk.ledger], t) for c, t in
         zip(_LEDGER_COLS, _LEDGER_TYPES)], names=_LEDGER_COLS)
    with write_store(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for table, tbl in chunk.tables.items():
                _insert(con, table, tbl)
            if chunk.problems:
                rows = [[getattr(p, a) for p in chunk.problems] for a in
                        ("segment", "offset", "length", "line_no", "reason", "excerpt")]
                _insert(con, "quarantine", pa.table(
                    [pa.array(r, t) for r, t in zip(rows, _QUARANTINE_TYPES)],
                    names=_QUARANTINE_COLS).append_column(
                        "detected_at", pa.array([_now_us()] * len(chunk.problems),
                                                pa.timestamp("us"))))
            if chunk.runs is not None:
                _insert(con, "runs", chunk.runs, "INSERT OR REPLACE")
                _insert(con, "writers", chunk.writers, "INSERT OR REPLACE")
            if chunk.ledger:
                _insert(con, "ingest_ledger", ledger.append_column(
                    "updated_at", pa.array([_now_us()] * len(chunk.ledger), pa.timestamp("us"))),
                    "INSERT OR REPLACE")
            con.execute("COMMIT")
        except BaseException as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # after an I/O error DuckDB may have rolled back (or given up) itself
            if isinstance(exc, duckdb.Error):
                detail = " ".join(str(exc).split())
                raise StoreError(
                    f"cannot write the store {db}: {detail}; nothing of this chunk was "
                    f"committed (free disk space, then run ingest again: it resumes where "
                    f"the last commit ended)") from exc
            raise


def _now_us() -> int:
    return time.time_ns() // 1000


class _Committer:
    """Commits chunks in order on a background thread while the next chunk is decoded."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.commits = 0
        self.commit_seconds = 0.0
        self.wait_seconds = 0.0
        self._queue: queue.Queue[_Chunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="runlake-ingest-commit",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    start = time.perf_counter()
                    _commit(self.db, chunk)
                    self.commit_seconds += time.perf_counter() - start
                    self.commits += 1
                except BaseException as exc:  # re-raised on the ingest thread
                    self._error = exc

    def submit(self, chunk: _Chunk) -> None:
        self._raise()
        start = time.perf_counter()
        self._queue.put(chunk)
        self.wait_seconds += time.perf_counter() - start

    def close(self) -> None:
        start = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self.wait_seconds += time.perf_counter() - start
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _needs_read(seg: SegmentFile, entry: LedgerEntry | None) -> bool:
    if entry is None:
        return True
    if seg.sealed and not entry.sealed:
        return True
    return seg.size > entry.bytes


def _read_tail(seg: SegmentFile, offset: int) -> tuple[bytes, bool] | None:
    """Bytes after ``offset`` and whether the segment is sealed; None if it vanished."""
    for path, sealed in ((seg.path, seg.sealed), (seg.sealed_path, True)):
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(), sealed
        except FileNotFoundError:
            continue  # an open segment sealed (renamed) since discovery: try its new name
    return None


def _is_skippable(frame: bytes) -> bool:
    return 0x184D2A50 <= int.from_bytes(frame[:4], "little") <= 0x184D2A5F


class _Pass:
    def __init__(self, root: Path, db: Path, progress: bool, stale_after: float | None,
                 chunk_points: int):
        self.root, self.db = root, db
        self.chunk_points = chunk_points
        self.progress = progress
        self.report = IngestReport()
        self.book = StatusBook(stale_after)
        self.decoder = FrameDecoder()
        self.builder = TableBuilder()
        self.problems: list[Problem] = []
        self.touched: dict[str, LedgerEntry] = {}

    def run(self) -> IngestReport:
        start = time.perf_counter()
        segments = discover(self.root)
        self.report.segments_seen = len(segments)
        if not self.db.exists():
            with write_store(self.db):
                pass  # create and migrate, so readers find an (empty) store
        with read_store(self.db) as con:
            ledger = {row[0]: LedgerEntry(*row) for row in con.execute(
                f"SELECT {', '.join(_LEDGER_COLS)} FROM ingest_ledger").fetchall()}
            pending = [s for s in segments if _needs_read(s, ledger.get(s.key))]
            self.book.load(con, {s.run_id for s in pending})
        total = sum(s.size - (ledger[s.key].bytes if s.key in ledger else 0) for s in pending)
        bar = Progress(total, self.progress)
        committer = _Committer(self.db)
        try:
            for seg in pending:
                entry = ledger.get(seg.key) or LedgerEntry(
                    seg.key, seg.project, seg.run_id, seg.writer)
                self._read_segment(seg, entry, committer, bar)
            self._flush(committer, final=True)
        finally:
            committer.close()
            bar.close()
        self.report.commits = committer.commits
        self.report.commit_seconds = committer.commit_seconds
        self.report.wait_seconds = committer.wait_seconds
        self.report.runs = self.book.statuses()
        self.report.seconds = time.perf_counter() - start
        return self.report

    def _problem(self, entry: LedgerEntry, problem: Problem) -> None:
        self.problems.append(problem)
        if entry.error is None:
            entry.error = problem.reason
        log.warning("runlake ingest: %s", problem.message())

    def _read_segment(self, seg: SegmentFile, entry: LedgerEntry, committer: _Committer,
                      bar: Progress) -> None:
        start = entry.bytes
        tail = _read_tail(seg, start)
        if tail is None:
            return
        data, sealed = tail
        self.report.segments += 1
        consumed = 0
        spans = iter_frame_spans(data, 0, sealed=sealed)
        while (span := next(spans, None)) is not None:
            where = start + span.offset
            length = span.end - span.offset
            if span.status == "torn" and not sealed:
                break  # the writer is still appending this frame: wait for more bytes
            if span.status == "torn":
                self._problem(entry, Problem(
                    seg.key, where, length, None,
                    f"sealed segment ends with an incomplete zstd frame of {length} bytes "
                    f"(cut by a crash or a copy); skipped", ""))
            elif span.status == "garbage":
                self._problem(entry, Problem(
                    seg.key, where, length, None,
                    f"{length} bytes that are not a zstd frame ({span.reason}); skipped to the "
                    f"next frame", data[span.offset:span.offset + 60].hex()))
            else:
                resync = self._frame(seg, entry, data, span.offset, span.end, where)
                if resync is not None:  # a damaged frame swallowed the start of the next one
                    spans = iter_frame_spans(data, resync, sealed=sealed)
                    span = replace(span, end=resync)
            consumed = span.end
            if self.builder.points >= self.chunk_points:
                self._set_offset(entry, start + consumed, sealed, done=False)
                bar.update(0, self.builder.points)
                self._flush(committer)
        self._set_offset(entry, start + consumed, sealed, done=True)
        self.report.bytes += consumed
        bar.update(len(data))

    def _frame(self, seg: SegmentFile, entry: LedgerEntry, data: bytes, begin: int, end: int,
               where: int) -> int | None:
        """Load one frame; returns where to resume parsing if it was damaged."""
        frame = data[begin:end]
        entry.frames += 1
        self.report.frames += 1
        if _is_skippable(frame):
            return
        try:
            content = self.decoder.decompress(frame)
        except (zstandard.ZstdError, ValueError) as exc:
            nxt = data.find(FRAME_MAGIC, begin + 1, end)
            length = (nxt if nxt > 0 else end) - begin
            self._problem(entry, Problem(
                seg.key, where, length, None,
                f"zstd frame of {length} bytes does not decompress ({exc}); skipped",
                frame[:30].hex()))
            return nxt if nxt > 0 else None
        metrics, others, bad = self.decoder.decode(content)
        for line_no, reason, text in bad:
            self._problem(entry, Problem(seg.key, where, len(frame), line_no, reason, text))
        n = len(metrics) + len(others)
        if n:
            summary = self.builder.add(metrics, others, seg.run_id, seg.key, where)
            self.book.observe(seg.project, seg.run_id, seg.writer, summary)
        entry.events += n
        self.report.events += n
        return None

    def _set_offset(self, entry: LedgerEntry, offset: int, sealed: bool, done: bool) -> None:
        entry.bytes = offset
        entry.sealed = sealed
        if sealed and done:
            entry.status = "damaged" if entry.error else "done"
        else:
            entry.status = "live"
        self.touched[entry.segment] = entry

    def _flush(self, committer: _Committer, final: bool = False) -> None:
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
        committer.submit(_Chunk(tables, [replace(e) for e in self.touched.values()],
                                self.problems, runs, writers))
        self.builder = TableBuilder()
        self.problems = []
        self.touched = {}


def run_pass(
    root: Path,
    db: Path,
    *,
    progress: bool = False,
    stale_after: float | None = None,
    chunk_points: int = CHUNK_POINTS,
) -> IngestReport:
    """One ingest pass over ``root`` into ``db``; the caller holds the ingest lock.

    ``chunk_points`` bounds the rows of one commit (memory and reader wait).
    """
    return _Pass(root, db, progress, stale_after, chunk_points).run()


def check_root(root: str | Path | None) -> Path:
    """The resolved storage root.

    Raises:
        RootError: it does not exist or is not a directory.
    """
    path = resolve_root(root)
    if not path.is_dir():
        raise RootError(
            f"storage root {path} is not a directory: pass --root (or set RUNLAKE_DIR) to "
            f"the folder your training runs write to"
        )
    return path


def store_path(root: Path, db: str | Path | None) -> Path:
    return Path(db) if db is not None else default_db(root)
