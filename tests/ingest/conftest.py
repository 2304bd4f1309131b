"""Fixtures writing real segments: schemas.events structs -> ENCODER.encode_lines -> one
zstd frame (content size + checksum) per flush, appended to ``<seq>.jsonl.zst.open`` and
sealed by rename, exactly as the contract in runlake.schemas.segments describes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zstandard

from runlake.emitter.writer import encode_batch
from runlake.schemas import events as E
from runlake.schemas.codec import ENCODER, encode_nonfinite
from runlake.schemas.segments import segment_name
from runlake.store.spec import TABLES as SPEC_TABLES

_CCTX = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)


def frame(events: list, packed: bool = False) -> bytes:
    """One zstd frame holding the events as JSON lines; ``packed``: metrics in one
    ``metrics_block`` line, encoded by the emitter's own writer code."""
    if packed:
        return _CCTX.compress(encode_batch(events, lambda ev, exc: None)[0])
    return _CCTX.compress(ENCODER.encode_lines(events))


class SegmentWriter:
    """Writes one writer folder the way the emitter does (minus threads)."""

    def __init__(self, root: Path, project: str, run_id: str, writer: str | None = None,
                 rank: int = 0, attempt: int = 0):
        self.root, self.project, self.run_id, self.rank = root, project, run_id, rank
        self.attempt = attempt
        self.writer = writer or f"r{rank:04d}-a{attempt:03d}-test"
        self.dir = root / project / run_id / self.writer
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seq = 0
        self.segment = 0
        self.pending: list = []
        self.ts = time.time_ns()

    def env(self) -> dict:
        self.seq += 1
        self.ts += 1000
        return dict(v=1, run_id=self.run_id, writer=self.writer, seq=self.seq, ts=self.ts,
                    rank=self.rank)

    @property
    def path(self) -> Path:
        return self.dir / segment_name(self.segment, sealed=False)

    def start(self, name: str = "run", **kw) -> "SegmentWriter":
        kw.setdefault("heartbeat_s", 30.0)
        self.pending.append(E.RunStart(**self.env(), project=self.project, name=name,
                                       attempt=self.attempt, **kw))
        return self

    def metrics(self, step: int, values: dict, epoch=None) -> "SegmentWriter":
        self.pending.append(E.Metrics(**self.env(), step=step, values=encode_nonfinite(values),
                                      epoch=epoch))
        return self

    def add(self, cls, **fields) -> "SegmentWriter":
        self.pending.append(cls(**self.env(), **fields))
        return self

    def end(self, status: str = "finished", **kw) -> "SegmentWriter":
        self.pending.append(E.RunEnd(**self.env(), status=status, **kw))
        return self

    def flush(self, packed: bool = False) -> bytes:
        data = frame(self.pending, packed) if self.pending else b""
        self.pending = []
        with open(self.path, "ab") as f:
            f.write(data)
        return data

    def raw(self, data: bytes) -> None:
        """Append arbitrary bytes to the open segment (damage on purpose)."""
        with open(self.path, "ab") as f:
            f.write(data)

    def seal(self) -> Path:
        sealed = self.dir / segment_name(self.segment, sealed=True)
        if self.path.exists():
            self.path.rename(sealed)
        self.segment += 1
        return sealed


@pytest.fixture
def seg_root(tmp_path) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    return root


@pytest.fixture
def make_writer(seg_root):
    def make(run_id="run-a", project="proj", **kw) -> SegmentWriter:
        return SegmentWriter(seg_root, project, run_id, **kw)
    return make


def _query(db: Path, sql: str, params=None) -> list[tuple]:
    """Rows of a read-only query on the store."""
    from runlake.store import read_store

    with read_store(db) as con:
        return con.execute(sql, params or []).fetchall()


# every data table of the store's one declaration (anomalies are derived; frame keys
# are bookkeeping whose rows depend on how the same data was framed)
TABLES = tuple(t for t in SPEC_TABLES if t not in ("anomalies", "ingest_frames"))


def _fingerprint(db: Path) -> dict:
    """Row count and an order-independent content hash of every data table."""
    out = {}
    for table in TABLES:
        cols = "ingest_ledger.* EXCLUDE (updated_at)" if table == "ingest_ledger" else (
            "quarantine.* EXCLUDE (detected_at)" if table == "quarantine" else f"{table}.*")
        out[table] = _query(db, f"SELECT count(*), coalesce(sum(hash(t))::VARCHAR, '0') "
                               f"FROM (SELECT {cols} FROM {table}) t")[0]
    return out


@pytest.fixture
def query():
    """``query(db, sql, params=None) -> rows`` on a read-only connection."""
    return _query


@pytest.fixture
def fingerprint():
    """``fingerprint(db) -> {table: (rows, content hash)}`` over every data table."""
    return _fingerprint


@pytest.fixture
def make_frame():
    """``make_frame(events) -> bytes``: one zstd frame as the emitter writes it."""
    return frame


@pytest.fixture(scope="session")
def segment_writer():
    """The :class:`SegmentWriter` class, for module-scoped fixtures."""
    return SegmentWriter
