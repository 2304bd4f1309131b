"""Reading W&B's ``.wandb`` run files: the block log, its records, their values.

Why it exists: ``runlake import wandb`` reads the files an offline (or synced) W&B run
leaves behind without uploading anything, so it needs W&B's own file format.

The format (W&B's variant of LevelDB's log, written by ``wandb-core``): a 7-byte file
header (``:W&B``, the magic ``0xBEE1``, version 0), then 32 KiB blocks of chunks. A chunk
header is ``crc32 (u32 LE) | length (u16 LE) | type (u8)``; the type says whether the chunk
is a whole record (FULL) or the FIRST, a MIDDLE or the LAST piece of one; the CRC-32 (IEEE,
zlib's) covers the type byte then the data. A block's last <7 bytes are zero padding.
Each record is one ``wandb.proto.wandb_internal_pb2.Record`` (W&B's own protobuf
definitions, from the ``wandb`` package: the ``interop`` extra). Older wandb releases shipped
a Python reader of this log (``wandb.sdk.internal.datastore``); 0.31 has none (wandb-core
reads it in Go), so this module reads the chunks itself and leaves the records to W&B's
protobuf.

Damage: a chunk whose CRC does not match, or whose header is impossible, loses the rest of
its block (as LevelDB readers do: chunk boundaries inside it cannot be trusted); reading
resumes at the next block, dropping the pieces of a record cut in two. A torn end (a
truncated file, a run still being written) keeps every whole record before it. Each is one
problem naming the file and byte offset; the records around it are kept.

History rows: :func:`bulk_rows` reads a batch of common rows in a few C-level passes
(:func:`batch_views`: many records' bytes joined, parsed in one call); :func:`fast_view`
reads other rows and summary records one at a time; :func:`flat_keys` and
:class:`RowLayout` say where a row's values go.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Iterator

__all__ = [
    "BLOCK_LEN",
    "RecordLog",
    "RowLayout",
    "fast_view",
    "flat_keys",
    "install_hint",
    "item_path",
    "item_value_json",
    "load_proto",
    "batch_views",
    "bulk_rows",
]

BLOCK_LEN = 32768
_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_CHUNK = struct.Struct("<IHB")  # crc32, length, type
_IDENT, _MAGIC = b":W&B", 0xBEE1
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_SPECIAL = frozenset(("_step", "_timestamp", "_runtime"))
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}


def install_hint() -> str:
    """What to run when the ``wandb`` package is missing."""
    return "pip install 'runlake[interop]'"


def load_proto():
    """W&B's record definitions (``wandb_internal_pb2``), imported on first use.

    Raises:
        ImportError: ``wandb`` is not installed, with the command that installs it.
    """
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as exc:
        raise ImportError(f"reading W&B runs needs the wandb package ({exc}): "
                          f"{install_hint()}") from exc
    return wandb_internal_pb2


@dataclass
class RecordLog:
    """The records of one ``.wandb`` file, as raw protobuf bytes, in file order.

    ``problems``: damaged chunks and torn ends (file and offset); reading goes on past them.
    """

    path: Path
    problems: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[bytes]:
        data = self.path.read_bytes()
        if len(data) < _HEADER.size:
            self.problems.append(f"{self.path}: {len(data)} bytes, not a W&B run file (no header)")
            return
        ident, magic, version = _HEADER.unpack_from(data)
        if ident != _IDENT or magic != _MAGIC:
            self.problems.append(f"{self.path}: not a W&B run file (header {data[:7]!r})")
            return
        if version != 0:
            self.problems.append(f"{self.path}: log version {version} (read as version 0)")
        yield from self._records(data)

    def _records(self, data: bytes) -> Iterator[bytes]:
        pos, end, pieces = _HEADER.size, len(data), None
        crc32, unpack = zlib.crc32, _CHUNK.unpack_from
        while pos < end:
            block_left = BLOCK_LEN - pos % BLOCK_LEN
            if block_left < _CHUNK.size:
                pos += block_left  # zero padding
                continue
            if end - pos < _CHUNK.size:
                self.problems.append(f"{self.path}: torn end at offset {pos} (a partial chunk "
                                     f"header): the records before it are imported")
                return
            crc, length, kind = unpack(data, pos)
            body = pos + _CHUNK.size
            if kind == 0 and length == 0 and crc == 0:
                pos += block_left  # a zero-filled rest of block (preallocated, never written)
                continue
            if length > block_left - _CHUNK.size or kind not in _TYPE_CRC:
                if body + length > end and kind in _TYPE_CRC:
                    self.problems.append(f"{self.path}: torn end at offset {pos} (a chunk of "
                                         f"{length} bytes, {end - body} present): the records "
                                         f"before it are imported")
                    return
                self._damaged(pos, "an impossible chunk header", pieces is not None)
                pos, pieces = pos + block_left, None
                continue
            if body + length > end:
                self.problems.append(f"{self.path}: torn end at offset {pos} (a chunk of {length} "
                                     f"bytes, {end - body} present): the records before it are "
                                     f"imported")
                return
            chunk = data[body:body + length]
            if crc32(chunk, _TYPE_CRC[kind]) != crc:
                self._damaged(pos, "a CRC mismatch", pieces is not None)
                pos, pieces = pos + block_left, None
                continue
            pos = body + length
            if kind == _FULL:
                if pieces is not None:
                    self._orphan(pos, "a record's pieces ended by a whole record")
                pieces = None
                yield chunk
            elif kind == _FIRST:
                if pieces is not None:
                    self._orphan(pos, "a record's pieces ended by another record's first piece")
                pieces = [chunk]
            elif pieces is None:
                continue  # the rest of a record lost in a damaged block (already reported)
            elif kind == _MIDDLE:
                pieces.append(chunk)
            else:
                pieces.append(chunk)
                yield b"".join(pieces)
                pieces = None
        if pieces is not None:
            self.problems.append(f"{self.path}: torn end at offset {end} (a record's last piece "
                                 f"is missing): the records before it are imported")

    def _damaged(self, pos: int, what: str, cut: bool) -> None:
        lost = BLOCK_LEN - pos % BLOCK_LEN
        self.problems.append(f"{self.path}: {what} at offset {pos}: the rest of its block "
                             f"({lost} bytes{', and the record it cut' if cut else ''}) skipped, "
                             f"reading resumed at offset {pos + lost}")

    def _orphan(self, pos: int, what: str) -> None:
        self.problems.append(f"{self.path}: {what} near offset {pos}: that record skipped")


def item_path(item: Any) -> tuple[str, ...]:
    """The key path of a history/summary/config item (``nested_key``, else ``key``)."""
    nested = item.nested_key
    return tuple(nested) if nested else (item.key,)


def item_value_json(item: Any) -> str:
    """The item's value as JSON text: ``value_json``, or a history item's typed value."""
    text = item.value_json
    if text:
        return text
    try:
        which = item.WhichOneof("value")  # history items (newer wandb) may carry typed values
    except ValueError:  # summary/config/stats items: value_json only
        return "null"
    if which is None or which == "none":
        return "null"
    if which == "json":
        return item.json or "null"
    import json

    return json.dumps(getattr(item, which))


_VIEW = None


def fast_view():
    """A lean view of ``Record`` for the two kinds that are nearly every record.

    W&B writes ``history`` and ``summary`` records (two summary records per step) by the
    hundred thousand; reading their items one message at a time costs ~4 µs per record in
    Python. This view declares the same field numbers but makes each record's items ONE
    message (a singular message field: protobuf merges its repeated occurrences, so their
    repeated fields concatenate): one C-level parse then gives a record's ``value_json``
    strings, ``key`` and ``nested_key`` parts as three lists. Where those lists cannot say
    which part belongs to which item (nested keys, typed values), the importer reads the
    record with the real ``Record`` once and remembers the answer per list shape.

    Returns ``(Record view class, the typed-value field names)``.
    """
    global _VIEW
    if _VIEW is None:
        load_proto()  # the same protobuf runtime wandb's own definitions use
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        F = descriptor_pb2.FieldDescriptorProto
        fdp = descriptor_pb2.FileDescriptorProto(name="runlake_wandb_view.proto",
                                                 package="runlake_wandb_view", syntax="proto3")

        def message(name, fields):
            m = fdp.message_type.add(name=name)
            for fname, number, ftype, label, type_name in fields:
                f = m.field.add(name=fname, number=number, type=ftype, label=label)
                if type_name:
                    f.type_name = f".runlake_wandb_view.{type_name}"

        rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
        message("Items", [("key", 1, F.TYPE_BYTES, rep, None), ("nested_key", 2, F.TYPE_BYTES, rep, None),
                          ("none", 3, F.TYPE_INT32, rep, None), ("boolean", 4, F.TYPE_BOOL, rep, None),
                          ("integer", 5, F.TYPE_SINT64, rep, None), ("number", 6, F.TYPE_DOUBLE, rep, None),
                          ("text", 7, F.TYPE_BYTES, rep, None), ("json", 8, F.TYPE_BYTES, rep, None),
                          ("value_json", 16, F.TYPE_BYTES, rep, None)])
        message("Step", [("num", 1, F.TYPE_INT64, opt, None)])
        message("History", [("item", 1, F.TYPE_MESSAGE, opt, "Items"), ("step", 2, F.TYPE_MESSAGE, opt, "Step")])
        message("Summary", [("update", 1, F.TYPE_MESSAGE, opt, "Items"),
                            ("remove", 2, F.TYPE_MESSAGE, opt, "Items")])
        message("Record", [("history", 2, F.TYPE_MESSAGE, opt, "History"),
                           ("summary", 3, F.TYPE_MESSAGE, opt, "Summary")])
        # batches: many records' bytes joined, parsed in one call (see :func:`batch_views`)
        message("HistoryRows", [("history", 2, F.TYPE_MESSAGE, rep, "History")])
        message("HistoryAll", [("history", 2, F.TYPE_MESSAGE, opt, "History")])
        message("SummaryRows", [("summary", 3, F.TYPE_MESSAGE, rep, "Summary")])
        message("SummaryAll", [("summary", 3, F.TYPE_MESSAGE, opt, "Summary")])
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        cls = {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"runlake_wandb_view.{n}"))
               for n in ("Record", "HistoryRows", "HistoryAll", "SummaryRows", "SummaryAll")}
        _VIEW = (cls.pop("Record"), ("none", "boolean", "integer", "number", "text", "json"), cls)
    return _VIEW[:2]


def batch_views() -> dict:
    """Views of many records joined into one byte string, parsed by ONE C-level call.

    A ``Record`` starts ``num`` (field 1) then its one field (history 2, summary 3), so the
    bytes of N history records joined are a valid message holding field 2 N times: as a
    repeated field (``HistoryRows``: one ``History`` per record, its items merged) or as a
    singular one (``HistoryAll``: every record's items merged into one list, in order).
    ``SummaryRows``/``SummaryAll`` do the same for summary records (field 3).
    """
    fast_view()
    return _VIEW[2]


class RowLayout:
    """Where a history row's values go, computed once per shape of row.

    ``names`` are sorted (W&B writes a row's keys in Go map order, a different order from
    row to row): rows logging the same keys then share one metrics group.
    """

    def __init__(self, paths: tuple[tuple[str, ...], ...]) -> None:
        typed = {p[:-1] for p in paths if len(p) > 1 and p[-1] == "_type"}
        self.si = self.ti = None
        scalars, objects = [], {}
        for i, p in enumerate(paths):
            prefix = next((p[:n] for n in range(1, len(p)) if p[:n] in typed), None) if typed else None
            if prefix is not None:
                objects.setdefault(".".join(prefix), []).append((i, p[len(prefix):]))
            elif p == ("_step",):
                self.si = i
            elif p == ("_timestamp",):
                self.ti = i
            elif p != ("_runtime",):
                scalars.append((".".join(p), i))
        scalars.sort()
        idx = [i for _, i in scalars]
        self.names, self.objects = tuple(n for n, _ in scalars), list(objects.items())
        self.pick = (itemgetter(*idx) if len(idx) > 1 else (lambda v, i=idx[0]: (v[i],))) if idx else None
        self.fast = False  # rows of nested/typed items take the row-by-row path

    @classmethod
    def flat(cls, keys: list[str]) -> RowLayout:
        """The layout of a row whose items are all one key part (the common row, quick)."""
        self = cls.__new__(cls)
        self.si = keys.index("_step") if "_step" in keys else None
        self.ti = keys.index("_timestamp") if "_timestamp" in keys else None
        idx = sorted(range(len(keys)), key=keys.__getitem__)
        if self.si is not None or self.ti is not None or "_runtime" in keys:
            idx = [i for i in idx if keys[i] not in _SPECIAL]
        self.names, self.objects = tuple([keys[i] for i in idx]), []
        self.pick = (itemgetter(*idx) if len(idx) > 1 else (lambda v, i=idx[0]: (v[i],))) if idx else None
        # the batch fast path: step and time in the row, and some numbers
        self.fast = self.si is not None and self.ti is not None and bool(idx)
        return self


def flat_keys(head: bytes, n: int) -> list[str] | None:
    """The keys of merged history items serialized as ``head`` when it holds exactly ``n``
    one-part keys (``nested_key`` entries, field 2) and nothing else; else None."""
    parts = head.split(b"\x12")  # quick: exact when every piece is its length byte + key
    if not parts[0] and len(parts) == n + 1 and all(len(p) == p[0] + 1 for p in parts[1:] if p):
        if all(parts[1:]):
            return [p[1:].decode() for p in parts[1:]]
    keys, pos, end = [], 0, len(head)
    while pos < end:
        if head[pos] != 0x12 or head[pos + 1] & 0x80:  # another field, or a key >= 128 bytes
            return None
        stop = pos + 2 + head[pos + 1]
        keys.append(head[pos + 2:stop].decode())
        pos = stop
    return keys if pos == end and len(keys) == n else None


_NUMBERS = frozenset((int, float, bool))
_JSON = None


def bulk_rows(raws: list[bytes]):
    """The history records ``raws`` (their bytes, in file order) as rows, in a few C-level
    passes, when every one is the common row: one-part keys (``nested_key``), no typed
    values, ``_step`` an int, ``_timestamp`` a number, the rest numbers, no key twice.

    Returns ``(times, steps, names, values)``: per row its ``_timestamp``, ``_step``, its
    other keys sorted (one tuple shared by the rows logging the same keys) and their values
    in that order (``_runtime`` dropped), exactly what reading the records one by one gives;
    None when any record is of another kind (the caller then reads them one by one).

    Raises:
        google.protobuf.message.DecodeError: a record's bytes are not protobuf.
    """
    global _JSON
    if _JSON is None:
        import msgspec

        _JSON = msgspec.json.Decoder()
    views = batch_views()
    items = views["HistoryAll"].FromString(b"".join(raws)).history.item
    # a record's values: the value_json tags (\x82\x01) in its bytes. Such bytes elsewhere
    # (a length of 130, a key holding \x01) only add: the totals agree only when exact.
    counts = list(map(bytes.count, raws, repeat(b"\x82\x01")))
    keys, texts = list(items.nested_key), list(items.value_json)  # one bytes object each
    if (items.key or items.none or items.boolean or items.integer or items.number or items.text
            or items.json or len(keys) != len(texts)):
        return None
    if sum(counts) != len(texts):  # e.g. a step of 130 (varint \x82\x01): ask each record
        rows = views["HistoryRows"].FromString(b"".join(raws)).history
        counts = [len(h.item.value_json) for h in rows]
        if len(rows) != len(raws) or counts != [len(h.item.nested_key) for h in rows]:
            return None
    try:
        values = _JSON.decode(b"[" + b",".join(texts) + b"]")
    except ValueError:  # msgspec.DecodeError: bare NaN/Infinity, or not JSON
        return None
    if len(values) != len(texts):
        return None
    n = len(counts)
    columns = _uniform(keys, values, counts[0], n) if n and counts.count(counts[0]) == n else None
    if columns is not None:
        times, steps, names, picked = columns
    else:
        times, steps, names, picked = _by_row(keys, values, counts) or ([], [], [], None)
        if picked is None:
            return None
    if (not {int}.issuperset(map(type, steps)) or not {float, int}.issuperset(map(type, times))
            or not _NUMBERS.issuperset(map(type, chain.from_iterable(picked)))):
        return None
    return times, steps, names, picked


def _uniform(keys: list, values: list, c: int, n: int):
    """Rows that all log the same ``c`` keys (in any order), column by column: the positions
    of every item sorted by key (stable: each key's positions in row order), then each key's
    values picked in one pass. None when a row lacks a key or has one twice."""
    distinct = sorted(set(keys))  # UTF-8 bytes sort as their str do
    if len(distinct) != c or b"_step" not in distinct or b"_timestamp" not in distinct:
        return None
    code = {k: i for i, k in enumerate(distinct)}
    codes = list(map(code.__getitem__, keys))
    order = sorted(range(n * c), key=codes.__getitem__)
    rows = list(range(n))
    cols = {}
    for i, k in enumerate(distinct):
        at = order[i * n:(i + 1) * n]
        if list(map(c.__rfloordiv__, at)) != rows:  # not one position in each row
            return None
        cols[k] = list(map(values.__getitem__, at))
    try:
        names = [k for k in distinct if k.decode() not in _SPECIAL]
    except UnicodeDecodeError:
        return None
    if not names:
        return None
    picked = list(zip(*[cols[k] for k in names]))
    shared = tuple(k.decode() for k in names)
    return cols[b"_timestamp"], cols[b"_step"], [shared] * n, picked


def _by_row(keys: list, values: list, counts: list):
    """Rows of differing keys, one dict each; None when one is not the common row."""
    layouts: dict = {}
    times, steps, names, picked = [], [], [], []
    b = 0
    for c in counts:
        row = dict(zip(keys[b:b + c], values[b:b + c]))
        b += c
        shape = frozenset(row)
        lay = layouts.get(shape)
        if lay is None:
            lay = layouts[shape] = _layout(row, c)
            if lay is None:
                return None
        steps.append(row[b"_step"])
        times.append(row[b"_timestamp"])
        names.append(lay[0])
        picked.append(lay[1](row))
    return times, steps, names, picked


def _layout(row: dict, n: int):
    """``(sorted names, picker)`` of a row of ``n`` one-part items; None: not the common row."""
    if len(row) != n or b"_step" not in row or b"_timestamp" not in row:
        return None  # a key twice, or no step/time: the row-by-row path decides
    try:
        keys = sorted(k for k in row if k.decode() not in _SPECIAL)  # UTF-8 sorts as str does
    except UnicodeDecodeError:
        return None
    if not keys:
        return None
    get = itemgetter(*keys)
    return tuple(k.decode() for k in keys), (get if len(keys) > 1 else (lambda r: (get(r),)))
