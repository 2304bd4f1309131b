"""Writing TensorBoard event files: a synchronous writer and a live mirror.

Why it exists: people keep TensorBoard open next to anything new. :class:`EventFileWriter`
writes the TFRecord event files TensorBoard reads (``events.out.tfevents.*``), with
tensorboard's own protobufs and record framing, but synchronously: tensorboard's
``SummaryWriter`` hands events to a background thread through a 10-slot queue that blocks
when full, while this writer is meant to run on a thread that already does I/O (the
emitter's writer thread, or ``runlake export tensorboard``). It imports ``tensorboard``
lazily and never imports torch.

:class:`TensorBoardMirror` mirrors ``metrics`` (and ``system``) events into one event file
per process: ``<logdir>/<run name or id>/`` for rank 0 and ``.../rank<r>/`` for other
ranks. Values are written as float32 ``simple_value`` (TensorBoard's scalar type).
``histogram`` events and ``media`` images, audio and text are mirrored too (the bytes read
from the run's blob, unchanged).

Histograms and media are written as TensorBoard's readers expect them, and so that a
TensorBoard import (:mod:`runlake.ingest.tb_media`) exports back unchanged: a histogram whose
five statistics are known is a ``HistogramProto`` (``bucket_limit = edges[1:]``, TensorBoard
draws bucket 0 from ``min``), one without them the ``histograms`` plugin tensor of ``[left,
right, count]`` rows; one image or clip is a legacy ``Summary.Image``/``Summary.Audio``, a
group (``meta`` ``index``/``count``: read from one plugin tensor) the plugin tensor again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from runlake.emitter.media import HISTOGRAM_STATS  # also a HistogramProto's statistics
from runlake.schemas.codec import NONFINITE_TOKENS
from runlake.schemas.metric_keys import system_key

__all__ = ["EventFileWriter", "TensorBoardMirror", "flatten_hparams", "write_media"]


class EventFileWriter:
    """Append scalar, text and hparams summaries to a new TensorBoard event file.

    Args:
        logdir: the TensorBoard run directory (created if missing).
        suffix: appended to the file name (``events.out.tfevents.<time>.<host>.<pid><suffix>``).

    Raises:
        OSError: the directory cannot be created or the file opened.
    """

    def __init__(self, logdir: str | os.PathLike, *, suffix: str = ".runlake") -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}{suffix}"
        self.path = self.logdir / name
        n = 0
        while self.path.exists():  # two writers in one second in one process
            n += 1
            self.path = self.logdir / f"{name}.{n}"
        self._file = open(self.path, "wb")
        self._records = RecordWriter(self._file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def scalars(self, step: int, values: dict[str, float], wall_time: float) -> None:
        """One event holding every scalar of ``values`` at ``step`` (float32 in the file)."""
        pb = self._summary_pb2
        summary = pb.Summary(value=[pb.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._write(self._event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary))

    def text(self, tag: str, text: str, step: int = 0, wall_time: float | None = None) -> None:
        """A text summary (TensorBoard's Text tab renders it as Markdown)."""
        from tensorboard.plugins.text.metadata import create_summary_metadata
        from tensorboard.util.tensor_util import make_tensor_proto

        value = self._summary_pb2.Summary.Value(
            tag=tag, metadata=create_summary_metadata(display_name=tag, description=""),
            tensor=make_tensor_proto([text.encode()], shape=[1]),
        )
        self._write(
            self._event_pb2.Event(
                wall_time=wall_time or time.time(), step=int(step), summary=self._summary_pb2.Summary(value=[value])
            )
        )

    def _value(self, step: int, value: Any, wall_time: float) -> None:
        summary = self._summary_pb2.Summary(value=[value])
        self._write(self._event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary))

    def histogram(self, step: int, tag: str, edges: list[float], counts: list[float],
                  stats: dict[str, float | None], wall_time: float) -> None:
        """A histogram (the form is chosen as the module docstring says)."""
        pb = self._summary_pb2
        if all(stats.get(k) is not None for k in HISTOGRAM_STATS):
            histo = pb.HistogramProto(bucket_limit=edges[1:], bucket=counts,
                                      **{k: stats[k] for k in HISTOGRAM_STATS})
            self._value(step, pb.Summary.Value(tag=tag, histo=histo), wall_time)
            return
        import numpy as np
        from tensorboard.plugins.histogram.metadata import create_summary_metadata
        from tensorboard.util.tensor_util import make_tensor_proto

        rows = np.array([edges[:-1], edges[1:], counts], dtype=np.float64).T.reshape(len(counts), 3)
        self._value(step, pb.Summary.Value(tag=tag, metadata=create_summary_metadata(None, None),
                                           tensor=make_tensor_proto(rows, dtype=np.float64)), wall_time)

    def image(self, step: int, tag: str, data: bytes, meta: dict[str, Any], wall_time: float) -> None:
        """One encoded image (PNG, JPEG, GIF), its bytes unchanged; ``meta``: width, height, channels."""
        im = self._summary_pb2.Summary.Image(height=int(meta.get("height") or 0), width=int(meta.get("width") or 0),
                                             colorspace=int(meta.get("channels") or 0), encoded_image_string=data)
        self._value(step, self._summary_pb2.Summary.Value(tag=tag, image=im), wall_time)

    def audio(self, step: int, tag: str, data: bytes, meta: dict[str, Any], mime: str | None,
              wall_time: float) -> None:
        """One encoded clip (WAV), its bytes unchanged; ``meta``: sample_rate, channels, frames
        (else duration_s x sample_rate)."""
        rate = float(meta.get("sample_rate") or 0)
        frames = meta.get("frames")
        if frames is None:
            frames = round(float(meta.get("duration_s") or 0) * rate)
        a = self._summary_pb2.Summary.Audio(
            sample_rate=rate, num_channels=int(meta.get("channels") or 0), length_frames=int(frames),
            encoded_audio_string=data, content_type=mime or "audio/wav")
        self._value(step, self._summary_pb2.Summary.Value(tag=tag, audio=a), wall_time)

    def media_group(self, step: int, tag: str, media: str, items: list[tuple[bytes, dict, str | None]],
                    wall_time: float) -> None:
        """Several images or clips as one plugin tensor summary (``items``: data, meta, caption)."""
        import numpy as np
        from tensorboard.util.tensor_util import make_tensor_proto

        if media == "image":
            from tensorboard.plugins.image.metadata import create_summary_metadata

            meta = items[0][1]
            flat = [str(meta.get("width", 0)).encode(), str(meta.get("height", 0)).encode(), *(d for d, _, _ in items)]
            tensor, md = make_tensor_proto(np.array(flat, dtype=object)), create_summary_metadata(tag, "")
        else:
            from tensorboard.plugins.audio import metadata as audio_md

            rows = np.array([[d, (c or "").encode()] for d, _, c in items], dtype=object).reshape(len(items), 2)
            tensor = make_tensor_proto(rows)
            md = audio_md.create_summary_metadata(tag, "", audio_md.Encoding.Value("WAV"))
        self._value(step, self._summary_pb2.Summary.Value(tag=tag, metadata=md, tensor=tensor), wall_time)

    def hparams(self, hparams: dict[str, Any], wall_time: float | None = None) -> None:
        """A session start summary: the HParams tab shows ``hparams`` (flat scalars)."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        summary = hparams_pb(hparams)
        self._write(self._event_pb2.Event(wall_time=wall_time or time.time(), step=0, summary=summary))

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._records.flush()
            self._file.close()


def flatten_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, bool | float | str]:
    """Flatten a nested config into TensorBoard hparams: ``{"opt": {"lr": 1}} -> {"opt.lr": 1.0}``.

    Lists and other values that are not bool/number/str become JSON strings.
    """
    out: dict[str, bool | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_hparams(value, name + "."))
        elif isinstance(value, (bool, str)):
            out[name] = value
        elif isinstance(value, (int, float)):
            out[name] = float(value)
        elif value is None:
            out[name] = "None"
        else:
            out[name] = json.dumps(value, default=str)
    return out


class TensorBoardMirror:
    """Mirror metrics, histogram and media events into TensorBoard event files while the
    run writes segments.

    Meant to be called by the emitter's writer thread after each successful flush with
    the events of that batch. It never raises into the caller for bad values: non-numeric
    values are skipped (NaN/Inf are written, TensorBoard shows them); a media event whose
    blob cannot be read, or of a type TensorBoard has no tab for (video, table, file), is
    counted in :attr:`skipped`.

    Args:
        logdir: the TensorBoard log directory (``tensorboard --logdir LOGDIR``).
        run_name: the sub-directory for this run (the run's name or id).
        rank: ranks other than 0 write to ``<run_name>/rank<r>``.
        run_dir: the run's folder (``<root>/<project>/<run_id>``) holding its blobs; without
            it media events are skipped.
    """

    def __init__(self, logdir: str | os.PathLike, run_name: str, rank: int = 0, *,
                 run_dir: str | os.PathLike | None = None) -> None:
        sub = Path(logdir) / run_name
        if rank:
            sub = sub / f"rank{rank}"
        self.logdir = sub
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.skipped: Counter = Counter()
        """Media events not mirrored, by reason (``"no blob"``, ``"video"`` ...)."""
        self._writer: EventFileWriter | None = None

    def _out(self) -> EventFileWriter:
        if self._writer is None:
            self._writer = EventFileWriter(self.logdir)
        return self._writer

    def write_events(self, events: Iterable[Any]) -> int:
        """Write the ``metrics``, ``system``, ``histogram`` and ``media`` events among
        ``events``; returns how many.

        System values are keyed as in the store (:func:`system_key`: ``sys/`` once), at
        the event's step when it has one, else at the last metrics step seen; histograms
        and media without a step likewise.
        """
        count = 0
        for ev in events:
            kind = ev.__struct_config__.tag
            if kind in ("histogram", "media"):
                ts = ev.ts / 1e9 if isinstance(ev.ts, int) else float(ev.ts)
                step = ev.step if ev.step is not None else self._last_step
                count += self._histogram(ev, step, ts) if kind == "histogram" else self._media(ev, step, ts)
                continue
            if kind not in ("metrics", "system"):
                continue
            values = ev.values
            if kind == "system":
                values = {system_key(k): v for k, v in values.items()}
                step = ev.step if ev.step is not None else self._last_step
            else:
                step = self._last_step = ev.step
            clean = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
            clean.update({k: NONFINITE_TOKENS[v] for k, v in values.items()
                          if isinstance(v, str) and v in NONFINITE_TOKENS})
            if not clean:
                continue
            ts = ev.ts / 1e9 if isinstance(ev.ts, int) else float(ev.ts)
            self._out().scalars(step or 0, clean, ts)
            count += 1
        if self._writer is not None and count:
            self._writer.flush()
        return count

    _last_step: int = 0

    def _histogram(self, ev: Any, step: int, ts: float) -> int:
        stats = {k: getattr(ev, k) for k in HISTOGRAM_STATS}
        self._out().histogram(step or 0, ev.key, list(ev.edges), list(ev.counts), stats, ts)
        return 1

    def _media(self, ev: Any, step: int, ts: float) -> int:
        if ev.media not in ("image", "audio", "text"):
            self.skipped[ev.media] += 1
            return 0
        try:
            if self.run_dir is None:
                raise OSError("no run folder")
            from runlake.schemas.blobs import blob_path

            data = blob_path(self.run_dir, ev.sha256).read_bytes()
        except (OSError, ValueError):
            self.skipped["no blob"] += 1
            return 0
        write_media(self._out(), step or 0, ev.key, ev.media, data, dict(ev.meta), ev.mime, ts)
        return 1

    def close(self) -> None:
        """Flush and close the event file (call at run end)."""
        if self._writer is not None:
            self._writer.close()


def write_media(writer: EventFileWriter, step: int, tag: str, media: str, data: bytes, meta: dict[str, Any],
                mime: str | None, wall_time: float) -> None:
    """One image, clip or text (``media`` of a ``media`` event) as its TensorBoard summary."""
    if media == "image":
        writer.image(step, tag, data, meta, wall_time)
    elif media == "audio":
        writer.audio(step, tag, data, meta, mime, wall_time)
    else:
        writer.text(tag, data.decode("utf-8", "replace"), step, wall_time)
