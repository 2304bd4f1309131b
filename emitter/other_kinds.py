"""The ``Run`` methods for every event kind but metrics: data, datasets, checkpoints, samples,
alerts (histograms, media and run updates come from :mod:`runlake.emitter.media`).

A base class of :class:`runlake.emitter.run.Run`, kept apart so ``run.py`` holds the hot
path, the wiring and the run's end. Each method builds its fields with :mod:`records` (which
validates and repairs arguments) and emits through the run's ``_emit``; the run provides
``strict``, ``_ended``, ``_closed``, ``_drop``, ``_emit``, ``_envelope`` and the ``_items``
/ ``_augmented`` counters of the console block.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

from runlake.emitter import records
from runlake.emitter.media import MediaKinds
from runlake.emitter.values import safe_str, truncate
from runlake.schemas.errors import EventValueError, RunlakeError
from runlake.schemas.events import Alert, Checkpoint, Data, Dataset, Event, Sample

__all__ = ["OtherKinds"]


class OtherKinds(MediaKinds):
    """``log_data``, ``log_dataset``, ``log_checkpoint``, ``log_sample`` and ``alert``
    (histograms, media and updates: :class:`MediaKinds`)."""

    def _record(self, call: str, cls: type[Event], build: Callable[..., dict | None],
                *args: Any, **kw: Any) -> dict | None:
        """Build an event's fields and emit it; returns the fields, or None when refused.

        ``build`` returns None (or nothing to record: ``{}``) when it already counted
        the event as dropped, or there is no event to write.

        A bad argument is handled inside ``build`` (:mod:`records`: raise in strict mode,
        else drop only that argument). Whatever escapes it - an argument that cannot be
        read at all, like ``items=object()`` - is an :class:`EventValueError` in strict
        mode and, with ``strict=False``, one warning and a counted drop of this event.
        """
        if self._ended:
            self._closed()
        try:
            fields = build(self, *args, **kw)
        except Exception as exc:
            if self.strict and isinstance(exc, RunlakeError):
                raise
            if isinstance(exc, RunlakeError):
                message = f"{call}(): {exc}"
            else:
                message = (f"{call}() could not read its arguments ({type(exc).__name__}: "
                           f"{truncate(safe_str(exc), 200)})")
            if self.strict:
                raise EventValueError(message) from exc
            self._drop("bad_event", message + "; the event was dropped")
            return None
        if not fields:
            return None
        self._emit(cls, **fields)
        return fields

    def log_data(
        self,
        items: Any,
        *,
        split: str = "train",
        step: int | None = None,
        epoch: int | None = None,
        source: str | None = None,
        dataset: str | None = None,
        augment: Mapping[str, Any] | list[Mapping[str, Any] | None] | None = None,
        cache_hit: bool | list[bool | None] | None = None,
        load_ms: float | list[float | None] | None = None,
    ) -> None:
        """Record which items a step consumed (lineage).

        Args:
            items: one id or an iterable of ids (str, int, path, numpy/torch integers).
            step: default: the step the next ``log()`` will record (``run.step + 1``),
                since data is normally loaded before that step's metrics are logged.
            augment: parameters shared by every item (a dict) or one dict (or None) per item.
            cache_hit, load_ms: shared by every item, or one value per item.

        Raises:
            EventValueError: (strict) an id of an unsupported type, or per-item lists whose
                length differs from ``items``.
        """
        fields = self._record("log_data", Data, records.data_fields, items, split=split,
                              step=step, epoch=epoch, source=source, dataset=dataset,
                              augment=augment, cache_hit=cache_hit, load_ms=load_ms)
        if fields is None:
            return
        n = len(fields["items"])
        aug = fields["augment"]
        self._items += n
        if isinstance(aug, list):
            self._augmented += sum(1 for a in aug if a)
        elif aug:
            self._augmented += n

    def log_dataset(self, name: str, *, version: str | None = None, digest: str | None = None,
                    items: int | Iterable[Any] | None = None, source: str | None = None,
                    split: str | None = None, meta: Mapping[str, Any] | None = None) -> None:
        """Register a dataset: name, version/digest, item count (or a sized collection)."""
        self._record("log_dataset", Dataset, records.dataset_fields, name, version=version,
                     digest=digest, items=items, source=source, split=split, meta=meta)

    def log_checkpoint(self, uri: str | os.PathLike, *, step: int | None = None,
                       metrics: Mapping[str, Any] | None = None, bytes: int | None = None,
                       sha256: str | None = None, tags: Iterable[str] = ()) -> None:
        """Record a saved checkpoint; size and sha256 are filled in for an existing local file.

        Hashing reads the file on the calling thread; pass ``sha256`` to skip it.
        """
        self._record("log_checkpoint", Checkpoint, records.checkpoint_fields, uri, step=step,
                     metrics=metrics, bytes=bytes, sha256=sha256, tags=tags)

    def log_sample(self, name: str, *, scores: Mapping[str, Any], step: int | None = None,
                   uri: str | None = None, split: str | None = None, item_id: Any = None,
                   meta: Mapping[str, Any] | None = None) -> None:
        """Record a generated or evaluated sample and its quality scores."""
        self._record("log_sample", Sample, records.sample_fields, name, scores=scores,
                     step=step, uri=uri, split=split, item_id=item_id, meta=meta)

    def alert(self, message: str, *, severity: str = "warning", kind: str = "user",
              key: str | None = None, value: Any = None, suggestion: str | None = None,
              step: int | None = None) -> None:
        """Raise an alert (stored with the run; shown by `runlake anomalies`).

        Raises:
            EventValueError: (strict) an unknown severity, or a value that is not a number.
        """
        self._record("alert", Alert, records.alert_fields, message, severity=severity,
                     kind=kind, key=key, value=value, suggestion=suggestion, step=step)

    def _make_alert(self, message: str, *, severity: str, kind: str, key: str | None,
                    value: Any, suggestion: str | None, step: int | None,
                    source: str) -> Alert:
        """An alert event built on the writer thread (online checks: trusted values)."""
        return Alert(*self._envelope(), message=truncate(message), severity=severity,
                     alert=kind, key=None if key is None else truncate(key, 1024), value=value,
                     suggestion=None if suggestion is None else truncate(suggestion),
                     step=step, source=source)
