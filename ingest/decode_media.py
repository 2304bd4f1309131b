"""Rows of the ``histograms``, ``media`` and ``updates`` tables from their events.

Kept apart from :mod:`runlake.ingest.decode` (the metrics fast path) because these kinds
are few and each needs its own checks. The emitter validates what it writes, but segments
also come from importers and from other writers, so the invariants the readers rely on
are checked again here: a histogram's ``len(counts) + 1`` ascending edges, a media event's
``sha256`` that can name a blob. An event that breaks one is not loaded; the caller turns
the returned message into a quarantine row.

``media.blob`` is :func:`runlake.schemas.blobs.blob_relpath` of the run's project (the
first folder of the segment's key, relative to the root) and the event's hash. The blob
itself is not opened here: a blob deleted before ingest still gives its row, and a reader
finds out with :func:`runlake.schemas.blobs.verify_blob` (False: missing or damaged).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from runlake.schemas import events as E
from runlake.schemas.blobs import blob_relpath, is_sha256

__all__ = ["KIND_TABLE", "media_row"]

KIND_TABLE: dict[type, str] = {E.Histogram: "histograms", E.Media: "media",
                               E.RunUpdate: "updates"}
"""The table each of these kinds loads into."""


def _json(value: Any) -> str | None:
    return msgspec.json.encode(value).decode() if value else None


def _histogram_problem(ev: E.Histogram) -> str | None:
    n = len(ev.counts)
    if n == 0 or len(ev.edges) != n + 1:
        return (f"histogram {ev.key!r}: {len(ev.edges)} edges for {n} counts (need "
                f"len(counts) + 1); not loaded")
    edges = ev.edges
    if not all(map(math.isfinite, edges)) or any(b < a for a, b in zip(edges, edges[1:])):
        return f"histogram {ev.key!r}: edges not finite and ascending; not loaded"
    if not all(map(math.isfinite, ev.counts)):
        return f"histogram {ev.key!r}: a count is not finite; not loaded"
    return None


def media_row(ev: Any, run_id: str, ts: int | None, segment: str) -> tuple | str:
    """The row of a histogram, media or update event, or why it cannot be loaded.

    ``segment`` is the segment's key relative to the root (``<project>/<run>/<writer>/...``):
    the project of ``media.blob``.
    """
    cls = ev.__class__
    if cls is E.Histogram:
        problem = _histogram_problem(ev)
        if problem is not None:
            return problem
        return (run_id, ev.rank, ev.step, ev.epoch, ts, ev.key, ev.edges, ev.counts,
                ev.min, ev.max, ev.num, ev.sum, ev.sum_squares)
    if cls is E.Media:
        if not is_sha256(ev.sha256):
            return (f"media {ev.key!r}: sha256 {ev.sha256[:80]!r} is not a blob name (64 "
                    f"lowercase hex digits); not loaded")
        project = segment.partition("/")[0]
        return (run_id, ev.rank, ev.step, ts, ev.key, ev.media, ev.sha256, ev.bytes, ev.mime,
                ev.caption, ev.name, blob_relpath(project, run_id, ev.sha256), _json(ev.meta))
    return (run_id, ev.rank, ev.step, ts, _json(ev.config), _json(ev.summary),
            None if ev.tags is None else list(ev.tags), ev.notes, _json(ev.metrics))
