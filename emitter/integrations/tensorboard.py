"""Writing TensorBoard event files: a synchronous scalar writer and a live mirror.

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
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable

from runlake.schemas.codec import NONFINITE_TOKENS
from runlake.schemas.metric_keys import system_key

__all__ = ["EventFileWriter", "TensorBoardMirror", "flatten_hparams"]


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
    """Mirror metrics events into TensorBoard event files while the run writes segments.

    Meant to be called by the emitter's writer thread after each successful flush with
    the events of that batch. It never raises into the caller for bad values: non-numeric
    values are skipped (NaN/Inf are written, TensorBoard shows them).

    Args:
        logdir: the TensorBoard log directory (``tensorboard --logdir LOGDIR``).
        run_name: the sub-directory for this run (the run's name or id).
        rank: ranks other than 0 write to ``<run_name>/rank<r>``.
    """

    def __init__(self, logdir: str | os.PathLike, run_name: str, rank: int = 0) -> None:
        sub = Path(logdir) / run_name
        if rank:
            sub = sub / f"rank{rank}"
        self.logdir = sub
        self._writer: EventFileWriter | None = None

    def write_events(self, events: Iterable[Any]) -> int:
        """Write the ``metrics`` and ``system`` events among ``events``; returns how many.

        System values are keyed as in the store (:func:`system_key`: ``sys/`` once), at
        the event's step when it has one, else at the last metrics step seen.
        """
        count = 0
        for ev in events:
            kind = ev.__struct_config__.tag
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
            if self._writer is None:
                self._writer = EventFileWriter(self.logdir)
            ts = ev.ts / 1e9 if isinstance(ev.ts, int) else float(ev.ts)
            self._writer.scalars(step or 0, clean, ts)
            count += 1
        if self._writer is not None and count:
            self._writer.flush()
        return count

    _last_step: int = 0

    def close(self) -> None:
        """Flush and close the event file (call at run end)."""
        if self._writer is not None:
            self._writer.close()
