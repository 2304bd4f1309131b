"""TensorBoard histograms, images and audio, read into runlake's ``histogram`` and ``media`` kinds.

Why it exists: ``runlake import tensorboard`` must keep these summaries, not count and drop
them, and ``runlake export tensorboard`` must give TensorBoard back the same buckets and the
same bytes. This module holds the read side of that mapping (the write side is
:class:`runlake.emitter.integrations.tensorboard.EventFileWriter`); :mod:`tb_read` calls it
for every histogram, image and audio summary it meets.

Histograms:

* the legacy ``HistogramProto`` (torch's ``SummaryWriter``, tensorboardX, TF1) keeps only the
  right limit of each bucket; bucket 0's left edge is ``min`` when that bucket holds values
  (as TensorBoard itself draws it), else its right limit (an empty bucket of no width: torch
  writes one so that the first limit is known). So ``edges = [left] + bucket_limit``,
  ``counts = bucket`` and ``min``/``max``/``num``/``sum``/``sum_squares`` are the proto's:
  exporting writes back ``bucket_limit = edges[1:]`` and every field unchanged;
* the ``histograms`` plugin tensor (TF2, ``tensorboard.summary``) is ``k`` rows of ``[left,
  right, count]``; contiguous rows become ``edges = [left_0, right_0, ..., right_k-1]``, and
  ``num`` is the count total (the other statistics are not in the file: left unset).

Images and audio: each image or clip becomes one ``media`` event whose blob is the encoded
bytes exactly as they are in the file (PNG, JPEG, GIF; WAV), never decoded or re-encoded.
``meta`` holds ``width``/``height``/``channels`` (images: the summary's own fields) or
``sample_rate``/``channels``/``frames``/``duration_s`` (audio: the summary's, or the WAV
header's for the tensor form), and for the plugin tensor form, which holds several images or
clips in one summary, ``index`` and ``count`` (so an export writes them back as one summary).

Bytes are not kept in memory while a logdir is read: a :class:`MediaItem` says where they are
(event file, record offset, value and item index) and :func:`load_media` reads them when the
importer writes the blob.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlake.emitter.encode_media import sniff

__all__ = ["MediaItem", "audio_items", "histogram_from_proto", "histogram_from_tensor",
           "image_items", "load_media"]


@dataclass
class MediaItem:
    """One image or clip found in an event file, with where its bytes are."""

    step: int
    wall: float
    tag: str
    media: str  # "image" | "audio"
    mime: str
    nbytes: int
    source: tuple[Path, int, int, int, int | None]  # file, payload offset, length, value index, item
    caption: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def histogram_from_proto(h) -> tuple[list[float], list[float], dict[str, float]]:
    """``(edges, counts, stats)`` of a legacy ``HistogramProto`` (see the module docstring).

    Raises:
        ValueError: no buckets, limits and counts of different lengths, limits that are not
            finite or not ascending.
    """
    limits, counts = list(h.bucket_limit), list(h.bucket)
    if not limits or len(limits) != len(counts):
        raise ValueError(f"a histogram with {len(limits)} bucket limits and {len(counts)} counts")
    lo = limits[0]
    if counts[0] > 0 and math.isfinite(h.min) and h.min < lo:
        lo = h.min
    edges = [lo, *limits]
    _check_edges(edges)
    stats = {"min": h.min, "max": h.max, "num": h.num, "sum": h.sum, "sum_squares": h.sum_squares}
    return edges, [float(c) for c in counts], stats


def histogram_from_tensor(arr) -> tuple[list[float], list[float], dict[str, float]]:
    """``(edges, counts, stats)`` of a ``histograms`` plugin tensor of ``[left, right, count]`` rows.

    Raises:
        ValueError: not ``k x 3``, no rows, or rows that are not contiguous and ascending.
    """
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"a histogram tensor of shape {list(arr.shape)} (expected k x 3 buckets)")
    lefts, rights, counts = (arr[:, i].astype(float).tolist() for i in range(3))
    if any(r != nxt for r, nxt in zip(rights, lefts[1:])):
        raise ValueError("histogram buckets that are not contiguous")
    edges = [lefts[0], *rights]
    _check_edges(edges)
    return edges, counts, {"num": float(sum(counts))}


def _check_edges(edges: list[float]) -> None:
    if not all(math.isfinite(e) for e in edges):
        raise ValueError("histogram bucket limits that are not finite")
    if any(b < a for a, b in zip(edges, edges[1:])):
        raise ValueError("histogram bucket limits that are not ascending")


def _image_mime(data: bytes) -> str:
    return sniff(data) or "application/octet-stream"


def image_items(step: int, wall: float, tag: str, where: tuple, value, arr=None) -> list[MediaItem]:
    """The images of one summary value: a legacy ``Summary.Image`` or an ``images`` tensor
    (``[width, height, image, ...]``, ``arr`` already decoded). ``where``: (file, offset,
    length, value index)."""
    if arr is None:
        im = value.image
        meta = {"width": im.width, "height": im.height}
        if im.colorspace:
            meta["channels"] = im.colorspace
        data = im.encoded_image_string
        return [MediaItem(step, wall, tag, "image", _image_mime(data), len(data), (*where, None),
                          meta=meta)]
    flat = arr.reshape(-1)
    if len(flat) < 2:
        raise ValueError(f"an image tensor of {len(flat)} strings (expected width, height, images...)")
    width, height = int(_text(flat[0]) or 0), int(_text(flat[1]) or 0)
    n = len(flat) - 2
    return [MediaItem(step, wall, tag, "image", _image_mime(flat[2 + i]), len(flat[2 + i]),
                      (*where, i), meta={"width": width, "height": height, "index": i, "count": n})
            for i in range(n)]


def audio_items(step: int, wall: float, tag: str, where: tuple, value, arr=None) -> list[MediaItem]:
    """The clips of one summary value: a legacy ``Summary.Audio`` or an ``audio`` tensor
    (``k`` rows of ``[encoded, label]``, or ``k`` encoded clips)."""
    if arr is None:
        a = value.audio
        meta = {"sample_rate": _number(a.sample_rate), "channels": a.num_channels, "frames": a.length_frames}
        if a.sample_rate > 0:
            meta["duration_s"] = a.length_frames / a.sample_rate
        data = a.encoded_audio_string
        return [MediaItem(step, wall, tag, "audio", a.content_type or "audio/wav", len(data), (*where, None),
                          meta=meta)]
    if arr.ndim == 2 and arr.shape[1] >= 1:
        clips, labels = arr[:, 0], [_text(x) for x in arr[:, 1]] if arr.shape[1] > 1 else []
    else:
        clips, labels = arr.reshape(-1), []
    out = []
    for i, data in enumerate(clips):
        meta = {**_wav_meta(data), "index": i, "count": len(clips)}
        caption = labels[i] if i < len(labels) and labels[i] else None
        out.append(MediaItem(step, wall, tag, "audio", "audio/wav", len(data), (*where, i), caption, meta))
    return out


def _wav_meta(data: bytes) -> dict[str, Any]:
    """Sample rate, channels, frames and duration from a WAV header; {} when it is not one."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, channels, frames = w.getframerate(), w.getnchannels(), w.getnframes()
    except (wave.Error, EOFError, ValueError):
        return {}
    meta = {"sample_rate": rate, "channels": channels, "frames": frames}
    if rate > 0:
        meta["duration_s"] = frames / rate
    return meta


def load_media(item: MediaItem, cache: dict | None = None) -> bytes:
    """The encoded bytes of ``item``, read again from its event file.

    ``cache`` (a dict kept by the caller) holds the last parsed record, so the images of one
    tensor summary parse it once. Raises OSError when the file cannot be read, ValueError
    when the record is no longer the one read before.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util.tensor_util import make_ndarray

    path, offset, length, index, item_no = item.source
    key = (path, offset)
    cache = {} if cache is None else cache
    if key not in cache:
        with open(path, "rb") as f:
            f.seek(offset)
            payload = f.read(length)
        value = event_pb2.Event.FromString(payload).summary.value[index]
        cache.clear()
        cache[key] = (value, None if item_no is None else make_ndarray(value.tensor))
    value, arr = cache[key]
    if item_no is None:
        data = value.image.encoded_image_string if item.media == "image" else value.audio.encoded_audio_string
    elif item.media == "image":
        data = arr.reshape(-1)[2 + item_no]
    else:
        data = arr[item_no, 0] if arr.ndim == 2 else arr.reshape(-1)[item_no]
    if len(data) != item.nbytes:
        raise ValueError(f"{path}: the record at byte {offset} changed since it was read")
    return bytes(data)


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _number(v: float) -> int | float:
    return int(v) if math.isfinite(v) and v.is_integer() else v
