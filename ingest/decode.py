"""Turning segment frames into Arrow tables, one per store table.

A frame is decompressed (its zstd checksum is verified) and decoded in one C call into
event structs; metrics take a lean struct that skips the envelope fields the store does
not keep. :class:`TableBuilder` then appends the events' fields to plain Python lists per
column, in bulk (a metrics event extends the key and value lists with its whole mapping),
and :meth:`TableBuilder.to_arrow` builds the columns at once: per-event columns are
gathered with one ``take`` over an index array, metric values become float64 in one numpy
call (non-finite tokens, booleans and nulls included). Nothing here raises on content:
every problem becomes a :class:`Problem` that ingest quarantines.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Union

import msgspec
import numpy as np
import pyarrow as pa
import zstandard

from runlake.schemas import events as E
from runlake.schemas.codec import CURRENT_VERSIONS, decode_lines, to_float
from runlake.schemas.events import MetricValue

__all__ = ["ARROW_SCHEMAS", "FrameDecoder", "Problem", "TableBuilder", "ts_us"]

_MAX_FRAME_CONTENT = 1 << 31  # a corrupt header must not make us allocate terabytes


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that could not be loaded: where it is and why (a quarantine row)."""

    segment: str
    offset: int
    length: int | None
    line_no: int | None
    reason: str
    excerpt: str = ""

    def message(self) -> str:
        where = f"{self.segment} at byte {self.offset}"
        if self.line_no is not None:
            where += f", line {self.line_no}"
        return f"{where}: {self.reason}"


class _LeanMetrics(msgspec.Struct, tag_field="kind", tag="metrics", gc=False):
    """Metrics without the envelope fields the store does not keep (writer, seq)."""

    v: int
    run_id: str
    ts: int | float
    rank: int
    step: int
    values: dict[str, MetricValue]
    epoch: int | None = None


_FAST = msgspec.json.Decoder(
    Union[
        _LeanMetrics, E.RunStart, E.System, E.Data, E.Dataset, E.Checkpoint, E.Sample,
        E.Log, E.Alert, E.Heartbeat, E.RunEnd,
    ]
)
_CURRENT = dict(CURRENT_VERSIONS)


def ts_us(ts: int | float | None) -> int | None:
    """An event ``ts`` (int ns, or float seconds) as integer microseconds since the epoch."""
    if ts is None:
        return None
    if ts.__class__ is int:
        return ts // 1000
    return int(round(ts * 1e6))


class FrameDecoder:
    """Decompress and decode one frame. Not thread-safe: one per thread."""

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()

    def decompress(self, frame: bytes) -> bytes:
        """The frame's content; raises ``zstandard.ZstdError``/``ValueError`` when damaged."""
        size = zstandard.frame_content_size(frame)
        if size > _MAX_FRAME_CONTENT:
            raise ValueError(f"frame header declares {size} bytes of content (corrupt header?)")
        if size < 0:  # no content size in the header: stream it
            return self._dctx.decompressobj().decompress(frame)
        return self._dctx.decompress(frame)

    def decode(self, content: bytes) -> tuple[list[Any], list[tuple[int, str, str]]]:
        """Events of a frame's content, and (line_no, reason, excerpt) for bad lines."""
        try:
            events = _FAST.decode_lines(content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            for ev in events:
                if ev.v != _CURRENT[ev.__struct_config__.tag]:
                    break
            else:
                return events, []
        events, problems = decode_lines(content)
        return events, [(p.line_no, p.reason, p.text) for p in problems]


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


_D = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("us")
ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "metrics": pa.schema(
        [("run_id", _D), ("rank", pa.int32()), ("step", pa.int64()), ("epoch", pa.int32()),
         ("ts", _TS), ("key", _D), ("value", pa.float64())]
    ),
    "data_items": pa.schema(
        [("run_id", _D), ("rank", pa.int32()), ("step", pa.int64()), ("epoch", pa.int32()),
         ("split", pa.string()), ("item_id", pa.string()), ("source", pa.string()),
         ("dataset", pa.string()), ("augment", pa.string()), ("cache_hit", pa.bool_()),
         ("load_ms", pa.float64()), ("ts", _TS)]
    ),
    "datasets": pa.schema(
        [("run_id", pa.string()), ("rank", pa.int32()), ("ts", _TS), ("step", pa.int64()),
         ("name", pa.string()), ("version", pa.string()), ("digest", pa.string()),
         ("items", pa.int64()), ("source", pa.string()), ("split", pa.string()),
         ("meta", pa.string())]
    ),
    "checkpoints": pa.schema(
        [("run_id", pa.string()), ("rank", pa.int32()), ("ts", _TS), ("step", pa.int64()),
         ("uri", pa.string()), ("bytes", pa.int64()), ("sha256", pa.string()),
         ("metrics", pa.string()), ("tags", pa.list_(pa.string()))]
    ),
    "samples": pa.schema(
        [("run_id", pa.string()), ("rank", pa.int32()), ("ts", _TS), ("step", pa.int64()),
         ("name", pa.string()), ("uri", pa.string()), ("split", pa.string()),
         ("item_id", pa.string()), ("key", pa.string()), ("value", pa.float64()),
         ("meta", pa.string())]
    ),
    "logs": pa.schema(
        [("run_id", pa.string()), ("rank", pa.int32()), ("ts", _TS), ("step", pa.int64()),
         ("level", pa.string()), ("levelno", pa.int32()), ("logger", pa.string()),
         ("message", pa.string())]
    ),
    "alerts": pa.schema(
        [("run_id", pa.string()), ("rank", pa.int32()), ("ts", _TS), ("step", pa.int64()),
         ("alert", pa.string()), ("severity", pa.string()), ("key", pa.string()),
         ("value", pa.float64()), ("message", pa.string()), ("suggestion", pa.string()),
         ("source", pa.string())]
    ),
}
_ROW_TABLES = ("datasets", "checkpoints", "samples", "logs", "alerts")
CONTROL_KINDS = (E.RunStart, E.Heartbeat, E.RunEnd)


@dataclass(slots=True)
class FrameSummary:
    """What status tracking needs from a frame: liveness, progress and control events."""

    events: int
    last_ts_us: int | None
    last_step: int | None
    control: list[Any]


def _per_item(value: Any, n: int, what: str, problems: list[str]) -> list[Any]:
    if not isinstance(value, list):
        return [value] * n
    if len(value) != n:
        problems.append(f"data event: {what} has {len(value)} entries for {n} items")
        value = (value + [None] * n)[:n]
    return value


class TableBuilder:
    """Column lists for one chunk of frames; :meth:`to_arrow` makes the Arrow tables."""

    def __init__(self) -> None:
        self.points = 0
        self._runs: dict[str, int] = {}
        # metrics: per event, then per point
        self._m_run: list[int] = []
        self._m_rank: list[int] = []
        self._m_step: list[int | None] = []
        self._m_epoch: list[int | None] = []
        self._m_ts: list[int | float] = []
        self._m_count: list[int] = []
        self._m_keys: list[str] = []
        self._m_vals: list[Any] = []
        self._m_frames: list[tuple[int, str, int]] = []  # (first point, segment, offset)
        self._d: dict[str, list[Any]] = {f.name: [] for f in ARROW_SCHEMAS["data_items"]}
        self._d_run: list[int] = []
        self._rows: dict[str, list[tuple]] = {t: [] for t in _ROW_TABLES}
        self.problems: list[Problem] = []

    def _run_index(self, run_id: str) -> int:
        idx = self._runs.get(run_id)
        if idx is None:
            idx = self._runs[run_id] = len(self._runs)
        return idx

    def add(self, events: list[Any], run_id: str, segment: str, offset: int) -> FrameSummary:
        """Append a frame's events; rows take ``run_id`` (the run folder they were found in)."""
        run = self._run_index(run_id)
        self._m_frames.append((len(self._m_vals), segment, offset))
        m_run, m_rank, m_step = self._m_run.append, self._m_rank.append, self._m_step.append
        m_epoch, m_ts, m_count = self._m_epoch.append, self._m_ts.append, self._m_count.append
        keys, vals = self._m_keys.extend, self._m_vals.extend
        control = []
        last_step = None
        mismatched = 0
        for ev in events:
            cls = ev.__class__
            if ev.run_id != run_id:
                mismatched += 1
                continue
            if cls is _LeanMetrics or cls is E.Metrics:
                v = ev.values
                keys(v)
                vals(v.values())
                m_count(len(v))
                m_run(run)
                m_rank(ev.rank)
                m_step(ev.step)
                m_epoch(ev.epoch)
                m_ts(ev.ts)
                last_step = ev.step
            elif cls is E.System:
                v = ev.values
                keys([k if k.startswith("sys/") else "sys/" + k for k in v])
                vals(v.values())
                m_count(len(v))
                m_run(run)
                m_rank(ev.rank)
                m_step(ev.step)
                m_epoch(None)
                m_ts(ev.ts)
            elif cls in CONTROL_KINDS:
                control.append(ev)
                if ev.__class__ is not E.RunStart and ev.step is not None:
                    last_step = ev.step
            else:
                self._add_other(ev, run_id, run, segment, offset)
        if mismatched:
            self.problems.append(
                Problem(segment, offset, None, None,
                        f"{mismatched} event(s) name another run_id than their folder "
                        f"{run_id!r}; skipped", "")
            )
        self.points = len(self._m_vals)
        last_ts = ts_us(events[-1].ts) if events else None
        return FrameSummary(len(events), last_ts, last_step, control)

    def _add_other(self, ev: Any, run_id: str, run: int, segment: str, offset: int) -> None:
        cls = ev.__class__
        ts = ts_us(ev.ts)
        if cls is E.Data:
            n = len(ev.items)
            notes: list[str] = []
            d = self._d
            aug = ev.augment
            if isinstance(aug, list):
                d["augment"].extend([_json(a) for a in _per_item(aug, n, "augment", notes)])
            else:
                d["augment"].extend([_json(aug)] * n)
            d["cache_hit"].extend(_per_item(ev.cache_hit, n, "cache_hit", notes))
            d["load_ms"].extend(_per_item(ev.load_ms, n, "load_ms", notes))
            d["item_id"].extend(ev.items)
            for col, value in (("rank", ev.rank), ("step", ev.step), ("epoch", ev.epoch),
                               ("split", ev.split), ("source", ev.source),
                               ("dataset", ev.dataset), ("ts", ts)):
                d[col].extend([value] * n)
            self._d_run.extend([run] * n)
            for note in notes:
                self.problems.append(Problem(segment, offset, None, None, note, ""))
        elif cls is E.Log:
            self._rows["logs"].append(
                (run_id, ev.rank, ts, ev.step, ev.level, ev.levelno, ev.logger, ev.message))
        elif cls is E.Alert:
            value = self._float(ev.value, segment, offset) if ev.value is not None else None
            self._rows["alerts"].append(
                (run_id, ev.rank, ts, ev.step, ev.alert, ev.severity, ev.key, value,
                 ev.message, ev.suggestion, ev.source))
        elif cls is E.Checkpoint:
            self._rows["checkpoints"].append(
                (run_id, ev.rank, ts, ev.step, ev.uri, ev.bytes, ev.sha256,
                 _json(ev.metrics), list(ev.tags)))
        elif cls is E.Sample:
            meta = _json(ev.meta) if ev.meta else None
            scores = ev.scores or {"": None}
            for key, value in scores.items():
                value = self._float(value, segment, offset) if value is not None else None
                self._rows["samples"].append(
                    (run_id, ev.rank, ts, ev.step, ev.name, ev.uri, ev.split, ev.item_id,
                     key, value, meta))
        elif cls is E.Dataset:
            self._rows["datasets"].append(
                (run_id, ev.rank, ts, ev.step, ev.name, ev.version, ev.digest, ev.items,
                 ev.source, ev.split, _json(ev.meta) if ev.meta else None))

    def _float(self, value: Any, segment: str, offset: int) -> float:
        try:
            return to_float(value)
        except (ValueError, TypeError) as exc:
            self.problems.append(Problem(segment, offset, None, None, f"{exc}; stored as NaN",
                                         repr(value)[:200]))
            return float("nan")

    def rows(self) -> dict[str, int]:
        """Row counts per table so far."""
        out = {"metrics": len(self._m_vals), "data_items": len(self._d_run)}
        out.update({t: len(r) for t, r in self._rows.items()})
        return out

    def _metric_values(self) -> np.ndarray:
        try:
            return np.array(self._m_vals, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            pass
        starts = [f[0] for f in self._m_frames]
        out = np.empty(len(self._m_vals), dtype=np.float64)
        for i, value in enumerate(self._m_vals):
            try:
                out[i] = to_float(value)
            except (ValueError, TypeError, OverflowError) as exc:
                _, segment, offset = self._m_frames[bisect.bisect_right(starts, i) - 1]
                self.problems.append(Problem(
                    segment, offset, None, None,
                    f"metric {self._m_keys[i]!r}: {exc}; stored as NaN", repr(value)[:200]))
                out[i] = np.nan
        return out

    def _timestamps(self, ts: list[int | float]) -> pa.Array:
        if all(t.__class__ is int for t in ts):
            return pa.array(np.array(ts, dtype=np.int64) // 1000, _TS)
        return pa.array([ts_us(t) for t in ts], _TS)

    def to_arrow(self) -> dict[str, pa.Table]:
        """The chunk as Arrow tables (only tables that have rows)."""
        runs = pa.array(list(self._runs), pa.string())
        out: dict[str, pa.Table] = {}
        if self._m_vals:
            counts = np.array(self._m_count, dtype=np.int64)
            idx = pa.array(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
            run_idx = pa.array(np.array(self._m_run, dtype=np.int32)).take(idx)
            out["metrics"] = pa.table(
                [
                    pa.DictionaryArray.from_arrays(run_idx, runs),
                    pa.array(self._m_rank, pa.int32()).take(idx),
                    pa.array(self._m_step, pa.int64()).take(idx),
                    pa.array(self._m_epoch, pa.int32()).take(idx),
                    self._timestamps(self._m_ts).take(idx),
                    pa.array(self._m_keys, _D),
                    pa.array(self._metric_values(), pa.float64()),
                ],
                schema=ARROW_SCHEMAS["metrics"],
            )
        if self._d_run:
            cols = dict(self._d)
            cols["run_id"] = pa.DictionaryArray.from_arrays(
                pa.array(np.array(self._d_run, dtype=np.int32)), runs)
            schema = ARROW_SCHEMAS["data_items"]
            out["data_items"] = pa.table(
                [cols[f.name] if f.name == "run_id" else pa.array(cols[f.name], f.type)
                 for f in schema], schema=schema)
        for table, rows in self._rows.items():
            if rows:
                schema = ARROW_SCHEMAS[table]
                columns = list(zip(*rows))
                out[table] = pa.table(
                    [pa.array(list(c), f.type) for c, f in zip(columns, schema)], schema=schema)
        return out
