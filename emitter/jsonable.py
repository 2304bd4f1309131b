"""JSON-able copies of what users pass as config, meta, augment parameters and summaries.

One pass of ``msgspec.to_builtins`` handles the common case (dicts of str/number/bool,
dataclasses, msgspec structs, enums, datetimes, paths, argparse namespaces, numpy/torch
values) in C. Anything it refuses - a tuple key, a 3000-deep or circular dict, an object it
cannot encode, a tensor that cannot be read - is walked again here, in Python, with an
explicit depth limit (:data:`MAX_DEPTH`) and cycle check, so the walk itself cannot overflow
the stack, and each problem is named with its path (``config.optim.betas``):

* ``strict=True`` raises :class:`ConfigError` with that message
  (``config key (1, 2) at config: keys must be str, got tuple``);
* ``strict=False`` never raises: a bad key becomes ``str(key)``, an unencodable value its
  ``str()``, a cycle or too-deep branch a marker string, and ``on_fix(cause, message)`` is
  called once per problem (the run warns once per cause and counts them).

Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no token
for them).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any, Callable

import msgspec

from runlake.emitter.values import describe, is_tensor, safe_repr, safe_str, truncate
from runlake.schemas.errors import ConfigError

__all__ = ["MAX_DEPTH", "jsonable"]

MAX_DEPTH = 64
"""Nesting levels a config/meta value may have; deeper branches are an error (strict) or a
marker string."""
_MAX_LEAF_CHARS = 4096
_BUILTINS = frozenset({dict, list, str, int, float, bool, type(None)})


class _Refused(Exception):
    """Raised inside the fast pass to hand the value to the careful walk."""


def _hook(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if is_tensor(obj) and hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dict__") and type(obj).__name__ == "Namespace":
        return vars(obj)
    raise _Refused


def _finish(value: Any, depth: int) -> Any:
    """The fast pass's output with non-finite floats as strings; _Refused past MAX_DEPTH."""
    cls = value.__class__
    if cls is float:
        return value if math.isfinite(value) else repr(value)
    if cls is dict or cls is list:
        if depth >= MAX_DEPTH:
            raise _Refused
        if cls is dict:
            return {k: _finish(v, depth + 1) for k, v in value.items()}
        return [_finish(v, depth + 1) for v in value]
    return value


def jsonable(value: Any, *, strict: bool, what: str = "config",
             on_fix: Callable[[str, str], None] | None = None) -> Any:
    """A JSON-able copy of ``value`` (dicts with str keys, lists, str, numbers, bool, None).

    Args:
        value: the user's value.
        strict: raise on the first problem, or repair it (module docstring).
        what: the name of the value in messages and paths ("config", "meta").
        on_fix: ``on_fix(cause, message)`` per repaired problem (non-strict only); causes
            are ``bad_key``, ``not_jsonable``, ``circular`` and ``too_deep``.

    Raises:
        ConfigError: (strict only) the message names the path and the problem.
    """
    try:
        return _finish(msgspec.to_builtins(value, str_keys=True, enc_hook=_hook), 0)
    except Exception:  # refused or failed in C: walk it again to say where and why
        pass
    return _Walk(strict, what, on_fix).value(value, what, 0, frozenset())


def _short(path: str) -> str:
    return path if len(path) <= 120 else path[:100] + "…" + path[-19:]


def _fields(value: Any) -> dict[Any, Any] | None:
    """The entries of a mapping-like value (dict, dataclass, struct, namespace), else None."""
    if isinstance(value, Mapping):
        return dict(value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, msgspec.Struct):
        return msgspec.structs.asdict(value)
    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
        return dict(vars(value))
    return None


class _Walk:
    def __init__(self, strict: bool, what: str, on_fix: Callable[[str, str], None] | None):
        self.strict, self.what, self.on_fix = strict, what, on_fix

    def fix(self, cause: str, message: str, replacement: Any) -> Any:
        if self.strict:
            raise ConfigError(message)
        if self.on_fix is not None:
            self.on_fix(cause, message + f"; stored as {truncate(replacement, 60)!r}")
        return replacement

    def key(self, key: Any, path: str) -> str:
        if key.__class__ is str:
            return key
        if isinstance(key, str):
            return str.__str__(key)
        if isinstance(key, (int, float)) and not isinstance(key, bool):
            return repr(float(key)) if isinstance(key, float) else str(int(key))
        return self.fix("bad_key", f"{self.what} key {safe_repr(key)} at {_short(path)}: keys "
                        f"must be str, got {describe(key)}; convert it, e.g. str(key)",
                        truncate(safe_str(key), 256))

    def value(self, value: Any, path: str, depth: int, above: frozenset[int]) -> Any:
        cls = value.__class__
        if value is None or cls is str or cls is bool or cls is int:
            return value
        if cls is float:
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, str):  # subclasses (str enums): the plain value
            return str.__str__(value)
        if isinstance(value, int):  # IntEnum, numpy ints are not int subclasses
            return int.__int__(value)
        if isinstance(value, float):  # numpy.float64
            return self.value(float.__float__(value), path, depth, above)
        if depth >= MAX_DEPTH:
            return self.fix("too_deep", f"{self.what} is nested more than {MAX_DEPTH} levels "
                            f"deep at {_short(path)}; flatten it", f"<nested deeper than "
                            f"{MAX_DEPTH} levels>")
        try:
            entries = _fields(value)
            items = None if entries is not None or not isinstance(
                value, (list, tuple, set, frozenset)) else list(value)
        except Exception as exc:
            return self.refuse(value, path, exc)
        if entries is not None or items is not None:
            if id(value) in above:
                return self.fix("circular", f"{self.what} at {_short(path)} contains itself "
                                f"(a circular reference); break the cycle",
                                "<circular reference>")
            inner = above | {id(value)}
            if items is not None:
                return [self.value(v, f"{path}[{i}]", depth + 1, inner)
                        for i, v in enumerate(items)]
            out = {}
            for k, v in entries.items():
                key = self.key(k, path)
                out[key] = self.value(v, f"{path}.{key}", depth + 1, inner)
            return out
        try:  # a leaf: enum, datetime, Decimal, path, tensor...
            leaf = msgspec.to_builtins(value, str_keys=True, enc_hook=_hook)
        except Exception as exc:
            return self.refuse(value, path, exc)
        if leaf.__class__ not in _BUILTINS:
            return self.refuse(value, path, _Refused())
        return self.value(leaf, path, depth, above)  # a tensor's tolist() is a nested list

    def refuse(self, value: Any, path: str, exc: Exception) -> str:
        reason = "" if isinstance(exc, _Refused) else f": {type(exc).__name__}: {safe_str(exc)}"
        return self.fix("not_jsonable", f"{self.what} value at {_short(path)} of type "
                        f"{describe(value)} is not JSON-able ({safe_repr(value)}"
                        f"{truncate(reason, 120)}); convert it (e.g. str()) or pass "
                        f"strict=False to store str(value)", truncate(safe_str(value),
                                                                     _MAX_LEAF_CHARS))
