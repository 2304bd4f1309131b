"""Turning what users pass to ``Run.log`` and friends into values the schema can hold.

The hot path in :mod:`runlake.emitter.run` handles the common case (a dict of plain floats
with keys seen before) without calling anything here. This module is the slow path: it
converts ints, bools, numpy scalars and 0-dim torch tensors to floats, validates keys, and
produces clear errors (strict mode) or counted drops (non-strict mode). numpy and torch are
recognised by the module name of the value's type, never imported.

Limits (documented in docs/emitter.md): metric keys are strings of at most
:data:`MAX_KEY_CHARS` characters; free text (log messages, alert text) longer than
:data:`MAX_TEXT_CHARS` is truncated with :data:`TRUNCATION_MARKER`, never rejected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Callable

from runlake.schemas.errors import ConfigError, EventValueError

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_TEXT_CHARS",
    "TRUNCATION_MARKER",
    "coerce_scalar",
    "coerce_metrics",
    "jsonable",
    "truncate",
]

MAX_KEY_CHARS = 256
MAX_TEXT_CHARS = 64 * 1024
TRUNCATION_MARKER = "…[truncated by runlake: {n} more characters]"

_TENSOR_MODULES = ("torch", "numpy", "jax", "jaxlib", "tensorflow", "mlx", "cupy")


def truncate(text: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """``str(text)`` cut to ``limit`` characters plus a marker saying how much was cut."""
    if text.__class__ is not str:
        text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)


def _describe(value: Any) -> str:
    t = type(value)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def coerce_scalar(value: Any) -> float:
    """One metric value as a float.

    Accepts float (and subclasses such as numpy.float64), int, bool, numpy scalars and
    single-element numpy arrays / torch tensors (through ``.item()``). NaN and ±Inf are kept.

    Raises:
        TypeError: the value is not a number (message names the type).
        ValueError: a tensor/array with more than one element.
    """
    cls = value.__class__
    if cls is float:
        return value
    if cls is int or cls is bool:
        return float(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):  # int subclasses, IntEnum
        return float(value)
    root = cls.__module__.partition(".")[0]
    if root in _TENSOR_MODULES and hasattr(value, "item"):
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", 1)
        if size != 1:
            shape = tuple(getattr(value, "shape", ()))
            raise ValueError(
                f"expected a scalar, got a {_describe(value)} of shape {shape}; "
                f"log one element (e.g. x.mean()) or use separate keys"
            )
        item = value.item()
        if isinstance(item, (int, float)) and not isinstance(item, complex):
            return float(item)
        raise TypeError(f"expected a real number, got {_describe(value)} holding {item!r}")
    raise TypeError(f"expected a number, got {_describe(value)}")


def _check_key(key: Any) -> str:
    if key.__class__ is not str:
        if isinstance(key, str):
            return str(key)
        raise EventValueError(
            f"metric keys must be str, got {_describe(key)} key {truncate(repr(key), 80)}; "
            f"convert it, e.g. str(key)"
        )
    if len(key) > MAX_KEY_CHARS or not key:
        raise EventValueError(
            f"metric key must be 1-{MAX_KEY_CHARS} characters, got one of {len(key)} "
            f"characters starting {truncate(key, 60)!r}; use a shorter key"
        )
    return key


def coerce_metrics(
    metrics: Any,
    *,
    strict: bool,
    on_drop: Callable[[str, str], None],
    what: str = "metric",
) -> dict[str, float]:
    """Validate and convert a mapping of key -> scalar.

    Args:
        metrics: the mapping passed by the user.
        strict: raise on the first bad key or value; else drop it and call ``on_drop``.
        on_drop: ``on_drop(cause, message)`` for each dropped entry (non-strict only).
        what: noun used in messages ("metric", "score").

    Returns:
        A new dict of str -> float (NaN/Inf kept).

    Raises:
        EventValueError: ``metrics`` is not a mapping, or (strict) a key or value is bad.
    """
    if not isinstance(metrics, Mapping):
        raise EventValueError(
            f"expected a mapping of {what} name -> number, got {_describe(metrics)}; "
            f"pass e.g. {{'loss': 0.5}}"
        )
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            k = _check_key(key)
        except EventValueError as exc:
            if strict:
                raise
            on_drop("bad_key", str(exc))
            continue
        try:
            out[k] = coerce_scalar(value)
        except (TypeError, ValueError) as exc:
            message = (
                f"{what} {truncate(k, 80)!r}: {exc}"
                + ("" if isinstance(value, (int, float)) else f" (value {truncate(repr(value), 80)})")
            )
            if strict:
                raise EventValueError(
                    message + "; pass strict=False to runlake.init() to drop such values"
                ) from None
            on_drop("bad_value", message)
    return out


def _config_hook(strict: bool) -> Callable[[Any], Any]:
    def hook(obj: Any) -> Any:
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        root = type(obj).__module__.partition(".")[0]
        if root in _TENSOR_MODULES and hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "__dict__") and type(obj).__name__ == "Namespace":
            return vars(obj)
        if strict:
            raise ConfigError(
                f"config value of type {_describe(obj)} is not JSON-able "
                f"({truncate(repr(obj), 80)}); convert it (e.g. str()) or pass strict=False "
                f"to store str(value)"
            )
        return str(obj)

    return hook


def jsonable(value: Any, *, strict: bool, what: str = "config") -> Any:
    """A JSON-able copy of ``value`` (dicts, lists, str, numbers, bool, None).

    Dataclasses, msgspec structs, enums, datetimes, paths, argparse namespaces and
    numpy/torch values are converted; anything else raises (strict) or becomes ``str()``.

    Raises:
        ConfigError: strict mode and a value cannot be represented in JSON.
    """
    import msgspec

    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
        value = vars(value)
    try:
        out = msgspec.to_builtins(value, str_keys=True, enc_hook=_config_hook(strict))
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        if strict:
            raise ConfigError(f"{what} is not JSON-able: {exc}") from None
        return truncate(value)
    return _nonfinite_to_str(out)


def _nonfinite_to_str(value: Any) -> Any:
    if value.__class__ is float and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _nonfinite_to_str(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nonfinite_to_str(v) for v in value]
    return value
