"""Building the fields of every event except metrics: lineage, checkpoints, samples, alerts.

Kept apart from :mod:`runlake.emitter.run` because the conversions are many and none of
them is on the metrics hot path. Each builder takes the run (for ``strict``, the default
step and the drop counter) and applies one rule per bad argument: ``strict=True`` raises
:class:`EventValueError` naming the argument and the type; ``strict=False`` drops only that
argument (a count and one warning per cause) and keeps the rest of the event.

Item ids are stored as strings: ``str`` as is, ints (also numpy/torch integers and 1-D
integer tensors/arrays via ``tolist()``) in decimal, paths via ``os.fspath``, bytes as hex
(content hashes).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable

from runlake.emitter.jsonable import jsonable
from runlake.emitter.values import (
    as_int,
    coerce_metrics,
    coerce_scalar,
    describe,
    is_tensor,
    safe_repr,
    safe_str,
    tensor_item,
    truncate,
)
from runlake.schemas.errors import EventValueError
from runlake.schemas.severity import SEVERITIES

__all__ = [
    "alert_fields",
    "bad",
    "checkpoint_fields",
    "data_fields",
    "dataset_fields",
    "epoch_arg",
    "epoch_or",
    "file_facts",
    "item_ids",
    "sample_fields",
    "step_arg",
    "step_or",
]

MAX_ID_CHARS = 4096
_I32 = 2**31
_STEP_MAX = 2**63 - 1


def bad(run, cause: str, message: str, default: Any = None) -> Any:
    """Strict: raise ``EventValueError(message)``; else count a drop and return ``default``."""
    if run.strict:
        raise EventValueError(message)
    run._drop(cause, message)
    return default


def step_arg(run, step: Any) -> int:
    """A ``log(step=)`` the hot path did not take: converted, or (non-strict) the next step.

    Also the automatic step past the int64 maximum: strict raises, else the maximum again.
    Moves ``run.step`` to the highest step, as the hot path does.
    """
    try:
        step = as_int(step, "step")
    except EventValueError as exc:
        auto = min(run.step + 1, _STEP_MAX)
        step = bad(run, "bad_step", f"{exc}; logged at step {auto} instead", auto)
    if step > run.step:
        run.step = step
    return step


def epoch_arg(run, epoch: Any) -> int | None:
    """A ``log(epoch=)`` the hot path did not accept: converted, or the previous epoch."""
    try:
        return as_int(epoch, "epoch", _I32)
    except EventValueError as exc:
        return bad(run, "bad_epoch", f"{exc}; logged with the previous epoch ({run.epoch})",
                   run.epoch)


def step_or(run, step: Any, default: int | None, what: str = "step") -> int | None:
    """An optional ``step=``: converted, ``default`` when None, dropped (None) when bad."""
    if step is None:
        return default
    try:
        return as_int(step, what)
    except EventValueError as exc:
        return bad(run, "bad_step", f"{exc}; recorded without a {what}")


def epoch_or(run, epoch: Any) -> int | None:
    """An optional ``epoch=``: converted, the run's epoch when None, dropped when bad."""
    if epoch is None:
        return run.epoch
    try:
        return as_int(epoch, "epoch", _I32)
    except EventValueError as exc:
        return bad(run, "bad_epoch", f"{exc}; recorded without an epoch")


def _text(run, value: Any, what: str, limit: int = 4096) -> str | None:
    """Optional free text: str kept, paths via fspath, other objects as their str()."""
    if value is None or value.__class__ is str:
        return None if value is None else truncate(value, limit)
    if isinstance(value, os.PathLike):
        try:
            return truncate(os.fspath(value), limit)
        except Exception as exc:
            return bad(run, "bad_value", f"{what}: cannot read the path of {describe(value)} "
                       f"({type(exc).__name__})")
    return truncate(safe_str(value), limit)


def _one_id(item: Any, strict: bool, on_fix: Callable[[str, str], None] | None = None) -> str:
    cls = item.__class__
    if cls is str:
        return item if len(item) <= MAX_ID_CHARS else truncate(item, MAX_ID_CHARS)
    if cls is int:
        return str(item)
    try:
        if isinstance(item, os.PathLike):
            return truncate(os.fspath(item), MAX_ID_CHARS)
        if isinstance(item, (bytes, bytearray)):
            return truncate(bytes(item).hex(), MAX_ID_CHARS)
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            return truncate(str.__str__(item) if isinstance(item, str) else str(int(item)),
                            MAX_ID_CHARS)
        if is_tensor(item) and hasattr(item, "item"):
            value = tensor_item(item)
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
    except Exception:  # a meta tensor, a broken __fspath__: said below
        pass
    message = (f"item ids must be str, int, path or bytes, got {describe(item)} "
               f"{safe_repr(item)}; pass an id (e.g. the file path or sample index)")
    if strict:
        raise EventValueError(message)
    text = truncate(safe_str(item), MAX_ID_CHARS)
    if on_fix is not None:
        on_fix("bad_id", f"{message}; stored as its str()")
    return text


def item_ids(items: Any, *, strict: bool,
             on_fix: Callable[[str, str], None] | None = None) -> list[str]:
    """Normalise one id or an iterable of ids to a list of strings.

    Raises:
        EventValueError: ``items`` is neither an id nor iterable, or (strict) an id of an
            unsupported type.
    """
    if isinstance(items, (str, bytes, bytearray, int, os.PathLike)):
        return [_one_id(items, strict, on_fix)]
    try:
        if is_tensor(items) and hasattr(items, "tolist"):
            items = items.tolist()
            if not isinstance(items, list):
                items = [items]
        return [_one_id(item, strict, on_fix) for item in iter(items)]
    except EventValueError:
        raise
    except Exception as exc:
        raise EventValueError(
            f"items must be an id or an iterable of ids, got {describe(items)} "
            f"({type(exc).__name__}: {truncate(safe_str(exc), 120)})"
        ) from None


def _per_item(run, value: Any, n: int, what: str, convert: Callable[[Any], Any]) -> Any:
    def one(v: Any) -> Any:
        if v is None:
            return None
        try:
            return convert(v)
        except Exception as exc:
            return bad(run, "bad_value", f"{what}: {exc}")

    if isinstance(value, (list, tuple)):
        if len(value) != n:
            return bad(run, "bad_value", f"{what} has {len(value)} entries but items has {n}; "
                       f"pass one entry per item or a single value shared by all items")
        return [one(v) for v in value]
    return one(value)


def data_fields(run, items: Any, *, split, step, epoch, source, dataset, augment, cache_hit,
                load_ms) -> dict[str, Any]:
    """The fields of the ``data`` event for :meth:`Run.log_data` (see there for arguments)."""
    ids = item_ids(items, strict=run.strict, on_fix=run._drop)
    n = len(ids)

    def aug(v: Any) -> dict:
        if not hasattr(v, "items"):
            raise EventValueError(f"augment entries must be dicts, got {describe(v)}")
        return jsonable(v, strict=run.strict, what="augment", on_fix=run._drop)

    return dict(
        items=ids,
        split=_text(run, split, "split", 256) or "train",
        step=step_or(run, step, run.step + 1),
        epoch=epoch_or(run, epoch),
        source=_text(run, source, "source", MAX_ID_CHARS),
        dataset=_text(run, dataset, "dataset", 1024),
        augment=_per_item(run, augment, n, "augment", aug),
        cache_hit=_per_item(run, cache_hit, n, "cache_hit", bool),
        load_ms=_per_item(run, load_ms, n, "load_ms", coerce_scalar),
    )


def _meta(run, meta: Any) -> dict:
    out = jsonable({} if meta is None else meta, strict=run.strict, what="meta",
                   on_fix=run._drop)
    if isinstance(out, dict):
        return out
    return bad(run, "bad_value", f"meta must be a mapping, got {describe(meta)}", {})


def _count(run, items: Any) -> int | None:
    if items is None:
        return None
    try:
        n = items if isinstance(items, int) else (
            len(items) if hasattr(items, "__len__") else sum(1 for _ in items))
        return as_int(n, "items")
    except Exception as exc:
        return bad(run, "bad_value", f"items must be a count or a sized collection, got "
                   f"{describe(items)} ({type(exc).__name__}: {truncate(safe_str(exc), 120)})")


def dataset_fields(run, name: Any, *, version, digest, items, source, split,
                   meta) -> dict[str, Any]:
    """The fields of the ``dataset`` event for :meth:`Run.log_dataset`."""
    return dict(name=truncate(safe_str(name), 1024), version=_text(run, version, "version"),
                digest=_text(run, digest, "digest"), items=_count(run, items),
                source=_text(run, source, "source"), split=_text(run, split, "split"),
                meta=_meta(run, meta), step=run._default_step())


def checkpoint_fields(run, uri: Any, *, step, metrics, bytes, sha256, tags) -> dict[str, Any]:
    """The fields of the ``checkpoint`` event for :meth:`Run.log_checkpoint`."""
    try:
        uri = os.fspath(uri)
    except Exception:
        raise EventValueError(f"uri must be a str or path, got {describe(uri)} "
                              f"{safe_repr(uri)}") from None
    if not isinstance(uri, str):
        uri = os.fsdecode(uri)
    uri = truncate(uri, MAX_ID_CHARS)
    size = digest = None
    if bytes is None or sha256 is None:
        size, digest = file_facts(uri, want_hash=sha256 is None)
    if bytes is not None:
        try:
            size = as_int(bytes, "bytes")
        except EventValueError as exc:
            size = bad(run, "bad_value", f"{exc}; recorded without a size")
    if isinstance(tags, str):
        tags = [tags]
    try:
        tags = [truncate(safe_str(t), 256) for t in tags]
    except Exception as exc:
        tags = bad(run, "bad_value", f"tags must be an iterable of str, got {describe(tags)} "
                   f"({type(exc).__name__})", [])
    return dict(uri=uri, step=step_or(run, step, run._default_step()), bytes=size,
                sha256=digest if sha256 is None else _text(run, sha256, "sha256", 128),
                metrics=coerce_metrics({} if metrics is None else metrics, strict=run.strict,
                                       on_drop=run._drop),
                tags=tags)


def sample_fields(run, name: Any, *, scores, step, uri, split, item_id, meta) -> dict[str, Any]:
    """The fields of the ``sample`` event for :meth:`Run.log_sample`."""
    return dict(name=truncate(safe_str(name), 1024),
                scores=coerce_metrics(scores, strict=run.strict, on_drop=run._drop,
                                      what="score"),
                step=step_or(run, step, run._default_step()), uri=_text(run, uri, "uri"),
                split=_text(run, split, "split"),
                item_id=None if item_id is None else _one_id(item_id, run.strict, run._drop),
                meta=_meta(run, meta))


def alert_fields(run, message: Any, *, severity, kind, key, value, suggestion,
                 step) -> dict[str, Any]:
    """The fields of a user ``alert`` event for :meth:`Run.alert`."""
    if severity not in SEVERITIES:
        severity = bad(run, "bad_value", f"severity must be one of {SEVERITIES}, got "
                       f"{safe_repr(severity)}; recorded as 'warning'", "warning")
    if value is not None:
        try:
            value = coerce_scalar(value)
        except (TypeError, ValueError) as exc:
            value = bad(run, "bad_value", f"alert value: {exc}")
    return dict(message=truncate(safe_str(message)), severity=severity,
                alert=truncate(safe_str(kind), 256), key=_text(run, key, "key", 1024),
                value=value, suggestion=_text(run, suggestion, "suggestion", 65536),
                step=step_or(run, step, run._default_step()), source="user")


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
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None, None
