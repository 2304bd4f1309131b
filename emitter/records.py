"""Building the lineage and checkpoint records: item ids, per-item fields, file facts.

Kept apart from :mod:`runlake.emitter.run` because the conversions are many and none of
them is on the metrics hot path. Item ids are stored as strings: ``str`` as is, ints (also
numpy/torch integers and 1-D integer tensors/arrays via ``tolist()``) in decimal, paths via
``os.fspath``, bytes as hex (content hashes).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from runlake.emitter.values import jsonable, truncate
from runlake.schemas.errors import EventValueError

__all__ = ["data_fields", "file_facts", "item_ids"]

MAX_ID_CHARS = 4096
_TENSOR_MODULES = ("torch", "numpy", "jax", "jaxlib", "tensorflow", "cupy")


def _one_id(item: Any, strict: bool) -> str:
    cls = item.__class__
    if cls is str:
        return item if len(item) <= MAX_ID_CHARS else truncate(item, MAX_ID_CHARS)
    if cls is int:
        return str(item)
    if isinstance(item, os.PathLike):
        return os.fspath(item)
    if isinstance(item, (bytes, bytearray)):
        return bytes(item).hex()
    if isinstance(item, (str, int)) and not isinstance(item, bool):
        return str(item) if isinstance(item, str) else str(int(item))
    root = cls.__module__.partition(".")[0]
    if root in _TENSOR_MODULES and hasattr(item, "item"):
        value = item.item()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    if strict:
        raise EventValueError(
            f"item ids must be str, int, path or bytes, got {cls.__module__}.{cls.__qualname__} "
            f"{truncate(repr(item), 80)}; pass an id (e.g. the file path or sample index)"
        )
    return truncate(str(item), MAX_ID_CHARS)


def item_ids(items: Any, *, strict: bool) -> list[str]:
    """Normalise one id or an iterable of ids to a list of strings.

    Raises:
        EventValueError: (strict) an id of an unsupported type.
    """
    if isinstance(items, (str, bytes, bytearray, int, os.PathLike)):
        return [_one_id(items, strict)]
    root = items.__class__.__module__.partition(".")[0]
    if root in _TENSOR_MODULES and hasattr(items, "tolist"):
        items = items.tolist()
        if not isinstance(items, list):
            items = [items]
    try:
        iterator = iter(items)
    except TypeError:
        raise EventValueError(
            f"items must be an id or an iterable of ids, got {type(items).__name__}"
        ) from None
    return [_one_id(item, strict) for item in iterator]


def _per_item(value: Any, n: int, what: str, convert) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise EventValueError(
                f"{what} has {len(value)} entries but items has {n}; pass one entry per item "
                f"or a single value shared by all items"
            )
        return [None if v is None else convert(v) for v in value]
    return None if value is None else convert(value)


def data_fields(run, items: Any, *, split, step, epoch, source, dataset, augment, cache_hit,
                load_ms) -> dict[str, Any]:
    """The fields of the ``data`` event for :meth:`Run.log_data` (see there for arguments)."""
    strict = run.strict
    ids = item_ids(items, strict=strict)
    n = len(ids)

    def aug(v: Any) -> dict:
        if not hasattr(v, "items"):
            raise EventValueError(f"augment entries must be dicts, got {type(v).__name__}")
        return jsonable(dict(v), strict=strict, what="augment")

    if step is None:
        step = run.step + 1
    elif step.__class__ is not int:
        step = int(step)
    if epoch is not None and epoch.__class__ is not int:
        epoch = int(epoch)
    return dict(
        items=ids,
        split=str(split),
        step=step,
        epoch=run.epoch if epoch is None else epoch,
        source=None if source is None else truncate(os.fspath(source), MAX_ID_CHARS),
        dataset=None if dataset is None else str(dataset),
        augment=_per_item(augment, n, "augment", aug),
        cache_hit=_per_item(cache_hit, n, "cache_hit", bool),
        load_ms=_per_item(load_ms, n, "load_ms", float),
    )


def file_facts(uri: str, *, want_hash: bool) -> tuple[int | None, str | None]:
    """Size and sha256 of ``uri`` when it is an existing local file (or file:// URI)."""
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        return None, None
    try:
        if not os.path.isfile(path):
            return None, None
        size = os.path.getsize(path)
        if not want_hash:
            return size, None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return size, h.hexdigest()
    except OSError:
        return None, None
