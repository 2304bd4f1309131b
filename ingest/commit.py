"""Committing one chunk of a pass: rows, quarantine, status, frame keys and ledger, atomically.

A chunk is everything decoded since the last commit. :func:`commit` writes it in ONE
DuckDB transaction, so the ledger offsets never run ahead of (or behind) the rows, frame
keys and quarantine rows they account for. :class:`Committer` runs the commits in order on
a background thread while the next chunk is decoded (see :mod:`runlake.ingest.loader`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

import duckdb
import pyarrow as pa

from runlake.ingest.decode import Problem
from runlake.ingest.store import write_store
from runlake.schemas.errors import StoreError

__all__ = ["Chunk", "Committer", "LedgerEntry", "commit"]


@dataclass(slots=True)
class LedgerEntry:
    """One ``ingest_ledger`` row: how far a segment (or a refused path) has been read."""

    segment: str
    project: str
    run_id: str
    writer: str
    bytes: int = 0
    frames: int = 0
    events: int = 0
    sealed: bool = False
    status: str = "live"  # live | done | damaged | skipped
    error: str | None = None
    seq_lo: int | None = None
    seq_hi: int | None = None


LEDGER_COLS = [f.name for f in fields(LedgerEntry)]
_LEDGER_TYPES = ([pa.string()] * 4 + [pa.int64()] * 3 + [pa.bool_(), pa.string(), pa.string()]
                 + [pa.int64()] * 2)
_QUARANTINE_COLS = ["segment", "byte_offset", "byte_length", "line_no", "reason", "excerpt"]
_QUARANTINE_TYPES = [pa.string(), pa.int64(), pa.int64(), pa.int32(), pa.string(), pa.string()]
_FRAME_COLS = ["run_id", "writer", "seq", "checksum", "segment", "byte_offset"]
_FRAME_TYPES = [pa.string(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.int64()]


@dataclass(slots=True)
class Chunk:
    tables: dict[str, pa.Table]
    ledger: list[LedgerEntry]
    problems: list[Problem]
    runs: pa.Table | None
    writers: pa.Table | None
    frames: list[tuple]


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


def _rows(rows: list, names: list[str], types: list[pa.DataType]) -> pa.Table:
    return pa.table([pa.array(list(c), t) for c, t in zip(zip(*rows), types)], names=names)


def _now_us() -> int:
    return time.time_ns() // 1000


def commit(db: Path, chunk: Chunk) -> None:
    """Write one chunk and its ledger offsets atomically.

    Raises:
        StoreError: the store cannot be written (nothing of the chunk was committed).
    """
    with write_store(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for table, tbl in chunk.tables.items():
                _insert(con, table, tbl)
            if chunk.problems:
                rows = [tuple(getattr(p, a) for a in ("segment", "offset", "length", "line_no",
                                                      "reason", "excerpt"))
                        for p in chunk.problems]
                _insert(con, "quarantine", _rows(rows, _QUARANTINE_COLS, _QUARANTINE_TYPES)
                        .append_column("detected_at", pa.array(
                            [_now_us()] * len(rows), pa.timestamp("us"))))
            if chunk.frames:
                _insert(con, "ingest_frames", _rows(chunk.frames, _FRAME_COLS, _FRAME_TYPES))
            if chunk.runs is not None:
                _insert(con, "runs", chunk.runs, "INSERT OR REPLACE")
                _insert(con, "writers", chunk.writers, "INSERT OR REPLACE")
            if chunk.ledger:
                ledger = _rows([tuple(getattr(e, c) for c in LEDGER_COLS) for e in chunk.ledger],
                               LEDGER_COLS, _LEDGER_TYPES)
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


class Committer:
    """Commits chunks in order on a background thread while the next chunk is decoded."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.commits = 0
        self.commit_seconds = 0.0
        self.wait_seconds = 0.0
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="runlake-ingest-commit",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            chunk = self._queue.get()
            try:
                if chunk is None:
                    return
                if self._error is None:
                    try:
                        start = time.perf_counter()
                        commit(self.db, chunk)
                        self.commit_seconds += time.perf_counter() - start
                        self.commits += 1
                    except BaseException as exc:  # re-raised on the ingest thread
                        self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, chunk: Chunk) -> None:
        self._raise()
        start = time.perf_counter()
        self._queue.put(chunk)
        self.wait_seconds += time.perf_counter() - start

    def wait_idle(self) -> None:
        """Return once every submitted chunk is committed (the store is closed again)."""
        start = time.perf_counter()
        self._queue.join()
        self.wait_seconds += time.perf_counter() - start
        self._raise()

    def close(self) -> None:
        start = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self.wait_seconds += time.perf_counter() - start
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
