"""The unit of commit: one chunk of an ingest pass, as rows of store tables.

A chunk is everything ingest decoded since its last commit: event rows per table, the
problems to quarantine, the changed runs and writers, the frame keys and the advanced
ledger offsets. Every backend commits a chunk all-or-nothing (the DuckDB file in one
transaction, the lake as described in :mod:`runlake.store.lake`); :meth:`Chunk.tables_out`
turns it into Arrow tables shaped exactly as :mod:`runlake.store.spec` declares, so no
backend types a column of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Protocol

import pyarrow as pa

from runlake.store.spec import arrow_schema

__all__ = ["Chunk", "LEDGER_COLS", "LedgerEntry", "ProblemRow", "rows_table"]


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
"""The ledger columns ingest keeps in memory (``updated_at`` is stamped at commit)."""


class ProblemRow(Protocol):
    """What a quarantine row is made of (``runlake.ingest.decode.Problem``)."""

    segment: str
    offset: int
    length: int | None
    line_no: int | None
    reason: str
    excerpt: str


def rows_table(table: str, rows: list[tuple], names: list[str], **constants: Any) -> pa.Table:
    """Positional ``rows`` of the columns ``names`` (plus ``constants`` for every row) as
    an Arrow table of ``table``'s stored schema, columns in the spec's order."""
    schema = arrow_schema(table, plain=True)
    by_name = dict(zip(names, zip(*rows))) if rows else {n: () for n in names}
    cols = []
    for f in schema:
        if f.name in by_name:
            cols.append(pa.array(list(by_name[f.name]), f.type))
        elif f.name in constants:
            cols.append(pa.array([constants[f.name]] * len(rows), f.type))
        else:
            raise KeyError(f"no values for column {table}.{f.name}")
    return pa.Table.from_arrays(cols, schema=schema)


def _now_us() -> int:
    return time.time_ns() // 1000


_QUARANTINE_ATTRS = ("segment", "offset", "length", "line_no", "reason", "excerpt")
_QUARANTINE_COLS = ["segment", "byte_offset", "byte_length", "line_no", "reason", "excerpt"]
_FRAME_COLS = ["run_id", "writer", "seq", "checksum", "segment", "byte_offset"]


@dataclass(slots=True)
class Chunk:
    """One commit's worth of a pass.

    ``tables``: event rows by table (Arrow, as :class:`runlake.ingest.decode.TableBuilder`
    builds them); ``runs``/``writers``: the changed state rows (or None); ``frames``:
    ``(run_id, writer, seq, checksum, segment, byte_offset)`` per loaded frame.
    """

    tables: dict[str, pa.Table]
    ledger: list[LedgerEntry]
    problems: list[ProblemRow]
    runs: pa.Table | None
    writers: pa.Table | None
    frames: list[tuple]

    def tables_out(self) -> dict[str, pa.Table]:
        """Every table this chunk writes, in commit order, ledger last; state tables
        (runs, writers, ingest_ledger) hold the new versions of their rows."""
        now = _now_us()
        out: dict[str, pa.Table] = dict(self.tables)
        if self.problems:
            rows = [tuple(getattr(p, a) for a in _QUARANTINE_ATTRS) for p in self.problems]
            out["quarantine"] = rows_table("quarantine", rows, _QUARANTINE_COLS,
                                           detected_at=now)
        if self.frames:
            out["ingest_frames"] = rows_table("ingest_frames", self.frames, _FRAME_COLS)
        if self.runs is not None:
            out["runs"] = self.runs
        if self.writers is not None:
            out["writers"] = self.writers
        if self.ledger:
            rows = [tuple(getattr(e, c) for c in LEDGER_COLS) for e in self.ledger]
            out["ingest_ledger"] = rows_table("ingest_ledger", rows, LEDGER_COLS,
                                              updated_at=now)
        return out
