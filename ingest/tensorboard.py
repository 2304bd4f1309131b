"""Importing TensorBoard logs into the store: each TensorBoard run directory becomes a run.

Why it exists: most teams have years of TensorBoard logs; comparing new runs with old ones
needs them in the same store.

How: the event files are read with TensorBoard's own reader (``EventAccumulator``, every
point kept, no sampling) and turned into ordinary runlake events written as one sealed
segment per run under the storage root, ``<root>/<project>/<run_id>/<writer>/000000.jsonl.zst``;
then the normal ingest loads them. Going through segments instead of inserting rows keeps
one write path into the store (the same derivations of ``runs``/``writers``, the same
exactly-once ledger) and keeps the root the source of truth: a store rebuilt from the root
still has the imported runs.

Mapping:

* scalars (``simple_value`` or tensor scalars of the ``scalars`` plugin) -> ``metrics``
  events at their step and wall time, values exact (TensorBoard stores float32; the store
  keeps that float32 value as a double);
* hparams (``session_start_info`` of the hparams plugin, as written by
  ``SummaryWriter.add_hparams``) -> the run's ``config``;
* text summaries -> ``log`` events (logger = the tag, level INFO);
* histograms, images, audio, graphs -> not imported, counted in the result.

Idempotence: the run id is derived from the project and the directory's absolute path
(``tb-<hash>``), so importing the same directory twice finds the run already present and
skips it; nothing is duplicated. The segment is written to a temporary name and renamed,
so ingest never sees a partial file.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runlake.schemas.codec import ENCODER, encode_nonfinite, pack_metrics
from runlake.schemas.errors import ConfigError
from runlake.schemas.events import Event, Host, Log, Metrics, RunEnd, RunStart
from runlake.schemas.segments import check_name, resolve_root, segment_name

__all__ = ["ImportedRun", "find_run_dirs", "import_tensorboard", "read_run_dir"]

_EVENTS_PER_FRAME = 10_000
_SKIPPED_KINDS = ("histograms", "images", "audio")


@dataclass
class ImportedRun:
    """The outcome for one TensorBoard run directory."""

    path: Path
    run_id: str
    name: str
    status: str  # "imported" | "exists" | "empty"
    points: int = 0
    texts: int = 0
    hparams: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def find_run_dirs(logdir: Path) -> list[Path]:
    """Every directory under ``logdir`` (itself included) holding ``*tfevents*`` files, sorted."""
    found = []
    for dirpath, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            found.append(Path(dirpath))
    return sorted(found)


def _hparam_value(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        v = value.number_value
        return int(v) if math.isfinite(v) and v.is_integer() and abs(v) < 2**53 else v
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def read_run_dir(path: Path) -> dict[str, Any]:
    """Everything importable from one TensorBoard run directory.

    Returns:
        ``{"points": [(step, wall_time, tag, value)], "texts": [(step, wall_time, tag,
        text)], "config": {...}, "skipped": {kind: tags}}``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    points: list[tuple[int, float, str, float]] = []
    texts: list[tuple[int, float, str, str]] = []
    for tag in tags.get("scalars", []):
        points.extend((e.step, e.wall_time, tag, float(e.value)) for e in acc.Scalars(tag))
    for tag in tags.get("tensors", []):
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin == "scalars":
            for e in acc.Tensors(tag):
                points.append((e.step, e.wall_time, tag, float(make_ndarray(e.tensor_proto).item())))
        elif plugin == "text":
            name = tag[: -len("/text_summary")] if tag.endswith("/text_summary") else tag
            for e in acc.Tensors(tag):
                arr = make_ndarray(e.tensor_proto)
                text = "\n".join(x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.flatten())
                texts.append((e.step, e.wall_time, name, text))
    config: dict[str, Any] = {}
    for tag, content in acc.PluginTagToContent("hparams").items():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") == "session_start_info":
            for key, value in data.session_start_info.hparams.items():
                config[key] = _hparam_value(value)
    skipped = {k: len(tags.get(k, [])) for k in _SKIPPED_KINDS if tags.get(k)}
    return {"points": points, "texts": texts, "config": config, "skipped": skipped}


def _run_id(project: str, path: Path) -> str:
    digest = hashlib.sha256(f"{project}\0{path.resolve()}".encode()).hexdigest()
    return f"tb-{digest[:16]}"


def _ns(wall_time: float) -> int:
    return int(round(wall_time * 1e9))


def _events(run_id: str, writer: str, project: str, name: str, data: dict[str, Any]) -> list[Event]:
    points = sorted(data["points"], key=lambda p: (p[0], p[1], p[2]))
    texts = sorted(data["texts"], key=lambda t: (t[1], t[0]))
    walls = [p[1] for p in points] + [t[1] for t in texts]
    first, last = (min(walls), max(walls)) if walls else (0.0, 0.0)
    seq = 0

    def env() -> tuple:
        nonlocal seq
        seq += 1
        return (1, run_id, writer, seq - 1)

    host = Host(hostname=socket.gethostname())
    events: list[Event] = [
        RunStart(*env(), _ns(first), 0, project=project, name=name, config=data["config"],
                 tags=["tensorboard"], host=host, argv=["runlake", "import", "tensorboard"])
    ]
    group: dict[str, float] = {}
    key = None
    for step, wall, tag, value in points:
        if (step, wall) != key or tag in group:
            if group:
                events.append(Metrics(*env(), _ns(key[1]), 0, step=key[0], values=encode_nonfinite(group)))
            group, key = {}, (step, wall)
        group[tag] = value
    if group:
        events.append(Metrics(*env(), _ns(key[1]), 0, step=key[0], values=encode_nonfinite(group)))
    for step, wall, tag, text in texts:
        events.append(Log(*env(), _ns(wall), 0, level="INFO", message=text, levelno=20, logger=tag, step=step))
    last_step = max((p[0] for p in points), default=None)
    events.append(RunEnd(*env(), _ns(last), 0, status="finished", exit_reason="imported from TensorBoard",
                         step=last_step, events=seq + 1))
    return events


def _write_segment(writer_dir: Path, events: list[Event]) -> Path:
    import zstandard

    writer_dir.mkdir(parents=True, exist_ok=True)
    final = writer_dir / segment_name(0, sealed=True)
    tmp = writer_dir / f".import-{os.getpid()}.tmp"
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    with open(tmp, "wb") as f:
        for start in range(0, len(events), _EVENTS_PER_FRAME):
            chunk = events[start : start + _EVENTS_PER_FRAME]
            metrics = [ev for ev in chunk if ev.__class__ is Metrics]
            block = pack_metrics(metrics)  # as the emitter writes them (architecture.md)
            if block is not None:
                chunk = [block, *(ev for ev in chunk if ev.__class__ is not Metrics)]
            f.write(cctx.compress(ENCODER.encode_lines(chunk)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def import_tensorboard(
    logdir: str | os.PathLike,
    *,
    project: str = "tensorboard",
    root: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    ingest: bool = True,
) -> list[ImportedRun]:
    """Import every TensorBoard run directory under ``logdir`` as a runlake run.

    Args:
        logdir: a TensorBoard log directory (as passed to ``tensorboard --logdir``).
        project: the runlake project of the imported runs.
        root: the storage root receiving the segments (default ``$RUNLAKE_DIR``/``./runlake-data``).
        db: the store file (default ``<root>/runlake.duckdb``).
        ingest: run ingest afterwards so the runs are queryable right away.

    Returns:
        One :class:`ImportedRun` per directory with event files, in path order.

    Raises:
        ConfigError: ``logdir`` has no TensorBoard event files, or ``project`` is invalid.
    """
    logdir = Path(logdir)
    check_name(project, "project")
    dirs = find_run_dirs(logdir) if logdir.is_dir() else []
    if not dirs:
        raise ConfigError(
            f"no TensorBoard event files (events.out.tfevents.*) under {logdir}: pass the "
            f"directory given to `tensorboard --logdir`"
        )
    root_path = resolve_root(root)
    results = []
    for path in dirs:
        rel = path.relative_to(logdir).as_posix()
        name = logdir.resolve().name if rel == "." else rel
        run_id = _run_id(project, path)
        writer = f"r0000-a000-{run_id[3:11]}"
        writer_dir = root_path / project / run_id / writer
        if (writer_dir / segment_name(0, sealed=True)).exists():
            results.append(ImportedRun(path, run_id, name, "exists"))
            continue
        data = read_run_dir(path)
        result = ImportedRun(path, run_id, name, "imported", len(data["points"]), len(data["texts"]),
                             len(data["config"]), data["skipped"])
        if not data["points"] and not data["texts"] and not data["config"]:
            result.status = "empty"
        else:
            _write_segment(writer_dir, _events(run_id, writer, project, name, data))
        results.append(result)
    if ingest and any(r.status == "imported" for r in results):
        from runlake.ingest import ingest as run_ingest

        run_ingest(root=root_path, db=db)
    return results
