"""Encoding and decoding events, schema versions and upcasting.

Writers (the emitter, the TensorBoard import) encode a frame's events with
:func:`encode_events`: one JSON object per line (:data:`ENCODER`), the metrics events packed
into one ``metrics_block`` line by :func:`pack_metrics`.
Readers call :func:`decode_lines`, which decodes a whole frame in one C call when every line
is a known kind at the current version, and otherwise falls back to line-by-line decoding
that upcasts older versions and reports (never raises on) unknown kinds, newer versions and
malformed lines, so one bad line never costs the rest of the frame. Blocks come out as the
``metrics`` events they hold (:func:`unpack_metrics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any, Callable

import msgspec

from runlake.schemas.events import (
    EVENT_TYPES,
    AnyLine,
    Event,
    Metrics,
    MetricsBlock,
    MetricsGroup,
)

__all__ = [
    "CURRENT_VERSIONS",
    "ENCODER",
    "KINDS",
    "LineProblem",
    "NONFINITE_TOKENS",
    "UPCASTERS",
    "block_error",
    "decode_current",
    "decode_lines",
    "encode_events",
    "encode_nonfinite",
    "pack_metrics",
    "to_float",
    "unpack_metrics",
]

KINDS: dict[str, type[Event]] = {
    t.__struct_config__.tag: t for t in (*EVENT_TYPES, MetricsBlock)
}
CURRENT_VERSIONS: dict[str, int] = {kind: 1 for kind in KINDS}
"""The version each kind is written at. Bump together with an upcaster from the old one."""

UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``(kind, v) -> f(raw) -> raw at v+1``. Applied in chain until the current version."""

ENCODER = msgspec.json.Encoder()
_FAST = msgspec.json.Decoder(AnyLine)
_RAW = msgspec.json.Decoder(dict[str, Any])

NONFINITE_TOKENS: dict[str, float] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}
_TOKEN_OF = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def encode_nonfinite(values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` with non-finite floats replaced by their JSON-safe tokens."""
    out = {}
    for k, v in values.items():
        if v.__class__ is float and not math.isfinite(v):
            v = _TOKEN_OF[repr(v)]
        out[k] = v
    return out


_SEQ, _TS, _STEP = attrgetter("seq"), attrgetter("ts"), attrgetter("step")
_EPOCH, _VALUES = attrgetter("epoch"), attrgetter("values")
_WHO = attrgetter("v", "run_id", "writer", "rank")


def pack_metrics(events: list[Metrics]) -> MetricsBlock | None:
    """One block holding ``events`` (metrics of one writer), or None if they do not share one.

    Rows keep the events' order; events logging the same keys in the same order share a
    group (one key list, values row-major), so a training loop's flush is usually one group.
    Costs a few C-level passes over the events (~0.04 µs per value on the writer thread).

    Example:
        >>> block = pack_metrics(events)      # on the writer thread, per flush
        >>> unpack_metrics(block) == events   # what readers get back
        True
    """
    n = len(events)
    if not n:
        return None
    first = events[0]
    who = _WHO(first)
    if n > 1 and list(map(_WHO, events)).count(who) != n:
        return None
    dicts = list(map(_VALUES, events))
    keysets = list(map(tuple, dicts))
    if keysets.count(keysets[0]) == n:
        groups = [MetricsGroup(list(keysets[0]), list(chain.from_iterable(map(dict.values, dicts))))]
    else:
        rows_of: dict[tuple[str, ...], list[int]] = {}
        for i, ks in enumerate(keysets):
            rows = rows_of.get(ks)
            if rows is None:
                rows = rows_of[ks] = []
            rows.append(i)
        groups = [
            MetricsGroup(list(ks), [v for i in rows for v in dicts[i].values()], rows)
            for ks, rows in rows_of.items()
        ]
    epochs = list(map(_EPOCH, events))
    return MetricsBlock(
        first.v, first.run_id, first.writer, first.seq, first.ts, first.rank,
        seqs=list(map(_SEQ, events)), times=list(map(_TS, events)),
        steps=list(map(_STEP, events)), groups=groups,
        epochs=None if epochs.count(None) == n else epochs,
    )


def encode_events(events: list[Event]) -> bytes:
    """JSON lines for ``events``, their metrics packed into one block where the first was.

    The one encoding of a frame's content. Metrics that cannot share a block (several
    writers) stay one line each.

    Raises:
        TypeError, ValueError, OverflowError, msgspec.EncodeError: an event that cannot be
            encoded (the emitter's writer then encodes the others one by one).
    """
    metrics = [ev for ev in events if ev.__class__ is Metrics]
    block = pack_metrics(metrics) if len(metrics) > 1 else None
    if block is None:
        return ENCODER.encode_lines(events)
    if len(metrics) == len(events):
        return ENCODER.encode_lines([block])
    at = next(i for i, ev in enumerate(events) if ev.__class__ is Metrics)
    rest = [ev for ev in events[at:] if ev.__class__ is not Metrics]
    return ENCODER.encode_lines([*events[:at], block, *rest])


def block_error(block: MetricsBlock) -> str | None:
    """Why ``block`` is inconsistent (column lengths, row indices), or None when it is sound."""
    n = len(block.seqs)
    if len(block.times) != n or len(block.steps) != n or (
        block.epochs is not None and len(block.epochs) != n
    ):
        return (f"metrics_block columns differ in length (seqs {n}, times {len(block.times)}, "
                f"steps {len(block.steps)}, epochs "
                f"{'null' if block.epochs is None else len(block.epochs)})")
    covered = 0
    for g in block.groups:
        rows = n if g.rows is None else len(g.rows)
        if g.rows is not None and g.rows and (min(g.rows) < 0 or max(g.rows) >= n):
            return f"metrics_block group {g.keys[:3]}... indexes rows outside 0..{n - 1}"
        if len(g.values) != rows * len(g.keys):
            return (f"metrics_block group {g.keys[:3]}... has {len(g.values)} values for "
                    f"{rows} rows x {len(g.keys)} keys")
        covered += rows
    if covered != n:
        return f"metrics_block groups cover {covered} rows, the block has {n}"
    return None


def unpack_metrics(block: MetricsBlock) -> list[Metrics]:
    """The ``metrics`` events a block holds, in row order.

    Raises:
        ValueError: the block is inconsistent (:func:`block_error`).
    """
    n = len(_checked(block).seqs)
    values: list[dict[str, Any]] = [{} for _ in range(n)]
    for g in block.groups:
        k = len(g.keys)
        rows = range(n) if g.rows is None else g.rows
        for j, i in enumerate(rows):
            values[i].update(zip(g.keys, g.values[j * k:(j + 1) * k]))
    epochs = block.epochs or [None] * n
    return [
        Metrics(block.v, block.run_id, block.writer, seq, ts, block.rank, step, vals, epoch)
        for seq, ts, step, vals, epoch in zip(block.seqs, block.times, block.steps, values, epochs)
    ]


def _checked(block: MetricsBlock) -> MetricsBlock:
    """``block``, or ValueError naming its inconsistency."""
    error = block_error(block)
    if error is not None:
        raise ValueError(error)
    return block


def _unpacked(events: list[Any]) -> list[Event]:
    out: list[Event] = []
    for ev in events:
        if ev.__class__ is MetricsBlock:
            out.extend(unpack_metrics(ev))
        else:
            out.append(ev)
    return out


def to_float(value: Any) -> float:
    """Map an on-disk metric value back to a float (tokens, bools and null included).

    Raises:
        ValueError: a string that is not a non-finite token.
    """
    if value.__class__ is float:
        return value
    if value is None:
        return math.nan
    if isinstance(value, str):
        try:
            return NONFINITE_TOKENS[value]
        except KeyError:
            raise ValueError(f"expected a number or one of NaN/Infinity/-Infinity, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line that could not become an event; ingest quarantines it."""

    line_no: int
    """1-based line number within the frame."""
    reason: str
    text: str


def _upcast(raw: dict[str, Any]) -> dict[str, Any]:
    kind, v = raw.get("kind"), raw.get("v")
    current = CURRENT_VERSIONS[kind]
    while v < current:
        step = UPCASTERS.get((kind, v))
        if step is None:
            raise ValueError(f"no upcaster registered for {kind} v{v} -> v{v + 1}")
        raw = step(raw)
        v = raw["v"] = v + 1
    return raw


def _decode_one(line: bytes) -> Event:
    raw = _RAW.decode(line)
    kind, v = raw.get("kind"), raw.get("v")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    if not isinstance(v, int):
        raise ValueError(f"event of kind {kind!r} has no integer version 'v' (got {v!r})")
    if v > CURRENT_VERSIONS[kind]:
        raise ValueError(
            f"{kind} event has schema version {v}, newer than this runlake reads "
            f"({CURRENT_VERSIONS[kind]}); upgrade runlake to ingest it"
        )
    if v < CURRENT_VERSIONS[kind]:
        raw = _upcast(raw)
    return msgspec.convert(raw, AnyLine)


def decode_current(buf: bytes, decoder: msgspec.json.Decoder = _FAST,
                   pinned: tuple[type, ...] = ()) -> list[Any] | None:
    """The fast path of every frame reader: all lines decoded in one C call.

    Args:
        buf: a frame's content.
        decoder: a ``msgspec`` decoder of a union of event structs (default: every kind;
            ingest passes one with leaner structs).
        pinned: struct types whose version the decoder itself checks (a ``Literal`` ``v``),
            skipped by the version check here.

    Returns:
        The structs (blocks not unpacked) when every line decodes as a known kind at its
        current version and every block is consistent; None otherwise: then the caller
        takes :func:`decode_lines`' line-by-line path, which upcasts and reports.
    """
    try:
        events = decoder.decode_lines(buf)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    current = CURRENT_VERSIONS
    for ev in events:
        cls = ev.__class__
        if cls in pinned:
            continue
        if ev.v != current[ev.__struct_config__.tag] or (
            cls is MetricsBlock and block_error(ev) is not None
        ):
            return None
    return events


def decode_lines(buf: bytes, *, unpack: bool = True) -> tuple[list[Event], list[LineProblem]]:
    """Decode newline-delimited events; never raises for bad content.

    Args:
        buf: a frame's content.
        unpack: give a ``metrics_block`` line as the ``metrics`` events it holds (default),
            or as the (consistent) :class:`MetricsBlock` itself, for readers that want
            its columns.

    Returns:
        The events in file order, and the problems (line number within ``buf``, reason,
        the first 200 characters of the line).
    """
    events = decode_current(buf)
    if events is not None:
        return (_unpacked(events) if unpack else events), []
    events, problems = [], []
    for i, line in enumerate(buf.split(b"\n"), start=1):  # 1-based, as editors count
        if not line.strip():
            continue
        try:
            ev = _decode_one(line)
            if ev.__class__ is MetricsBlock:
                events.extend(unpack_metrics(ev) if unpack else (_checked(ev),))
            else:
                events.append(ev)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
            text = line[:200].decode("utf-8", "replace")
            problems.append(LineProblem(i, str(exc), text))
    return events, problems
