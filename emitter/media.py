"""The ``Run`` methods for histograms, media and run updates, and the rules for their arguments.

A base class of :class:`runlake.emitter.other_kinds.OtherKinds` (so of ``Run``), apart from
it because these kinds carry arrays and files (histogram arguments: :mod:`histograms`;
encoders: :mod:`encode_media`). The rules are :mod:`records`'s: with
``strict=True`` a bad argument raises :class:`EventValueError` naming it; with
``strict=False`` only that argument is dropped (optional ones) or the event (one that
cannot be built: no finite value, unreadable data), each a warning per cause and a count in
``run.dropped``. Keys pass the metric key check (1-256 characters, any text: markup in a
key or a caption is stored as text, nothing here or in the store interprets it).

Blobs. ``log_media`` encodes the data (:mod:`encode_media`) and writes the blob into the
run folder (:func:`runlake.schemas.blobs.write_blob`, atomic and idempotent) on the calling
thread *before* the event is appended to the buffer, so a segment frame never names a blob
that is not on disk. A disk error writing the blob drops the event (``media_io_error``) in
both modes: an I/O failure never crashes training.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from runlake.emitter import encode_media as enc
from runlake.emitter.jsonable import jsonable
from runlake.emitter.histograms import HISTOGRAM_STATS, histogram_fields, key_arg
from runlake.emitter.records import bad, step_or
from runlake.emitter.values import MAX_TEXT_CHARS, describe, safe_repr, safe_str, truncate
from runlake.schemas.blobs import media_max_bytes, write_blob
from runlake.schemas.errors import ConfigError, EventValueError
from runlake.schemas.events import MEDIA_TYPES, Histogram, Media, RunUpdate

__all__ = [
    "HISTOGRAM_STATS",  # re-exported from runlake.emitter.histograms (its home)
    "METRIC_FIELDS",
    "MediaKinds",
    "media_fields",
    "update_fields",
]

METRIC_FIELDS = ("step_metric", "summary", "goal", "hidden", "step_sync")
"""What ``run.update(metrics={name: {...}})`` may declare per metric (W&B's define_metric)."""
_SUMMARIES = ("min", "max", "mean", "first", "last", "best", "none", "copy")
_GOALS = ("minimize", "maximize")


def _jsonable(run, value: Any, what: str) -> Any:
    """:func:`jsonable`, its strict-mode ``ConfigError`` an ``EventValueError`` (a bad value
    given to a logging call, like every other here)."""
    try:
        return jsonable(value, strict=run.strict, what=what, on_fix=run._drop)
    except ConfigError as exc:
        raise EventValueError(str(exc)) from None


def _encode(run, data: Any, media: str | None, mime: str | None, sample_rate: Any,
            cap: int) -> enc.Encoded:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return enc.encode_bytes(data, media=media, mime=mime, cap=cap)
    if isinstance(data, str) and media == "text":
        return enc.encode_text(data, cap=cap)
    if isinstance(data, (str, os.PathLike)):
        return enc.encode_path(data, media=media, mime=mime, cap=cap)
    if media == "table" or (media is None and isinstance(data, Mapping)):
        return enc.encode_table(data, cap=cap)
    if enc.is_array(data) or hasattr(data, "__array__"):
        if media == "audio" or sample_rate is not None:
            out, clipped = enc.encode_audio(data, sample_rate=sample_rate, cap=cap)
            if clipped:
                run._warn("audio_clipped", "log_media: audio samples outside [-1, 1] were "
                          "clipped (scale them to keep the peaks)")
            return out
        if media not in (None, "image"):
            raise EventValueError(f"an array is logged as an image or (with sample_rate=) "
                                  f"audio, not as media={media!r}; pass encoded bytes instead")
        return enc.encode_image(data, cap=cap)
    raise EventValueError(
        f"cannot log {describe(data)} as media; pass bytes (+ mime=), a file path, an image "
        f"array/tensor, audio samples with sample_rate=, a table dict or text with media='text'")


def media_fields(run, key: Any, data: Any, *, media, step, caption, mime, name, meta,
                 sample_rate) -> dict[str, Any] | None:
    """The fields of the ``media`` event for :meth:`MediaKinds.log_media`; writes the blob.

    None when the event was dropped and counted (too big, the blob not written).
    """
    key = key_arg(key, "media")
    if media is not None and media not in MEDIA_TYPES:
        raise EventValueError(f"media must be one of {', '.join(MEDIA_TYPES)}, got "
                              f"{safe_repr(media)}")
    if mime is not None and (not isinstance(mime, str) or "/" not in mime or len(mime) > 255):
        mime = bad(run, "bad_value", f"log_media({key!r}): mime must be a type like 'image/png'"
                   f", got {safe_repr(mime)}; guessed instead")
    cap = media_max_bytes()
    try:
        blob = _encode(run, data, media, mime, sample_rate, cap)
    except enc.TooBig as exc:
        return bad(run, "media_too_big", f"log_media({key!r}): {exc}; the event was dropped")
    extra = {} if meta is None else _jsonable(run, meta, "meta")
    if not isinstance(extra, dict):
        extra = bad(run, "bad_value", f"meta must be a mapping, got {describe(meta)}", {})
    fields = dict(key=key, media=blob.media, bytes=len(blob.data), mime=blob.mime,
                  step=step_or(run, step, run._default_step()),
                  caption=None if caption is None else truncate(safe_str(caption)),
                  name=truncate(safe_str(name), 1024) if name is not None else blob.name,
                  meta={**blob.meta, **extra})
    try:  # last: nothing after it can refuse the event, so no blob is written for nothing
        fields["sha256"] = write_blob(run.dir, blob.data)
    except OSError as exc:
        run._drop("media_io_error", f"log_media({key!r}): cannot write the blob under "
                  f"{run.dir}: {exc.strerror or exc}; the event was dropped")
        return None
    return fields


def _metric_spec(run, name: str, spec: Any) -> dict[str, Any] | None:
    if not isinstance(spec, Mapping):
        return bad(run, "bad_value", f"metrics[{name!r}] must be a dict of "
                   f"{', '.join(METRIC_FIELDS)}, got {describe(spec)}; left out")
    out: dict[str, Any] = {}
    for field, value in spec.items():
        if value is None:
            continue
        if field == "step_metric" and isinstance(value, str):
            out[field] = key_arg(value, "step_metric")
        elif field == "summary" and isinstance(value, str) and value and all(
                part.strip() in _SUMMARIES for part in value.split(",")):
            out[field] = value
        elif field == "goal" and value in _GOALS:
            out[field] = value
        elif field in ("hidden", "step_sync") and isinstance(value, bool):
            out[field] = value
        else:
            allowed = {"summary": f"one or more of {', '.join(_SUMMARIES)} (comma-separated)",
                       "goal": " or ".join(_GOALS), "step_metric": "a metric name",
                       "hidden": "a bool", "step_sync": "a bool"}.get(field)
            bad(run, "bad_value", f"metrics[{name!r}]: {safe_repr(field)} "
                + (f"must be {allowed}, got {safe_repr(value)}" if allowed else
                   f"is not a metric field ({', '.join(METRIC_FIELDS)})") + "; left out")
    return out


def _tags(run, tags: Any) -> list[str] | None:
    if isinstance(tags, str):
        return [truncate(tags, 256)]
    try:
        return [truncate(safe_str(t), 256) for t in tags]
    except Exception as exc:
        return bad(run, "bad_value", f"tags must be a list of str, got {describe(tags)} "
                   f"({type(exc).__name__}); left out")


def update_fields(run, *, config, summary, tags, notes, metrics, step) -> dict[str, Any]:
    """The fields of the ``update`` event for :meth:`MediaKinds.update` (empty: nothing to do)."""
    out: dict[str, Any] = {}
    for what, value in (("config", config), ("summary", summary)):
        if value is None:
            continue
        got = _jsonable(run, value, what)
        if isinstance(got, dict):
            if got:
                out[what] = got
        else:
            bad(run, "bad_value", f"update({what}=) must be a mapping, got {describe(value)}; "
                f"left out")
    if tags is not None:
        got = _tags(run, tags)
        if got is not None:
            out["tags"] = got
    if notes is not None:
        out["notes"] = truncate(safe_str(notes), MAX_TEXT_CHARS)
    if metrics is not None:
        if not isinstance(metrics, Mapping):
            bad(run, "bad_value", f"update(metrics=) must be a dict of name or glob -> "
                f"definition, got {describe(metrics)}; left out")
        else:
            defs = {}
            for name, spec in metrics.items():
                try:
                    name = key_arg(name, "metrics")
                except EventValueError as exc:
                    bad(run, "bad_key", f"{exc}; left out")
                    continue
                got = _metric_spec(run, name, spec)
                if got is not None:
                    defs[name] = got
            if defs:
                out["metrics"] = defs
    if out:
        out["step"] = step_or(run, step, run._default_step())
    return out


class MediaKinds:
    """``log_histogram``, ``log_media`` and ``update`` (see the module docstring)."""

    def log_histogram(self, key: str, values: Any = None, *, edges: Iterable[float] | None = None,
                      counts: Iterable[float] | None = None, bins: int = 64,
                      step: int | None = None, epoch: int | None = None,
                      stats: Mapping[str, float] | None = None) -> None:
        """Record the distribution of ``values`` (or given bucket ``edges``/``counts``) at a step.

        Args:
            key: the histogram's name (the metric key rules; ``grad/<param>`` by convention).
            values: a list, numpy array or torch tensor of any shape (flattened); NaN/Inf are
                left out and counted (``nonfinite_histogram``); ``bins`` equal-width buckets
                between the smallest and largest value, with exact min/max/num/sum/sum_squares.
            edges, counts: the buckets themselves (``len(counts) + 1`` ascending, finite
                edges; counts >= 0, may be fractional), instead of ``values``.
            stats: min/max/num/sum/sum_squares when the caller knows them (override).
            step: default the current step (``run.step``), like ``log_sample``.

        Raises:
            EventValueError: (strict) both or neither of values and edges/counts, mismatched
                or descending edges, no finite value, a bad key/step/stat.
        """
        self._record("log_histogram", Histogram, histogram_fields, key, values, edges=edges,
                     counts=counts, bins=bins, step=step, epoch=epoch, stats=stats)

    def log_media(self, key: str, data: Any, *, media: str | None = None,
                  step: int | None = None, caption: str | None = None, mime: str | None = None,
                  name: str | None = None, meta: Mapping[str, Any] | None = None,
                  sample_rate: int | None = None) -> str | None:
        """Store ``data`` as a blob beside the run's segments and record it under ``key``.

        Args:
            data: bytes (type from ``mime``, else sniffed, else application/octet-stream),
                a file path (copied; type from the suffix), an image array/tensor (HW, HWC,
                CHW; uint8, bool or float in [0, 1]) or ``PIL.Image`` -> PNG, audio samples
                ((n,) or (n, channels), float in [-1, 1] or int16) with ``sample_rate`` ->
                WAV, a table ``{"columns": [...], "data": [[...]]}`` -> JSON, or text with
                ``media="text"``.
            media: one of image/audio/video/table/text/file (default: from the data).
            meta: extra facts (``scores`` of a generated sample...), merged over the
                encoder's (width/height, sample_rate/duration_s, columns/rows).
            step: default the current step (``run.step``).

        Returns:
            The blob's SHA-256 (hex), or None when the event was dropped (``strict=False``).

        Raises:
            EventValueError: (strict) data that cannot be encoded, an unreadable path, a blob
                over ``RUNLAKE_MEDIA_MAX_BYTES`` (default 256 MiB), a bad key or argument.
        """
        fields = self._record("log_media", Media, media_fields, key, data, media=media,
                              step=step, caption=caption, mime=mime, name=name, meta=meta,
                              sample_rate=sample_rate)
        return None if fields is None else fields["sha256"]

    def update(self, *, config: Mapping[str, Any] | None = None,
               summary: Mapping[str, Any] | None = None, tags: Iterable[str] | None = None,
               notes: str | None = None, metrics: Mapping[str, Mapping[str, Any]] | None = None,
               step: int | None = None) -> None:
        """Change the run after its start: config and summary keys merged (a later update wins
        key by key; ``finish(summary=)`` last), tags and notes replaced, metric definitions
        (``{"val/*": {"step_metric": "epoch", "summary": "max", "goal": "maximize"}}``).

        Nothing given (or everything dropped): no event.

        Raises:
            EventValueError: (strict) a value that is not JSON-able, a bad metric definition.
        """
        self._record("update", RunUpdate, update_fields, config=config, summary=summary,
                     tags=tags, notes=notes, metrics=metrics, step=step)
