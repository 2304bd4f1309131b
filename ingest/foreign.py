"""Runs written by other tools, turned into runlake segments: the importers' shared part.

Every importer (TensorBoard, W&B, MLflow, trackio) reads the other tool's files into
ordinary runlake events and writes them with :func:`write_segment` as sealed segments under
``<root>/<project>/<run_id>/<writer>/``, then runs the normal ingest. One write path into
the store: the same derivations of ``runs``/``writers``, the same exactly-once ledger, and a
store rebuilt from the root still has the imported runs.

Idempotence: an importer derives the run id from the source (:func:`foreign_run_id`: the
tool, the project and the source's own id or absolute path) and the writer from the run id
(:func:`foreign_writer`), so importing the same source twice finds the segment already
there (:func:`segment_exists`) and writes nothing; ingest would skip a copy anyway.

:class:`Imported` is what every importer returns per run, and what ``runlake import``
prints.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from runlake.schemas.codec import encode_events
from runlake.schemas.events import Event, Log, Metrics, MetricsBlock
from runlake.schemas.errors import ConfigError
from runlake.schemas.objects import is_url
from runlake.schemas.segments import check_name, frame_compressor, resolve_root, segment_name, writer_id

__all__ = [
    "EVENTS_PER_FRAME",
    "Envelope",
    "Imported",
    "foreign_run_id",
    "foreign_writer",
    "local_root",
    "metric_events",
    "ns",
    "project_name",
    "report_logs",
    "segment_exists",
    "write_segment",
]

EVENTS_PER_FRAME = 10_000
"""Events per zstd frame of an imported segment (ingest reads frame by frame); a
``metrics_block`` counts as the rows it holds."""


@dataclass
class Imported:
    """The outcome for one imported run.

    ``status``: ``imported`` (segments written), ``exists`` (imported before: nothing
    written), ``empty`` (nothing to import) or ``skipped`` (not written: deleted in the
    source, or unreadable; ``skipped``/``problems`` say why, a later import takes it). ``counts``: what was imported, by kind
    (``points``, ``logs``, ``histograms``, ``media`` ...). ``skipped``: what was not, and
    why. ``problems``: damaged records or files (the rest was imported).
    """

    source: str
    run_id: str
    name: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def foreign_run_id(tool: str, project: str, source_id: str) -> str:
    """A run id stable for one source: ``<tool>-<16 hex>`` (``tb-``, ``wandb-``, ``mlflow-`` ...)."""
    digest = hashlib.sha256(f"{project}\0{source_id}".encode()).hexdigest()
    return f"{tool}-{digest[:16]}"


def foreign_writer(run_id: str, rank: int = 0) -> str:
    """The writer id of an imported run's rank: stable, so a re-import finds its segment."""
    tail = run_id.rsplit("-", 1)[-1]
    return writer_id(rank, 0, tail[:8])


def ns(wall_time: float) -> int:
    """Seconds since the epoch as the integer nanoseconds of an event's ``ts``."""
    return int(round(wall_time * 1e9))


class Envelope:
    """The envelope fields of one imported writer's events, with a gap-free ``seq``.

    ``env()`` returns ``(v, run_id, writer, seq)``; pass ``*env(), ts, rank`` to a kind.
    """

    def __init__(self, run_id: str, writer: str) -> None:
        self.run_id, self.writer, self.seq = run_id, writer, 0

    def __call__(self) -> tuple[int, str, str, int]:
        self.seq += 1
        return (1, self.run_id, self.writer, self.seq - 1)


def local_root(root: str | os.PathLike | None) -> Path:
    """The storage root an importer writes to, which must be a local folder.

    Raises:
        ConfigError: ``root`` (or ``$RUNLAKE_DIR``) is an ``s3://`` URL: importers write
            local segments and blobs (a Path would fold the URL into a folder named ``s3:``).
    """
    resolved = resolve_root(root)
    if is_url(resolved):
        raise ConfigError(f"cannot import into {resolved}: importers write local segments and blobs; "
                          f"pass a local root (--root DIR)")
    return Path(resolved)


_NOT_NAME = re.compile(r"[^A-Za-z0-9._+=@-]+")


def project_name(raw: str | None, fallback: str) -> str:
    """A source's own project or experiment name as a runlake project (``check_name``'s rules).

    Runs of characters a folder name may not hold become ``-`` (``"my exp/1"`` ->
    ``"my-exp-1"``); a name that still is not valid (empty, only symbols) gives ``fallback``.
    """
    name = _NOT_NAME.sub("-", raw or "").lstrip("._+=@-")
    name = re.sub(r"\.{2,}", ".", name)[:128].rstrip("-")
    try:
        return check_name(name, "project")
    except ValueError:
        return fallback


def metric_events(env: Envelope, rank: int,
                  rows: Iterable[tuple[int, int, dict[str, Any]]]) -> Iterator[Metrics]:
    """One ``metrics`` event per ``(step, ts_ns, {key: value})`` row, in the rows' order.

    A row is what the source logged at one step and instant (an MLflow batch, a trackio
    ``log`` call), so every point keeps its own step and time exactly. Values must be
    JSON-ready: non-finite floats as runlake's tokens (:func:`encode_nonfinite`), which
    the caller applies only where the source has any (a million points pay for it).
    """
    for step, ts, values in rows:
        if values:
            yield Metrics(*env(), ts, rank, step=step, values=values)


def report_logs(env: Envelope, ts: int, rank: int, result: Imported) -> list[Log]:
    """The ``runlake.import`` log lines telling, in the store itself, what was not imported
    (``skipped``), what was damaged (``problems``) and the importer's ``notes``."""
    lines = [("WARNING", f"not imported: {s}") for s in result.skipped]
    lines += [("WARNING", p) for p in result.problems] + [("INFO", n) for n in result.notes]
    return [Log(*env(), ts, rank, level=level, message=message,
                levelno=30 if level == "WARNING" else 20, logger="runlake.import")
            for level, message in lines]


def segment_exists(writer_dir: Path) -> bool:
    """Whether this writer's imported segment was already written."""
    return (writer_dir / segment_name(0, sealed=True)).exists()


def write_segment(writer_dir: Path, events: Iterable[Event] | list[Event]) -> Path:
    """One sealed segment of ``events``, framed and encoded exactly as the emitter does.

    Written to a temporary name, fsynced and renamed, so ingest never sees a partial file.
    ``events`` may be any iterable (a generator keeps a big run's memory to one frame).
    """
    writer_dir.mkdir(parents=True, exist_ok=True)
    final = writer_dir / segment_name(0, sealed=True)
    tmp = writer_dir / f".import-{os.getpid()}.tmp"
    cctx = frame_compressor()
    try:
        with open(tmp, "wb") as f:
            frame: list[Event] = []
            size = 0
            for event in events:
                frame.append(event)
                size += len(event.seqs) if event.__class__ is MetricsBlock else 1  # a block: its rows
                if size >= EVENTS_PER_FRAME:
                    f.write(cctx.compress(encode_events(frame)))
                    frame, size = [], 0
            if frame:
                f.write(cctx.compress(encode_events(frame)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
