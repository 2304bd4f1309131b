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

History rows: :func:`fast_view` reads the two record kinds that are nearly every record
cheaply; :func:`flat_keys` and :class:`RowLayout` say where a row's values go.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
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
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("runlake_wandb_view.Record"))
        _VIEW = (cls, ("none", "boolean", "integer", "number", "text", "json"))
    return _VIEW


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
