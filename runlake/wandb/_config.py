"""``run.config`` / ``wandb.config``: W&B's Config, recorded as runlake config.

Attribute and item access, ``update``, ``setdefaults``, ``keys``/``items``/``values``/
``as_dict``/``get``. Before the run starts the values go into ``run_start.config``; every
change after that is one ``update`` event (``RunUpdate.config``), which ingest merges into
``runs.config`` in order. As in W&B, changing the value of an existing key raises
:class:`~runlake.wandb.Error` unless ``allow_val_change=True`` (per call, or for the run via
``wandb.init(allow_val_change=True)``); setting the same value again is a no-op.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Iterator, Mapping

from runlake.emitter.jsonable import jsonable
from runlake.emitter.values import user_stacklevel
from runlake.schemas.errors import RunlakeWarning
from runlake.wandb._errors import Error

__all__ = ["Config", "as_mapping"]


def as_mapping(value: Any, what: str = "config") -> dict[str, Any]:
    """A W&B config argument as a plain dict: a mapping, argparse namespace, dataclass,
    absl flags or anything ``jsonable`` reads as an object; None is ``{}``."""
    if value is None:
        return {}
    if hasattr(value, "flag_values_dict"):  # absl.flags.FLAGS, as W&B accepts
        value = value.flag_values_dict()
    if isinstance(value, (str, os.PathLike)):
        value = _yaml_file(os.fspath(value), what)
    out = jsonable(value, strict=False, what=what, on_fix=_warn_once)
    if not isinstance(out, dict):
        raise Error(f"{what} must be a dict (or argparse namespace / dataclass), got "
                    f"{type(value).__name__}")
    return out


def _yaml_file(path: str, what: str) -> Any:
    """W&B's ``config="config.yaml"``: the file's mapping (needs PyYAML, as W&B does)."""
    if not path.endswith((".yaml", ".yml")) or not os.path.isfile(path):
        raise Error(f"{what} must be a dict or the path of a .yaml file, got {path!r}")
    try:
        import yaml
    except ImportError:
        raise Error(f"{what}={path!r}: reading a YAML config needs PyYAML (pip install "
                    f"pyyaml)") from None
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _warn_once(cause: str, message: str) -> None:
    """A value W&B would store as its ``str()``: repaired by ``jsonable``, one warning."""
    warnings.warn(f"runlake.wandb: {message}", RunlakeWarning, stacklevel=user_stacklevel())


class Config:
    """A run's hyperparameters with W&B's access patterns."""

    def __init__(self, values: Mapping[str, Any] | None = None, *, allow_val_change: bool = False,
                 emit: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_items", dict(values or {}))
        object.__setattr__(self, "_allow", bool(allow_val_change))
        object.__setattr__(self, "_emit", emit)

    # -- writing -----------------------------------------------------------------------------
    def _set(self, changes: Mapping[str, Any], allow_val_change: bool | None,
             only_new: bool = False) -> None:
        items: dict[str, Any] = self._items
        allow = self._allow if allow_val_change is None else bool(allow_val_change)
        new = as_mapping(changes)
        out: dict[str, Any] = {}
        for k, v in new.items():
            if k in items:
                if only_new or items[k] == v:
                    continue
                if not allow:
                    raise Error(f"Attempted to change value of key {k!r} from {items[k]!r} to "
                                f"{v!r}; pass allow_val_change=True to config.update() if you "
                                f"really want this")
            out[k] = v
        if not out:
            return
        items.update(out)
        if self._emit is not None:
            self._emit(out)

    def update(self, d: Any, allow_val_change: bool | None = None) -> None:
        """Add or change keys (a dict, namespace or dataclass)."""
        self._set(d, allow_val_change)

    def setdefaults(self, d: Any) -> None:
        """Add the keys that are not set yet; existing values are kept."""
        self._set(d, None, only_new=True)

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({key: value}, None)

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            raise Error(f"config keys starting with '_' are reserved (W&B's rule too): {key!r}")
        self._set({key: value}, None)

    # -- reading -----------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __delitem__(self, key: str) -> None:
        raise Error(f"config keys cannot be removed once recorded ({key!r}); set a new value "
                    f"with config.update({{{key!r}: ...}}, allow_val_change=True)")

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)

    def keys(self):
        return self._items.keys()

    def items(self):
        return self._items.items()

    def values(self):
        return self._items.values()

    def as_dict(self) -> dict[str, Any]:
        """A copy of every key and value."""
        return dict(self._items)

    def __repr__(self) -> str:
        return f"Config({self._items!r})"
