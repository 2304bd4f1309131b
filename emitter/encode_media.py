"""Turning what users pass to ``Run.log_media`` into one blob's bytes, its type and its facts.

No imaging or audio library is needed: images are encoded here as PNG (zlib, filter 0 on
every row: simple and exact; 8-bit gray, gray+alpha, RGB, RGBA), audio as 16-bit PCM WAV
with the standard library's :mod:`wave`. numpy is used when the data is an array (it is
then importable); a ``PIL.Image`` is saved by Pillow itself. Bytes are sniffed for the
common formats when no ``mime`` is given, so the reader always has a type.

Every function raises :class:`EventValueError` with a message saying what was expected and
what to pass instead; the caller (:mod:`runlake.emitter.media`) turns it into a raise
(strict) or a counted drop. Sizes are checked against the cap before a file is read or an
encoded image is kept (:func:`runlake.schemas.blobs.media_max_bytes`).
"""

from __future__ import annotations

import io
import mimetypes
import os
import stat
import struct
import wave
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runlake.emitter.values import describe, is_pil_image, is_tensor, safe_repr
from runlake.schemas.errors import EventValueError

__all__ = [
    "Encoded",
    "TooBig",
    "encode_audio",
    "encode_bytes",
    "encode_image",
    "encode_path",
    "encode_table",
    "encode_text",
    "is_array",
    "png_bytes",
    "sniff",
    "wav_bytes",
]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+A, RGB, RGBA)
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (_PNG_SIG, 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"WAVE", 8, "audio/wav"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"ID3", 0, "audio/mpeg"),
    (b"ftyp", 4, "video/mp4"),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),
)
_SUFFIX_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".webm": "video/webm",
                ".npy": "application/octet-stream", ".jsonl": "application/x-ndjson"}
OCTET = "application/octet-stream"


class TooBig(EventValueError):
    """The blob would exceed the size cap (counted as ``media_too_big``)."""


@dataclass(slots=True)
class Encoded:
    """One blob to write and what the ``media`` event says about it."""

    data: bytes
    media: str
    mime: str
    meta: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


def _check_size(n: int, cap: int, what: str) -> None:
    if n > cap:
        raise TooBig(f"{what} is {n:,} bytes, over the media cap of {cap:,} bytes; log a "
                     f"smaller one or raise RUNLAKE_MEDIA_MAX_BYTES")


def sniff(data: bytes) -> str | None:
    """The mime type of ``data`` judged by its first bytes, or None when not recognised."""
    for magic, at, mime in _MAGIC:
        if data[at:at + len(magic)] == magic:
            if mime == "image/webp" and data[:4] != b"RIFF":
                continue
            if mime == "audio/wav" and data[:4] != b"RIFF":
                continue
            return mime
    return None


def _media_of(mime: str) -> str:
    top = mime.partition("/")[0]
    if top in ("image", "audio", "video", "text"):
        return top
    return "file"


def _facts(data: bytes, mime: str) -> dict[str, Any]:
    """Width/height of a PNG, rate/channels/duration of a WAV (cheap header reads)."""
    if mime == "image/png" and len(data) >= 26 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25])
        return {"width": w, "height": h, "channels": channels}
    if mime == "audio/wav":
        try:
            with wave.open(io.BytesIO(data)) as w:
                rate, frames = w.getframerate(), w.getnframes()
                return {"sample_rate": rate, "channels": w.getnchannels(),
                        "duration_s": frames / rate if rate else None}
        except (wave.Error, EOFError, struct.error):
            return {}
    return {}


def encode_bytes(data: bytes | bytearray | memoryview, *, media: str | None, mime: str | None,
                 cap: int) -> Encoded:
    """Raw bytes: ``mime`` as given, else sniffed, else ``application/octet-stream``."""
    data = bytes(data)
    _check_size(len(data), cap, "the data")
    mime = mime or sniff(data) or OCTET
    return Encoded(data, media or _media_of(mime), mime, _facts(data, mime))


def encode_path(path: str | os.PathLike, *, media: str | None, mime: str | None,
                cap: int) -> Encoded:
    """A regular file's bytes (a symbolic link is followed: its target's content is copied
    into the blob, so the run never depends on the link; reading is the user's own process
    reading what it may read, so no folder is off limits).

    Raises:
        TooBig: the file is over the cap (checked before reading it).
        EventValueError: missing, a directory, or unreadable (the message names the path).
    """
    try:
        text = os.fspath(path)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        info = os.stat(text)  # follows a link: its target is what gets copied
        if stat.S_ISDIR(info.st_mode):
            raise EventValueError(f"{text!r} is a directory; log its files one by one")
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
            raise EventValueError(f"{text!r} is not a regular file (a pipe, socket or "
                                  f"device); copy its content to a file or pass the bytes")
        _check_size(info.st_size, cap, f"file {text!r}")
        with open(text, "rb") as f:
            data = f.read(cap + 1)
    except EventValueError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        hint = " (to log text, pass media='text')" if isinstance(path, str) else ""
        raise EventValueError(f"cannot read the file {safe_repr(path, 200)}: {reason}{hint}"
                              ) from None
    _check_size(len(data), cap, f"file {text!r}")  # it grew since the stat
    suffix = os.path.splitext(text)[1].lower()
    mime = (mime or _SUFFIX_MIME.get(suffix) or mimetypes.guess_type(text, strict=False)[0]
            or sniff(data) or OCTET)
    return Encoded(data, media or _media_of(mime), mime, _facts(data, mime),
                   os.path.basename(text))


def encode_text(text: str, *, cap: int) -> Encoded:
    """A string as UTF-8 text (markup is stored as text: nothing interprets it)."""
    data = text.encode("utf-8", "surrogatepass")
    _check_size(len(data), cap, "the text")
    return Encoded(data, "text", "text/plain", {"chars": len(text)})


def encode_table(table: Any, *, cap: int) -> Encoded:
    """``{"columns": [...], "data": [[...], ...]}`` as a JSON blob (``application/json``)."""
    from runlake.emitter.jsonable import jsonable

    if not hasattr(table, "get") or "columns" not in table or "data" not in table:
        raise EventValueError(f"a table is a dict {{'columns': [...], 'data': [[...]]}}, got "
                              f"{describe(table)}")
    columns = [str(c) for c in table["columns"]]
    rows = table["data"]
    if not isinstance(rows, (list, tuple)) and not hasattr(rows, "tolist"):
        raise EventValueError(f"table data must be a list of rows, got {describe(rows)}")
    rows = rows.tolist() if hasattr(rows, "tolist") else list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(columns):
            raise EventValueError(f"table row {i} has {len(row) if hasattr(row, '__len__') else '?'}"
                                  f" cells for {len(columns)} columns; give one per column")
    body = jsonable({"columns": columns, "data": rows}, strict=True, what="table")
    data = msgspec.json.encode(body)
    _check_size(len(data), cap, "the table")
    return Encoded(data, "table", "application/json", {"columns": columns, "rows": len(rows)})


def _numpy():
    try:
        import numpy
    except ImportError:  # an array without numpy: a torch build without it
        raise EventValueError("arrays and tensors need numpy to be encoded; pip install numpy "
                              "or pass the encoded bytes with mime=") from None
    return numpy


def _as_array(data: Any):
    """A numpy array from a numpy array or a torch (or other) tensor, on the CPU."""
    np = _numpy()
    if hasattr(data, "detach"):  # torch: leave the graph, the device and bfloat16 behind
        data = data.detach()
        if hasattr(data, "cpu"):
            data = data.cpu()
        if str(getattr(data, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            data = data.float()
        data = data.numpy()
    try:
        return np.asarray(data)
    except Exception as exc:
        raise EventValueError(f"cannot read {describe(data)} as an array "
                              f"({type(exc).__name__})") from None


def _to_uint8(arr, what: str):
    np = _numpy()
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if kind == "u" and arr.dtype.itemsize == 1:
        return arr
    if kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise EventValueError(f"{what}: integer pixels must be in 0..255, got "
                                  f"{arr.min()}..{arr.max()}; scale to uint8")
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise EventValueError(f"{what}: the image holds NaN or Inf")
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            raise EventValueError(f"{what}: float pixels must be in [0, 1], got "
                                  f"{float(arr.min()):g}..{float(arr.max()):g}; scale it "
                                  f"(x / 255) or pass uint8")
        return np.rint(arr * 255.0).astype(np.uint8)
    raise EventValueError(f"{what}: pixels must be uint8, bool, int or float, got {arr.dtype}")


def png_bytes(pixels) -> bytes:
    """PNG of an (H, W, C) uint8 array, C in 1..4 (gray, gray+alpha, RGB, RGBA)."""
    np = _numpy()
    h, w, c = pixels.shape
    raw = np.zeros((h, w * c + 1), dtype=np.uint8)  # filter byte 0 (None) on every row
    raw[:, 1:] = pixels.reshape(h, w * c)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    return (_PNG_SIG + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))


def encode_image(data: Any, *, cap: int) -> Encoded:
    """An image array or tensor (HW, HWC, CHW; uint8, bool, or float in [0, 1]) as PNG.

    CHW is recognised when the first dimension is 1, 3 or 4 and the last is not.
    """
    if is_pil_image(data):
        buf = io.BytesIO()
        data.save(buf, format="PNG")
        out = buf.getvalue()
        _check_size(len(out), cap, "the image")
        return Encoded(out, "image", "image/png", _facts(out, "image/png"))
    arr = _as_array(data)
    shape = tuple(arr.shape)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3 and shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPE or 0 in arr.shape:
        raise EventValueError(f"an image is (H, W), (H, W, C) or (C, H, W) with C 1-4, got "
                              f"shape {shape}; log a batch one image at a time")
    pixels = _numpy().ascontiguousarray(_to_uint8(arr, "image"))
    out = png_bytes(pixels)
    _check_size(len(out), cap, f"the PNG of a {shape} image")
    h, w, c = pixels.shape
    return Encoded(out, "image", "image/png", {"width": w, "height": h, "channels": c})


def wav_bytes(samples, sample_rate: int) -> bytes:
    """16-bit PCM WAV of an (n, channels) int16 array."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def encode_audio(data: Any, *, sample_rate: Any, cap: int) -> tuple[Encoded, bool]:
    """Audio samples ((n,) or (n, channels); float in [-1, 1] or int16) as 16-bit WAV.

    Returns the blob and whether float samples outside [-1, 1] were clipped.
    """
    np = _numpy()
    if sample_rate is None or isinstance(sample_rate, bool):
        raise EventValueError("audio needs sample_rate= (samples per second, e.g. 16000)")
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        raise EventValueError(f"sample_rate must be an int, got {safe_repr(sample_rate)}") from None
    if not 0 < rate <= 2**31 - 1:
        raise EventValueError(f"sample_rate must be a positive int, got {rate}")
    arr = _as_array(data)
    shape = tuple(arr.shape)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or not 1 <= arr.shape[1] <= 64:
        raise EventValueError(f"audio is (samples,) or (samples, channels) with 1-64 channels, "
                              f"got shape {shape}")
    clipped = False
    kind = arr.dtype.kind
    if kind == "f":
        if not np.isfinite(arr).all():
            raise EventValueError("audio samples hold NaN or Inf")
        clipped = bool((np.abs(arr) > 1.0).any())
        pcm = np.rint(np.clip(arr, -1.0, 1.0) * 32767.0).astype(np.int16)
    elif arr.dtype == np.int16:
        pcm = arr
    else:
        raise EventValueError(f"audio samples must be float in [-1, 1] or int16, got {arr.dtype}")
    _check_size(pcm.size * 2 + 44, cap, "the WAV")
    out = wav_bytes(pcm, rate)
    n, ch = pcm.shape
    return Encoded(out, "audio", "audio/wav",
                   {"sample_rate": rate, "channels": ch, "duration_s": n / rate}), clipped


def is_array(data: Any) -> bool:
    """An array or tensor (numpy, torch ...) or a PIL image: encoded, not stored as is."""
    return is_tensor(data) or is_pil_image(data)
