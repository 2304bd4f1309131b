"""``run.summary`` / ``wandb.summary``: W&B's summary, recorded as runlake's run summary.

What a key holds, as in W&B: the last value logged under it, or what a
``define_metric(summary=...)`` rule asks for (``{"max": .., "mean": ..}``; ``none`` drops
the key); a value set explicitly (``summary["best"] = x``, ``summary.best = x``,
``summary.update({...})``) wins until the key is logged again.

Recording: explicit sets are batched (:attr:`SummaryState.dirty`) and written as one
``update`` event (``RunUpdate.summary``) at the next committed ``log()`` row or at
``finish()``; the whole summary (logged values included) goes into ``run_end.summary``,
in :func:`recorded`'s flat form (the view keeps W&B's nested one).
The hot path only does ``values.update(row)``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from runlake.emitter.jsonable import jsonable
from runlake.wandb._rules import Aggregate

__all__ = ["Summary", "SummaryState", "recorded"]


def recorded(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The summary as runlake stores it: nested dicts flattened with ``"."`` as W&B displays
    them (``{"val/loss": {"min": 1}}`` -> ``"val/loss.min"``, the importer's form too);
    media and histogram entries (``{"_type": ...}``) left out: their events hold them."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        if isinstance(v, dict):
            if "_type" not in v:
                out.update(recorded(v, f"{prefix}{k}."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) and "_type" in x for x in v):
            continue
        else:
            out[prefix + k] = v
    return out


class SummaryState:
    """The values behind a run's summary (owned by the run, shared with its view)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.aggs: dict[str, Aggregate] = {}
        self.pinned: set[str] = set()
        self.dirty: dict[str, Any] = {}
        self.dropped: set[str] = set()  # "none" rules

    def set(self, key: str, value: Any) -> None:
        value = jsonable(value, strict=False, what=f"summary[{key!r}]")
        self.values[key] = value
        self.pinned.add(key)
        self.dropped.discard(key)
        self.dirty[key] = value

    def final(self) -> dict[str, Any]:
        """The summary as W&B shows it."""
        out: dict[str, Any] = {}
        for k, v in self.values.items():
            if k in self.pinned:
                out[k] = v
            elif k in self.dropped:
                continue
            elif k in self.aggs:
                out[k] = self.aggs[k].value()
            else:
                out[k] = v
        return out


class Summary:
    """A mapping view of the run's summary with W&B's item, attribute and update access."""

    def __init__(self, state: SummaryState, on_change: Callable[[], None] | None = None) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_on_change", on_change)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"summary keys must be strings, got {key!r}")
        self._state.set(key, value)
        self._changed()

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def update(self, d: Any = None, **kwargs: Any) -> None:
        """Set several keys at once (one ``update`` event)."""
        for k, v in {**dict(d or {}), **kwargs}.items():
            self._state.set(str(k), v)
        self._changed()

    def __getitem__(self, key: str) -> Any:
        final = self._state.final()
        return final[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __delitem__(self, key: str) -> None:
        """Remove a key from the final summary (an earlier recorded value reads null)."""
        state = self._state
        if key not in state.values:
            raise KeyError(key)
        del state.values[key]
        state.pinned.discard(key)
        state.dirty[key] = None
        self._changed()

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.final().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._state.final()

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.final())

    def __len__(self) -> int:
        return len(self._state.final())

    def keys(self):
        return self._state.final().keys()

    def items(self):
        return self._state.final().items()

    def values(self):
        return self._state.final().values()

    def as_dict(self) -> dict[str, Any]:
        return self._state.final()

    def __repr__(self) -> str:
        return f"Summary({self._state.final()!r})"
