"""Turning what users pass to ``Run.log`` and friends into values the schema can hold.

The hot path in :mod:`runlake.emitter.run` handles the common case (a dict of plain floats
with keys seen before) without calling anything here. This module is the slow path: it
converts ints, bools, float/int subclasses, ``Fraction``/``Decimal``, numpy scalars and
single-element torch tensors to floats, flattens nested dicts (``{"train": {"loss": 1}}``
is ``train/loss``), validates keys, and produces clear errors (strict mode) or counted
drops (non-strict mode). numpy and torch are recognised by the module name of the value's
type, never imported: :func:`is_tensor` (modules :data:`TENSOR_MODULES`) and
:func:`tensor_item` are the one rule, used by metrics, steps, item ids and config values.

The guarantee behind ``strict=False``: nothing a user passes makes these functions raise.
:func:`coerce_scalar` raises only ``TypeError``/``ValueError`` with a message naming the
type (whatever the value's own methods raise: a meta tensor's ``.item()``, an overflowing
``float()``), and :func:`coerce_metrics` turns each bad key or value into one ``on_drop``
call, keeping the rest. Config-like values go through :func:`runlake.emitter.jsonable`.

Limits (documented in docs/emitter.md): metric keys are strings of at most
:data:`MAX_KEY_CHARS` characters; nested metric dicts at most :data:`MAX_NESTING` levels;
free text (log messages, alert text) longer than :data:`MAX_TEXT_CHARS` is truncated with
:data:`TRUNCATION_MARKER`, never rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable

from runlake.schemas.errors import EventValueError

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_NESTING",
    "MAX_TEXT_CHARS",
    "TENSOR_MODULES",
    "TRUNCATION_MARKER",
    "as_int",
    "check_key",
    "clean_values",
    "coerce_metrics",
    "coerce_scalar",
    "describe",
    "is_pil_image",
    "is_tensor",
    "safe_repr",
    "safe_str",
    "tensor_item",
    "truncate",
    "user_stacklevel",
]

MAX_KEY_CHARS = 256
MAX_NESTING = 16
"""Levels of nested metric dicts flattened into ``a/b/c`` keys; deeper ones are bad values."""
MAX_TEXT_CHARS = 64 * 1024
TRUNCATION_MARKER = "…[truncated by runlake: {n} more characters]"

TENSOR_MODULES = ("torch", "numpy", "jax", "jaxlib", "tensorflow", "mlx", "cupy", "ml_dtypes")
"""Top-level modules whose array/scalar types are read through ``.item()``/``.tolist()``."""


def is_tensor(value: Any) -> bool:
    """True when ``value``'s type comes from one of :data:`TENSOR_MODULES` (numpy scalars and
    arrays, torch/jax/... tensors), judged by the type's module name: nothing is imported."""
    return value.__class__.__module__.partition(".")[0] in TENSOR_MODULES


def is_pil_image(value: Any) -> bool:
    """True for a Pillow image (its type comes from ``PIL``), judged like :func:`is_tensor`:
    by the type's module name, so Pillow is never imported to ask."""
    return value.__class__.__module__.partition(".")[0] == "PIL"


def tensor_item(value: Any) -> Any:
    """The Python scalar a one-element tensor or array holds (``.item()``), for
    :func:`is_tensor` values.

    Raises:
        ValueError: more than one element (message names the shape).
        Exception: whatever the value's own ``.item()`` raises (a meta tensor has no data).
    """
    numel = getattr(value, "numel", None)
    size = numel() if callable(numel) else getattr(value, "size", 1)
    if size != 1:
        shape = tuple(getattr(value, "shape", ()))
        raise ValueError(
            f"expected a scalar, got a {describe(value)} of shape {shape}; "
            f"log one element (e.g. x.mean()) or use separate keys"
        )
    return value.item()


def describe(value: Any) -> str:
    """The qualified name of ``value``'s type (``float``, ``numpy.float32``)."""
    t = type(value)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def safe_str(value: Any) -> str:
    """``str(value)``, or a placeholder naming the type when ``__str__`` itself fails."""
    if value.__class__ is str:
        return value
    try:
        return str(value)
    except Exception as exc:  # a user __str__ raising, a 3000-deep dict (RecursionError)
        return f"<{describe(value)} (str() failed: {type(exc).__name__})>"


def safe_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{describe(value)} (repr() failed: {type(exc).__name__})>"
    return truncate(text, limit)


def truncate(text: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """``str(text)`` cut to ``limit`` characters plus a marker saying how much was cut."""
    if text.__class__ is not str:
        text = safe_str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(n=len(text) - limit)


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` (called right here) that names user code.

    Warnings are raised a varying number of frames deep inside runlake (nested dicts,
    config walks); pointing at the first frame outside the package tells the user which of
    their lines caused it.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("runlake."):
        frame, level = frame.f_back, level + 1
    return level


def _int_to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"int with {len(str(abs(value))) if value.bit_length() < 40_000 else 'over 12,000'} "
            f"digits is too large for a float64 (max ~1.8e308)"
        ) from None


def _convert(value: Any, cls: type) -> float:
    if isinstance(value, (str, bytes, bytearray, complex)) or value is None:
        raise TypeError(f"expected a number, got {describe(value)}")
    if isinstance(value, float):  # float subclasses, numpy.float64
        return float(value)
    if isinstance(value, int):  # bool, int subclasses, IntEnum
        return _int_to_float(int(value))
    if is_tensor(value) and hasattr(value, "item"):
        item = tensor_item(value)  # a meta tensor raises here; the caller words it
        if isinstance(item, (int, float)) and not isinstance(item, complex):
            return float(item) if isinstance(item, float) else _int_to_float(int(item))
        raise TypeError(f"expected a real number, got {describe(value)} holding {safe_repr(item)}")
    if hasattr(cls, "__float__") and not isinstance(value, Mapping):
        return float(value)  # Fraction, Decimal, other numeric types
    raise TypeError(f"expected a number, got {describe(value)}")


def coerce_scalar(value: Any) -> float:
    """One metric value as a float.

    Accepts float and int (and their subclasses: bool, IntEnum, numpy.float64), Fraction,
    Decimal and other types with ``__float__``, numpy scalars and single-element numpy
    arrays / torch tensors of any real dtype (bfloat16, bool, ints) through ``.item()``.
    NaN and ±Inf are kept.

    Raises:
        TypeError: the value is not a real number (message names the type).
        ValueError: a tensor/array with more than one element, an int beyond float range,
            or a value whose own conversion failed (e.g. a meta tensor has no data).
    """
    cls = value.__class__
    if cls is float:
        return value
    if cls is int or cls is bool:
        return _int_to_float(value)
    try:
        return _convert(value, cls)
    except (TypeError, ValueError):
        raise
    except Exception as exc:  # the value's own __float__/item() failed: say which and why
        detail = "too large for a float64" if isinstance(exc, OverflowError) else safe_str(exc)
        raise ValueError(
            f"cannot read a number from {describe(value)} ({type(exc).__name__}: "
            f"{truncate(detail, 120)})"
        ) from None


def as_int(value: Any, what: str, bound: int = 2**63) -> int:
    """``value`` as a plain int within ±``bound`` (the store's BIGINT or INTEGER).

    Accepts ints, one-element integer tensors/arrays (:func:`tensor_item`) and other integer
    types (``__index__``), not bools or floats, whichever library holds them.

    Raises:
        EventValueError: another type, or out of range (message names both).
    """
    if value.__class__ is not int and is_tensor(value) and hasattr(value, "item"):
        held = value
        try:
            value = tensor_item(held)
        except Exception as exc:  # a meta tensor, a multi-element array
            raise EventValueError(
                f"{what} must be an int, got {describe(held)} that cannot be read as one "
                f"({type(exc).__name__}: {truncate(safe_str(exc), 120)})"
            ) from None
        if value.__class__ is not int:  # a bool or a float inside the tensor
            raise EventValueError(f"{what} must be an int, got {describe(held)} holding "
                                  f"{describe(value)} {safe_repr(value)}")
    if value.__class__ is not int:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise EventValueError(
                f"{what} must be an int, got {describe(value)} {safe_repr(value)}"
            )
        try:
            value = int(value.__index__())
        except Exception as exc:  # a meta tensor, a multi-element array
            raise EventValueError(
                f"{what} must be an int, got {describe(value)} that cannot be read as one "
                f"({type(exc).__name__}: {truncate(safe_str(exc), 120)})"
            ) from None
    if not -bound <= value < bound:
        raise EventValueError(
            f"{what} must fit in {bound.bit_length()} bits (signed), got "
            f"{truncate(safe_str(value), 40)}"
        )
    return value


def check_key(key: Any) -> str:
    """A metric (or histogram/media) key: a str of 1-:data:`MAX_KEY_CHARS` characters.

    Raises:
        EventValueError: another type, empty or too long (message says how to fix it).
    """
    if key.__class__ is not str:
        if isinstance(key, str):
            return str.__str__(key)
        raise EventValueError(
            f"metric keys must be str, got {describe(key)} key {safe_repr(key)}; "
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
    """Validate and convert a mapping of key -> scalar; nested mappings become ``a/b`` keys.

    Args:
        metrics: the mapping passed by the user.
        strict: raise on the first bad key or value; else drop it and call ``on_drop``.
        on_drop: ``on_drop(cause, message)`` for each dropped entry (non-strict only);
            causes are ``bad_key`` and ``bad_value``.
        what: noun used in messages ("metric", "score").

    Returns:
        A new dict of str -> float (NaN/Inf kept).

    Raises:
        EventValueError: (strict only) ``metrics`` is not a mapping, or a key or value is
            bad. With ``strict=False`` nothing raises: a non-mapping gives ``{}``.
    """
    out: dict[str, float] = {}

    def bad(cause: str, message: str) -> None:
        if strict:
            raise EventValueError(message + "; pass strict=False to runlake.init() to drop "
                                  "such values")
        on_drop(cause, message)

    if not isinstance(metrics, Mapping):
        bad("bad_value", f"expected a mapping of {what} name -> number, got "
            f"{describe(metrics)}; pass e.g. {{'loss': 0.5}}")
        return out
    try:
        _flatten(metrics, "", (id(metrics),), out, bad, what)
    except EventValueError:
        if strict:
            raise
    except Exception as exc:  # a Mapping whose items() raises: keep what was read
        bad("bad_value", f"cannot read the {what}s from {describe(metrics)} "
            f"({type(exc).__name__}: {truncate(safe_str(exc), 120)})")
    return out


def _flatten(mapping: Mapping, prefix: str, path: tuple[int, ...], out: dict[str, float],
             bad: Callable[[str, str], None], what: str) -> None:
    for key, value in mapping.items():
        try:
            k = prefix + check_key(key)
            if prefix:
                check_key(k)
        except EventValueError as exc:
            bad("bad_key", f"{what} key {safe_repr(key)}"
                + (f" under {prefix[:-1]!r}" if prefix else "") + f": {exc}")
            continue
        if isinstance(value, Mapping):
            if id(value) in path:
                bad("bad_value", f"{what} {truncate(k, 80)!r}: the dict contains itself")
            elif len(path) >= MAX_NESTING:
                bad("bad_value", f"{what} {truncate(k, 80)!r}: dicts nested more than "
                    f"{MAX_NESTING} levels deep; flatten the keys")
            else:
                _flatten(value, k + "/", (*path, id(value)), out, bad, what)
            continue
        if k in out:
            bad("bad_key", f"{what} key {truncate(k, 80)!r} given twice (a nested dict "
                f"flattens to the same key); the first value is kept")
            continue
        try:
            out[k] = coerce_scalar(value)
        except (TypeError, ValueError) as exc:
            bad("bad_value", f"{what} {truncate(k, 80)!r}: {exc}"
                + ("" if isinstance(value, (int, float)) else f" (value {safe_repr(value)})"))


def clean_values(values: Mapping) -> tuple[dict[str, float], list[str]]:
    """``values`` with every key a str and every value a float, and why the others went.

    For the writer thread: a value that slipped past ``Run.log``'s fast path (a float
    subclass, a Fraction) is converted here, so one odd value never costs its event.
    """
    problems: list[str] = []
    out = coerce_metrics(values, strict=False, on_drop=lambda _c, m: problems.append(m))
    return out, problems
