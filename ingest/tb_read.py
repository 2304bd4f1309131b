"""Reading one TensorBoard folder: every record of its event files, mapped to runlake's kinds.

Why it exists: ``runlake import tensorboard`` must take any logdir people have, written by
torch's ``SummaryWriter``, tensorboardX, TensorFlow or tensorboard's own writers, and say
exactly what it did with each summary. TensorBoard's ``EventAccumulator`` is the wrong tool
for that: it raises on a plugin the folder does not have, samples, and swallows a torn or
corrupt record without a word. So this module reads the TFRecord framing itself (with the
same masked CRC-32C tensorboard's own reader and writer use), reports a torn or corrupt
record with the file and byte offset, skips just that record when its length is intact
(resynchronising on the next valid record otherwise), and decodes the protobufs with
tensorboard's generated classes.

What each summary becomes (``Folder``; docs/torch.md shows the same table):

* scalars (legacy ``simple_value`` and tensor scalars of the ``scalars`` plugin) -> points;
* histograms (legacy ``histo`` proto and the ``histograms`` plugin tensor) -> histogram
  events with the file's buckets and statistics (:mod:`runlake.ingest.tb_media`);
* images, audio (legacy summaries and plugin tensors) -> media events, one per image or
  clip, whose blob is the file's encoded bytes unchanged (:mod:`runlake.ingest.tb_media`);
* text -> log lines (logger = tag), ``LogMessage`` events -> log lines at their level;
* hparams ``session_start_info`` -> config; the ``experiment`` definition is noted only;
* PR curves -> samples (name = tag, no scores) whose meta holds the six curves;
* graphs, run metadata, meshes, custom-scalar layouts, projector embeddings and unknown
  plugins -> counted in ``skipped`` with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlake.ingest.tb_media import MediaItem, audio_items, histogram_from_proto, histogram_from_tensor, image_items
from runlake.schemas.events import Int64

__all__ = ["Folder", "Skip", "is_event_file", "read_folder"]

_HEADER = struct.Struct("<QI")
_NONZERO = re.compile(rb"[^\x00]")
_MAX_WALL = Int64.__metadata__[0].le / 1e9 - 1  # seconds: ts is written as int64 nanoseconds
_DAMAGE_SHOWN = 5  # damaged records described one by one per file; the rest are counted
_RESYNC_SPAN = 16 << 20  # bytes searched for the next intact record after a corrupt header
_LOG_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
_SKIP_WHY = {
    "graph": "model graph: runlake has no graph kind",
    "run metadata": "profiling run metadata: runlake has no profile kind",
    "mesh": "3-D mesh: runlake has no mesh kind",
    "custom_scalars": "dashboard layout only, no data",
    "embeddings": "projector embeddings are files next to the events, not event data",
}


def is_event_file(name: str) -> bool:
    """TensorBoard's own rule (``IsTensorFlowEventsFile``): the name contains ``tfevents``."""
    return "tfevents" in name


@dataclass
class Skip:
    """Summaries of one kind that were not imported, with the reason."""

    count: int
    why: str
    tags: set[str] = field(default_factory=set)

    def describe(self, kind: str) -> str:
        tags = ", ".join(sorted(self.tags)[:5]) + (", ..." if len(self.tags) > 5 else "")
        return f"{kind}: {self.count}{f' ({tags})' if tags else ''}: {self.why}"


@dataclass
class Folder:
    """Everything read from the event files of one directory (not its subdirectories)."""

    path: Path
    points: list[tuple[int, float, str, float]] = field(default_factory=list)
    texts: list[tuple[int, float, str, str, str]] = field(default_factory=list)  # step, wall, logger, level, text
    samples: list[tuple[int, float, str, str, dict]] = field(default_factory=list)  # step, wall, name, uri, meta
    histograms: list[tuple[int, float, str, list, list, dict]] = field(default_factory=list)  # step, wall,
    # tag, edges, counts, stats
    media: list[MediaItem] = field(default_factory=list)  # images and clips; bytes read when written
    hparams: dict[str, Any] = field(default_factory=dict)
    sessions: int = 0  # hparams session_start_info summaries
    experiment: bool = False  # an hparams experiment definition is present
    imported: Counter = field(default_factory=Counter)  # kind -> summaries turned into events
    skipped: dict[str, Skip] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # torn or corrupt records, unreadable files
    notes: list[str] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)  # first and last wall time seen

    def has_data(self) -> bool:
        return bool(self.points or self.texts or self.samples or self.hparams or self.histograms or self.media)

    def scalar_tags(self) -> set[str]:
        return {p[2] for p in self.points}

    def skip(self, kind: str, tag: str | None = None, why: str | None = None, n: int = 1) -> None:
        s = self.skipped.setdefault(kind, Skip(0, why or _SKIP_WHY.get(kind, f"plugin {kind!r}: no runlake mapping")))
        s.count += n
        if tag:
            s.tags.add(tag)


def read_folder(path: Path) -> Folder:
    """Read every event file directly in ``path`` (sorted by name, as TensorBoard does)."""
    folder = Folder(path)
    plugins: dict[str, str] = {}  # tag -> plugin name (metadata is written with a tag's first value)
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        folder.problems.append(f"{path}: cannot list ({exc.strerror or exc}), skipped")
        names = []
    for name in names:
        if is_event_file(name):
            _read_file(folder, path / name, plugins)
    projector = path / "projector_config.pbtxt"
    if projector.is_file():
        try:
            n = projector.read_text(errors="replace").count("embeddings")
        except OSError as exc:
            folder.problems.append(f"{projector}: cannot read ({exc.strerror or exc})")
        else:
            folder.skip("embeddings", n=max(n, 1))
    return folder


def _records(path: Path, problems: list[str]):
    """Yield ``(offset, payload)`` of every intact record of a TFRecord file; report the rest."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{path}: not a regular file, skipped")
            return
        if st.st_size == 0:
            return
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc}), skipped")
        return
    with data:
        size, pos, good = len(data), 0, 0
        while pos < size:
            if size - pos < 12:
                problems.append(f"{path}: torn record at byte {pos} of {size} (file cut short while "
                                f"written?); the {good} records before it were read")
                return
            length, crc = _HEADER.unpack_from(data, pos)
            if masked_crc32c(data[pos : pos + 8]) != crc:
                nxt = _resync(data, pos + 1, masked_crc32c)
                end = (f"bytes {pos}-{nxt - 1} skipped, read on from the next intact record" if nxt is not None
                       else f"no intact record after it, the remaining {size - pos} bytes skipped")
                problems.append(f"{path}: corrupt record header at byte {pos} of {size}; {end}")
                if nxt is None:
                    return
                pos = nxt
                continue
            end = pos + 12 + length
            if end + 4 > size:
                problems.append(f"{path}: torn record at byte {pos} of {size} (file cut short while "
                                f"written?); the {good} records before it were read")
                return
            payload = data[pos + 12 : end]
            (crc,) = struct.unpack_from("<I", data, end)
            pos = end + 4
            if masked_crc32c(payload) != crc:
                problems.append(f"{path}: corrupt record at byte {end - length - 12} (data checksum "
                                f"mismatch), that record skipped")
                continue
            good += 1
            yield end - length, payload


def _resync(data, start: int, crc) -> int | None:
    """The offset of the next record whose header and payload checksums both hold.

    Scans at most ``_RESYNC_SPAN`` bytes; a header is checksummed only when its length fits
    in the file, and runs of zero bytes (a crash can leave a zero-filled tail) are jumped.
    """
    size = len(data)
    stop = min(size - 16, start + _RESYNC_SPAN)
    pos = start
    while pos <= stop:
        length, want = _HEADER.unpack_from(data, pos)
        if length == 0 and want == 0:
            m = _NONZERO.search(data, pos)
            if m is None:
                return None
            pos = max(m.start() - 11, pos + 1)
            continue
        if pos + 16 + length <= size and crc(data[pos : pos + 8]) == want:
            (tail,) = struct.unpack_from("<I", data, pos + 12 + length)
            if crc(data[pos + 12 : pos + 12 + length]) == tail:
                return pos
        pos += 1
    return None


def _read_file(folder: Folder, path: Path, plugins: dict[str, str]) -> None:
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    damage: list[str] = []
    bad_walls = 0
    for offset, payload in _records(path, damage):
        try:
            event = event_pb2.Event.FromString(payload)
        except DecodeError:
            damage.append(f"{path}: a record that is not a TensorBoard event, skipped")
            continue
        wall = event.wall_time
        if not (math.isfinite(wall) and abs(wall) <= _MAX_WALL):
            bad_walls += 1
            wall = folder.walls[-1] if folder.walls else 0.0
        folder.walls.append(wall)
        what = event.WhichOneof("what")
        if what == "summary":
            for index, value in enumerate(event.summary.value):
                try:
                    _value(folder, (path, offset, len(payload), index), event.step, wall, value, plugins)
                except (ValueError, TypeError, IndexError, DecodeError) as exc:
                    folder.problems.append(f"{path}: summary {value.tag!r} at step {event.step} is "
                                           f"malformed ({exc}), skipped")
        elif what in ("graph_def", "meta_graph_def"):
            folder.skip("graph")
        elif what == "tagged_run_metadata":
            folder.skip("run metadata", event.tagged_run_metadata.tag)
        elif what == "log_message":
            level = _LOG_LEVELS.get(int(event.log_message.level), "INFO")
            folder.texts.append((event.step, wall, "tensorboard", level, event.log_message.message))
            folder.imported["log messages"] += 1
        elif what == "session_log" and event.session_log.status == event_pb2.SessionLog.START:
            folder.notes.append(f"{path.name}: SessionLog START at step {event.step} (a restart, e.g. "
                                f"purge_step): every point is kept, TensorBoard may hide earlier ones")
    if bad_walls:
        folder.notes.append(f"{path.name}: {bad_walls} events with an impossible wall time (not finite or "
                            f"beyond ±{_MAX_WALL:.0e} s) are stored at the time of the event before them")
    folder.problems.extend(damage[:_DAMAGE_SHOWN])
    if len(damage) > _DAMAGE_SHOWN:
        folder.problems.append(f"{path}: {len(damage) - _DAMAGE_SHOWN} more damaged records, skipped")
    if len(folder.walls) > 2:
        folder.walls = [min(folder.walls), max(folder.walls)]


def _value(folder: Folder, where: tuple, step: int, wall: float, value, plugins: dict[str, str]) -> None:
    """One summary value; ``where``: (event file, record offset, record length, value index)."""
    tag = value.tag
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        folder.points.append((step, wall, tag, float(value.simple_value)))
        folder.imported["scalars"] += 1
    elif kind == "histo":
        folder.histograms.append((step, wall, tag, *histogram_from_proto(value.histo)))
        folder.imported["histograms"] += 1
    elif kind == "image":
        folder.media += image_items(step, wall, tag, where, value)
        folder.imported["images"] += 1
    elif kind == "audio":
        folder.media += audio_items(step, wall, tag, where, value)
        folder.imported["audio"] += 1
    elif kind == "tensor" or kind is None:  # hparams summaries carry their data in the metadata
        plugin = value.metadata.plugin_data.plugin_name or plugins.get(tag, "")
        if plugin:
            plugins.setdefault(tag, plugin)
        if plugin == "hparams":
            _hparams(folder, value.metadata.plugin_data.content)
        elif kind is None:
            folder.skip(plugin or "empty value", tag, "a summary value with no data")
        else:
            _tensor(folder, where, step, wall, tag, plugin, value)
    else:  # obsolete_old_style_histogram
        folder.skip(kind, tag, "an obsolete summary format runlake does not read")


def _tensor(folder: Folder, where: tuple, step: int, wall: float, tag: str, plugin: str, value) -> None:
    from tensorboard.util.tensor_util import make_ndarray

    if plugin in ("graphs", "mesh", "custom_scalars"):
        folder.skip("graph" if plugin == "graphs" else plugin, tag)
        return
    arr = make_ndarray(value.tensor)
    if plugin == "scalars" or (not plugin and arr.size == 1 and arr.dtype.kind in "biuf"):
        folder.points.append((step, wall, tag, float(arr.reshape(-1)[0])))
        folder.imported["scalars"] += 1
    elif plugin == "histograms":
        folder.histograms.append((step, wall, tag, *histogram_from_tensor(arr)))
        folder.imported["histograms"] += 1
    elif plugin == "text":
        name = tag[: -len("/text_summary")] if tag.endswith("/text_summary") else tag
        text = "\n".join(_str(x) for x in arr.reshape(-1))
        folder.texts.append((step, wall, name, "INFO", text))
        folder.imported["texts"] += 1
    elif plugin == "images":
        folder.media += image_items(step, wall, tag, where, value, arr)
        folder.imported["images"] += 1
    elif plugin == "audio":
        folder.media += audio_items(step, wall, tag, where, value, arr)
        folder.imported["audio"] += 1
    elif plugin == "pr_curves":
        names = ("tp", "fp", "tn", "fn", "precision", "recall")
        n = arr.shape[1]
        meta = {"plugin": "pr_curves", "thresholds": [i / max(n - 1, 1) for i in range(n)]}
        meta.update({k: [_json_float(v) for v in arr[i]] for i, k in enumerate(names)})
        folder.samples.append((step, wall, tag, str(where[0].resolve()), {"source": "tensorboard", **meta}))
        folder.imported["pr_curves"] += 1
    else:
        folder.skip(plugin or "tensor", tag, None if plugin else "a tensor summary with no plugin "
                    "that is not a single number")


def _hparams(folder: Folder, content: bytes) -> None:
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    which = data.WhichOneof("data")
    if which == "session_start_info":
        folder.sessions += 1
        for key, value in data.session_start_info.hparams.items():
            folder.hparams[key] = _integral(MessageToDict(value))
        folder.imported["hparams"] += 1
    elif which == "experiment":
        folder.experiment = True
    # session_end_info holds the trial status only; the run's own end says it better.


def _integral(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    if isinstance(v, list):
        return [_integral(x) for x in v]
    if isinstance(v, dict):
        return {k: _integral(x) for k, x in v.items()}
    return v


def _str(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _json_float(v: Any) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
