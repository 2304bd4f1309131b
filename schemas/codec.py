"""Encoding and decoding events, schema versions and upcasting.

Writers encode with :data:`ENCODER` (``encode_lines``: one JSON object per line). Readers
call :func:`decode_lines`, which decodes a whole frame in one C call when every line is a
known kind at the current version, and otherwise falls back to line-by-line decoding that
upcasts older versions and reports (never raises on) unknown kinds, newer versions and
malformed lines, so one bad line never costs the rest of the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from runlake.schemas.events import EVENT_TYPES, AnyEvent, Event

__all__ = [
    "CURRENT_VERSIONS",
    "ENCODER",
    "KINDS",
    "LineProblem",
    "NONFINITE_TOKENS",
    "UPCASTERS",
    "decode_lines",
    "encode_nonfinite",
    "to_float",
]

KINDS: dict[str, type[Event]] = {t.__struct_config__.tag: t for t in EVENT_TYPES}
CURRENT_VERSIONS: dict[str, int] = {kind: 1 for kind in KINDS}
"""The version each kind is written at. Bump together with an upcaster from the old one."""

UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
"""``(kind, v) -> f(raw) -> raw at v+1``. Applied in chain until the current version."""

ENCODER = msgspec.json.Encoder()
_FAST = msgspec.json.Decoder(AnyEvent)
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
    return msgspec.convert(raw, AnyEvent)


def decode_lines(buf: bytes) -> tuple[list[Event], list[LineProblem]]:
    """Decode newline-delimited events; never raises for bad content.

    Returns:
        The events in file order, and the problems (line number within ``buf``, reason,
        the first 200 characters of the line).
    """
    try:
        events = _FAST.decode_lines(buf)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    else:
        current = CURRENT_VERSIONS
        for ev in events:
            if ev.v != current[ev.__struct_config__.tag]:
                break
        else:
            return events, []
    events, problems = [], []
    for i, line in enumerate(buf.split(b"\n"), start=1):  # 1-based, as editors count
        if not line.strip():
            continue
        try:
            events.append(_decode_one(line))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as exc:
            text = line[:200].decode("utf-8", "replace")
            problems.append(LineProblem(i, str(exc), text))
    return events, problems
