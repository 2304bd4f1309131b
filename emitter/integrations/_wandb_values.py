"""Runlake values as W&B objects, for :mod:`runlake.emitter.integrations.wandb_mirror`.

Kept apart from the mirror's flow (batches, steps, budget): how a scalar token, a histogram
and a media blob become what ``wandb.log`` takes. Nothing here imports wandb: the mirror
passes its module in, on the writer thread.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from runlake.schemas.codec import NONFINITE_TOKENS

__all__ = ["MAX_BINS", "MediaValues", "number", "rebin"]

MAX_BINS = 512
"""The most bins a ``wandb.Histogram`` takes (``wandb.Histogram.MAX_LENGTH``)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")


def number(value: Any) -> float | None:
    """A metric value as a float (NaN/Inf tokens included), or None when it is not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in NONFINITE_TOKENS:
        return NONFINITE_TOKENS[value]
    return None


def rebin(edges: list[float], counts: list[float]) -> tuple[list[float], list[float]]:
    """At most :data:`MAX_BINS` bins: neighbouring bins summed (the total count is kept)."""
    if len(counts) <= MAX_BINS:
        return edges, counts
    k = -(-len(counts) // MAX_BINS)
    return (edges[::k] + ([edges[-1]] if (len(edges) - 1) % k else []),
            [sum(counts[i:i + k]) for i in range(0, len(counts), k)])


def _safe(part: str) -> str:
    """A key or file name as one harmless path component (no separator, no ``..``)."""
    return _UNSAFE.sub("_", part).lstrip(".") or "_"


class MediaValues:
    """Turn ``media`` events and their blobs into ``wandb.Image``/``Audio``/``Video``/``Table``.

    W&B reads a media file's format from its suffix, and blobs have none: images, audio and
    video are linked (or copied) as ``<sha256><suffix>`` into a temporary folder first
    (W&B copies them into its run folder at ``log``; :meth:`close` removes the folder).
    Text becomes a string value; a ``file`` is copied into the W&B run's folder and saved.
    """

    def __init__(self) -> None:
        self._staging: Path | None = None

    def convert(self, wandb: Any, run: Any, ev: Any, path: Path) -> Any:
        """The value to log for ``ev`` (its blob at ``path``), or None when nothing is logged.

        Raises:
            Exception: whatever wandb or reading the blob raises (the mirror skips the event).
        """
        if ev.media == "text":
            return path.read_text(encoding="utf-8", errors="replace")
        if ev.media == "table":
            table = json.loads(path.read_bytes())
            return wandb.Table(columns=table.get("columns"), data=table.get("data"))
        if ev.media == "file":
            name = _safe(Path(ev.name).name) if ev.name else ev.sha256
            dest = Path(run.dir) / "runlake-files" / _safe(ev.key) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            run.save(str(dest), base_path=run.dir, policy="now")
            return None
        named = self._named(ev, path)
        if ev.media == "image":
            return wandb.Image(str(named), caption=ev.caption)
        if ev.media == "audio":
            return wandb.Audio(str(named), caption=ev.caption)
        return wandb.Video(str(named), caption=ev.caption, format=named.suffix[1:] or None)

    def _named(self, ev: Any, path: Path) -> Path:
        suffix = (Path(ev.name).suffix if ev.name else "") or mimetypes.guess_extension(ev.mime) or ""
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="runlake-wandb-"))
        named = self._staging / (f"{ev.sha256}.{_safe(suffix)}" if suffix else ev.sha256)
        if not named.exists():
            try:
                os.link(path, named)
            except OSError:
                shutil.copyfile(path, named)
        return named

    def close(self) -> None:
        """Remove the staging folder."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
