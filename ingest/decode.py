"""Turning segment frames into Arrow tables, one per store table.

A frame is decompressed (its zstd checksum is verified) and decoded in one C call into
event structs. The emitter writes a flush's metrics as one ``metrics_block`` line, already
column-wise: :class:`TableBuilder` turns each of its groups into numpy columns with a few
vectorised calls (values in one float64 conversion, steps and timestamps gathered by row
index). Metrics written one event per line (older segments, single events) take a lean
struct that skips the envelope fields the store does not keep; their fields are appended
to plain Python lists in bulk and become columns at :meth:`TableBuilder.to_arrow`.
Non-finite tokens, booleans and nulls become floats; nothing here raises on content:
every problem becomes a :class:`Problem` that ingest quarantines.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Literal, Union

import msgspec
import numpy as np
import pyarrow as pa

from runlake.schemas import events as E
from runlake.schemas.codec import CURRENT_VERSIONS, decode_current, decode_lines, to_float
from runlake.schemas.events import MetricValue
from runlake.schemas.metric_keys import system_key
from runlake.schemas.segments import FrameReader
from runlake.ingest.decode_media import KIND_TABLE as _KIND_TABLE, media_row
from runlake.store.spec import arrow_schema

__all__ = ["FrameDecoder", "Problem", "TableBuilder", "frame_identity", "ts_us"]



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
    """Metrics without the envelope fields the store does not keep (writer, seq).

    ``v`` must be the current version: anything else fails validation, and the frame takes
    the line-by-line path that upcasts older versions and quarantines newer ones.
    """

    v: Literal[CURRENT_VERSIONS["metrics"]]  # type: ignore[valid-type]
    run_id: str
    ts: E.Int64 | E.Seconds
    rank: E.Int32
    step: E.Int64
    values: dict[str, MetricValue]
    epoch: E.Int32 | None = None


class _Envelope(msgspec.Struct, gc=False):
    """A line's identity; the other fields are skipped, not decoded."""

    run_id: str
    writer: str
    seq: int


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_FAST = msgspec.json.Decoder(
    Union[
        _LeanMetrics, E.MetricsBlock, E.RunStart, E.System, E.Data, E.Dataset, E.Checkpoint,
        E.Sample, E.Log, E.Alert, E.Heartbeat, E.RunEnd, E.Histogram, E.Media, E.RunUpdate,
    ]
)
_PINNED = (_LeanMetrics,)  # its ``Literal`` version is checked while decoding


def ts_us(ts: int | float | None) -> int | None:
    """An event ``ts`` (int ns, or float seconds) as integer microseconds since the epoch."""
    if ts is None:
        return None
    if ts.__class__ is int:
        return ts // 1000
    return int(round(ts * 1e6))


class FrameDecoder:
    """Decompress and decode one frame. Not thread-safe: one per thread.

    Decompression is :class:`runlake.schemas.segments.FrameReader`'s (the frame-size guard
    included), the one-call fast path :func:`runlake.schemas.codec.decode_current`'s; this
    class only adds ingest's lean metrics struct.
    """

    def __init__(self) -> None:
        self.decompress = FrameReader().decompress
        """``decompress(frame) -> content``; raises ``FrameError`` (a ``ValueError``)."""

    def decode(self, content: bytes) -> tuple[list[Any], list[Any], list[tuple[int, str, str]]]:
        """Decode a frame's content: (metrics events, other events and blocks, bad lines).

        The whole frame is decoded in one C call, ``metrics`` lines through a lean struct
        and ``metrics_block`` lines as blocks (loaded column-wise by :class:`TableBuilder`);
        any surprise (a bad line, an older or newer version, an inconsistent block) falls
        back to :func:`decode_lines`, which decodes line by line, upcasts, unpacks blocks
        into events and reports ``(line_no, reason, excerpt)`` per bad line.
        """
        events = decode_current(content, _FAST, _PINNED)
        if events is not None:
            metrics = [ev for ev in events if ev.__class__ is _LeanMetrics]
            if len(metrics) == len(events):
                return metrics, [], []
            return metrics, [ev for ev in events if ev.__class__ is not _LeanMetrics], []
        events, problems = decode_lines(content)
        metrics = [ev for ev in events if ev.__class__ is E.Metrics]
        others = [ev for ev in events if ev.__class__ is not E.Metrics]
        return metrics, others, [(p.line_no, p.reason, p.text) for p in problems]


def frame_identity(content: bytes, metrics: list[Any], others: list[Any]
                   ) -> tuple[str, str, int] | None:
    """``(run_id, writer, seq)`` of one event of a decoded frame, chosen the same way for
    the same bytes (the first non-metrics line, else the first metrics line), or None when
    it has no event. A frame is written by one writer, so this names the frame's writer.

    The lean metrics struct skips ``writer`` and ``seq`` (per-event cost), so a frame of
    only such lines has its first line's envelope decoded again: one short line per frame.
    """
    if others:
        ev = others[0]
    elif not metrics:
        return None
    elif metrics[0].__class__ is not _LeanMetrics:
        ev = metrics[0]
    else:
        end = content.find(b"\n")
        try:
            ev = _ENVELOPE.decode(content if end < 0 else content[:end])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
    return ev.run_id, ev.writer, ev.seq


def _json(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


_ROW_TABLES = ("datasets", "checkpoints", "samples", "logs", "alerts", "histograms", "media",
               "updates")
_TS = pa.timestamp("us")
_SCHEMAS: dict[str, pa.Schema] = {
    t: arrow_schema(t) for t in ("metrics", "data_items", *_ROW_TABLES)
}  # the store spec's Arrow schemas, built once
CONTROL_KINDS = (E.RunStart, E.Heartbeat, E.RunEnd)
_RANK, _STEP, _EPOCH = attrgetter("rank"), attrgetter("step"), attrgetter("epoch")
_TS_OF, _VALUES = attrgetter("ts"), attrgetter("values")
_RUN_ID = attrgetter("run_id")


def _timestamps_us(ts: list[int | float]) -> np.ndarray:
    """Event timestamps (int ns, or float seconds) as int64 microseconds."""
    arr = np.array(ts)
    if arr.dtype.kind == "i":  # all ints (one C pass; a float anywhere makes it float64)
        return arr // 1000
    return np.array([ts_us(t) for t in ts], dtype=np.int64)


def _floats(values: list[Any], describe: Callable[[int], tuple[str, int, str]],
            problems: list[Problem]) -> np.ndarray:
    """Metric values as float64 (tokens, bools and nulls included) in one call when possible.

    A value that is not a number becomes NaN and a problem naming ``describe(i)``'s
    (segment, offset, key).
    """
    try:  # fromiter: np.array's conversion (same values accepted), ~3x faster on a list
        return np.fromiter(values, np.float64, len(values))
    except (ValueError, TypeError, OverflowError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            out[i] = to_float(value)
        except (ValueError, TypeError, OverflowError) as exc:
            segment, offset, key = describe(i)
            problems.append(Problem(segment, offset, None, None,
                                    f"metric {key!r}: {exc}; stored as NaN", repr(value)[:200]))
            out[i] = np.nan
    return out


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
        self._key_ids: dict[str, int] = {}  # metric key -> dictionary code, for all parts
        # metrics events (one per line): per event (run, rank, step, epoch, ts), per point
        # (value), and the key sequence as runs of consecutive events sharing one key tuple
        self._m_run: list[int] = []
        self._m_rank: list[int] = []
        self._m_step: list[int | None] = []
        self._m_epoch: list[int | None] = []
        self._m_ts: list[int | float] = []
        self._m_vals: list[Any] = []
        self._keysets: dict[tuple[str, ...], int] = {}
        self._ks_runs: list[list[int]] = []  # [keyset id, events]
        self._last_ks: tuple[str, ...] | None = None
        self._m_frames: list[tuple[int, str, int]] = []  # (first point, segment, offset)
        # metrics blocks: values converted per group, the rest kept as the decoded lists
        # (one C-level extend each) and made into columns once per chunk
        # (:meth:`_block_part`): a frame costs a few list operations, not a dozen arrays
        self._b_steps: list[int] = []  # per block row
        self._b_times: list[int | float] = []
        self._b_epochs: list[tuple[int, list[int | None]]] = []  # (first row, epochs)
        self._b_vals: list[np.ndarray] = []  # per group, converted while the floats are
        # fresh: freed at once, their memory is reused hot (~20% less CPU than keeping them)
        self._g_rows: list[int] = []  # per group row: its block row (chunk-wide index)
        self._g_nrows: list[int] = []  # per group: rows, keys, key codes, run, rank
        self._g_k: list[int] = []
        self._g_codes: list[int] = []  # the groups' key codes, one after another
        self._g_run: list[int] = []
        self._g_rank: list[int] = []
        self._code_of: dict[tuple[str, ...], list[int]] = {}
        self._block_points = 0
        self._d: dict[str, list[Any]] = {f.name: [] for f in _SCHEMAS["data_items"]}
        self._d_run: list[int] = []
        self._rows: dict[str, list[tuple]] = {t: [] for t in _ROW_TABLES}
        self.problems: list[Problem] = []

    def _run_index(self, run_id: str) -> int:
        idx = self._runs.get(run_id)
        if idx is None:
            idx = self._runs[run_id] = len(self._runs)
        return idx

    def _key_codes(self, keys: list[str] | tuple[str, ...]) -> np.ndarray:
        ids = self._key_ids
        return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int32)

    def _keys(self, ks: tuple[str, ...], runs: list[list[int]]) -> None:
        if ks == self._last_ks:
            runs[-1][1] += 1
            return
        kid = self._keysets.get(ks)
        if kid is None:
            kid = self._keysets[ks] = len(self._keysets)
        runs.append([kid, 1])
        self._last_ks = ks

    def _add_metrics(self, events: list[Any], run: int, system: bool = False) -> None:
        n = len(events)
        self._m_run.extend([run] * n)
        self._m_rank.extend(map(_RANK, events))
        self._m_step.extend(map(_STEP, events))
        self._m_epoch.extend([None] * n if system else map(_EPOCH, events))
        self._m_ts.extend(map(_TS_OF, events))
        vals, keys, runs = self._m_vals.extend, self._keys, self._ks_runs
        for v in map(_VALUES, events):
            vals(v.values())
            ks = tuple(v) if not system else tuple(map(system_key, v))
            if ks == self._last_ks:
                runs[-1][1] += 1
            else:
                keys(ks, runs)

    def _add_block(self, block: E.MetricsBlock, run: int, segment: str, offset: int) -> None:
        """Append a block's rows and groups (points ordered by group, then row, then key).

        The schema bounds every integer to the store's types, so the columns always fit.
        """
        n = len(block.steps)
        base = len(self._b_steps)
        self._b_steps += block.steps
        self._b_times += block.times
        if block.epochs is not None:
            self._b_epochs.append((base, block.epochs))
        code_of, ids = self._code_of, self._key_ids
        for g in block.groups:
            k = len(g.keys)
            if not k:
                continue
            ks = tuple(g.keys)
            codes = code_of.get(ks)
            if codes is None:
                codes = code_of[ks] = [ids.setdefault(key, len(ids)) for key in ks]
            if g.rows is None:
                self._g_rows += range(base, base + n)
                self._g_nrows.append(n)
            else:
                self._g_rows += map(base.__add__, g.rows)
                self._g_nrows.append(len(g.rows))
            self._g_k.append(k)
            self._g_codes += codes
            self._g_run.append(run)
            self._g_rank.append(block.rank)
            self._b_vals.append(_floats(
                g.values, lambda i, keys=g.keys, k=k: (segment, offset, keys[i % k]),
                self.problems))
            self._block_points += len(g.values)

    def add(self, metrics: list[Any], others: list[Any], run_id: str, segment: str,
            offset: int) -> FrameSummary:
        """Append a frame's events; rows take ``run_id`` (the run folder they were found in).

        Events naming another run are skipped and reported.
        """
        run = self._run_index(run_id)
        self._m_frames.append((len(self._m_vals), segment, offset))
        total = len(metrics) + len(others)
        mismatched = []
        last_block = None
        if metrics and set(map(_RUN_ID, metrics)) != {run_id}:  # C-level scan; rare mismatch
            mismatched = [ev for ev in metrics if ev.run_id != run_id]
            metrics = [ev for ev in metrics if ev.run_id == run_id]
        if metrics:
            self._add_metrics(metrics, run)
        control = []
        last_step = max(map(_STEP, metrics)) if metrics else None  # highest: steps may go back
        last_ts = max(_TS_OF(metrics[-1]), _TS_OF(others[-1])) if metrics and others else (
            _TS_OF(metrics[-1]) if metrics else _TS_OF(others[-1]) if others else None)
        systems = []
        for ev in others:
            cls = ev.__class__
            if ev.run_id != run_id:
                mismatched.append(ev)
            elif cls is E.MetricsBlock:
                total += len(ev.steps) - 1
                self._add_block(ev, run, segment, offset)
                last_block = ev
                if ev.steps:
                    top = max(ev.steps)
                    last_step = top if last_step is None else max(last_step, top)
            elif cls is E.System:
                systems.append(ev)
            elif cls in CONTROL_KINDS:
                control.append(ev)
            elif cls is E.RunUpdate:  # a row, and merged into the run by the status book
                control.append(ev)
                self._add_other(ev, run_id, run, segment, offset)
            elif cls is E.Metrics:  # from the line-by-line fallback
                self._add_metrics([ev], run)
                last_step = ev.step if last_step is None else max(last_step, ev.step)
            else:
                self._add_other(ev, run_id, run, segment, offset)
        if systems:
            self._add_metrics(systems, run, system=True)
        if mismatched:
            self.problems.append(Problem(
                segment, offset, None, None,
                f"{len(mismatched)} event(s) name another run_id ({mismatched[0].run_id!r}) "
                f"than their folder {run_id!r}; skipped", ""))
        if last_block is not None and last_block.steps:
            last_ts = max(last_ts, last_block.times[-1])
        self.points = len(self._m_vals) + self._block_points
        return FrameSummary(total, ts_us(last_ts), last_step, control)

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
        elif cls is E.Histogram or cls is E.Media or cls is E.RunUpdate:
            row = media_row(ev, run_id, ts, segment)
            if isinstance(row, str):
                self.problems.append(Problem(segment, offset, None, None, row, ""))
            else:
                self._rows[_KIND_TABLE[cls]].append(row)
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
        out = {"metrics": self.points, "data_items": len(self._d_run)}
        out.update({t: len(r) for t, r in self._rows.items()})
        return out

    def _line_part(self) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, np.ndarray,
                                  np.ndarray, np.ndarray]:
        """Columns of the metrics that came one event per line."""
        keysets = list(self._keysets)
        codes = [self._key_codes(ks) for ks in keysets]
        key_codes = np.concatenate([np.tile(codes[kid], n) for kid, n in self._ks_runs])
        per_event = np.repeat(
            np.array([len(keysets[kid]) for kid, _ in self._ks_runs], dtype=np.int64),
            np.array([n for _, n in self._ks_runs], dtype=np.int64))
        idx = np.repeat(np.arange(len(per_event), dtype=np.int64), per_event)
        pidx = pa.array(idx)
        names = list(self._key_ids)
        starts = [f[0] for f in self._m_frames]

        def describe(i: int) -> tuple[str, int, str]:
            _, segment, offset = self._m_frames[bisect.bisect_right(starts, i) - 1]
            return segment, offset, names[key_codes[i]]

        return (
            np.array(self._m_run, dtype=np.int32)[idx],
            np.array(self._m_rank, dtype=np.int32)[idx],
            pa.array(self._m_step, pa.int64()).take(pidx),
            pa.array(self._m_epoch, pa.int32()).take(pidx),
            _timestamps_us(self._m_ts)[idx],
            key_codes,
            _floats(self._m_vals, describe, self.problems),
        )

    def _epochs(self) -> list[int | None]:
        """The blocks' epochs per block row (null where a block has none)."""
        out: list[int | None] = [None] * len(self._b_steps)
        for base, epochs in self._b_epochs:
            out[base:base + len(epochs)] = epochs
        return out

    def _block_part(self) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, np.ndarray,
                                   np.ndarray, np.ndarray]:
        """Columns of the points that came in blocks, a few vectorised calls per chunk."""
        nrows = np.array(self._g_nrows, dtype=np.int64)
        k = np.array(self._g_k, dtype=np.int64)
        per_group = nrows * k
        row_code = np.repeat(np.cumsum(k) - k, nrows)  # per group row: its first key code
        codes = np.array(self._g_codes, dtype=np.int32)
        rows = np.array(self._g_rows, dtype=np.int64)
        if (k == k[0]).all():  # one key count (the usual case): a row is k[0] points
            idx = np.repeat(rows, k[0])
            key = codes[(row_code[:, None] + np.arange(k[0])).ravel()]
        else:
            row_k = np.repeat(k, nrows)
            idx = np.repeat(rows, row_k)
            row_first = np.cumsum(row_k) - row_k
            offset = np.arange(len(idx), dtype=np.int64) - np.repeat(row_first, row_k)
            key = codes[np.repeat(row_code, row_k) + offset]
        pidx = pa.array(idx)
        epochs = (pa.array(self._epochs(), pa.int32()).take(pidx) if self._b_epochs
                  else pa.nulls(len(idx), pa.int32()))
        return (
            np.repeat(np.array(self._g_run, dtype=np.int32), per_group),
            np.repeat(np.array(self._g_rank, dtype=np.int32), per_group),
            pa.array(np.array(self._b_steps, dtype=np.int64)[idx]),
            epochs,
            _timestamps_us(self._b_times)[idx],
            key,
            self._b_vals[0] if len(self._b_vals) == 1 else np.concatenate(self._b_vals),
        )

    def _metrics_table(self, runs: pa.Array) -> pa.Table:
        parts = []
        if self._b_vals:
            parts.append(self._block_part())
        if self._m_vals:
            parts.append(self._line_part())
        run, rank, step, epoch, ts, key, value = (
            (c[0] if len(c) == 1 else (pa.concat_arrays(c) if isinstance(c[0], pa.Array)
                                       else np.concatenate(c)))
            for c in zip(*parts))  # one array per column: DuckDB scans chunked input slower
        return pa.table(
            [
                pa.DictionaryArray.from_arrays(pa.array(run), runs),
                pa.array(rank),
                step,
                epoch,
                pa.array(ts, _TS),
                pa.DictionaryArray.from_arrays(pa.array(key),
                                               pa.array(list(self._key_ids), pa.string())),
                pa.array(value),
            ],
            schema=_SCHEMAS["metrics"],
        )

    def to_arrow(self) -> dict[str, pa.Table]:
        """The chunk as Arrow tables (only tables that have rows)."""
        runs = pa.array(list(self._runs), pa.string())
        out: dict[str, pa.Table] = {}
        if self.points:
            out["metrics"] = self._metrics_table(runs)
        if self._d_run:
            cols = dict(self._d)
            cols["run_id"] = pa.DictionaryArray.from_arrays(
                pa.array(np.array(self._d_run, dtype=np.int32)), runs)
            schema = _SCHEMAS["data_items"]
            out["data_items"] = pa.table(
                [cols[f.name] if f.name == "run_id" else pa.array(cols[f.name], f.type)
                 for f in schema], schema=schema)
        for table, rows in self._rows.items():
            if rows:
                schema = _SCHEMAS[table]
                columns = list(zip(*rows))
                out[table] = pa.table(
                    [pa.array(list(c), f.type) for c, f in zip(columns, schema)], schema=schema)
        return out
