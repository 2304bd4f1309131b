"""Importing W&B runs from their local files: ``runlake import wandb ./wandb``.

Why it exists: a W&B user switching to runlake keeps their history. Offline runs
(``wandb/offline-run-*``, never uploaded) and synced ones (``wandb/run-*``) both leave a
``run-<id>.wandb`` file, W&B's own record log, plus the media under ``files/``. This module
reads them (:mod:`runlake.ingest.wandb_run`, with W&B's protobuf definitions; nothing is
uploaded or synced), maps them to runlake's kinds and writes one sealed segment per run with
:mod:`runlake.ingest.foreign`, then runs the normal ingest.

What maps to what:

* the run record -> ``run_start`` (name, group, tags, config, start time, host); W&B's run
  id, entity, job type and sweep go to ``config["wandb"]``; notes -> an ``update``;
* config records -> ``update`` (config keys); define_metric -> ``update`` (metrics);
* history rows -> ``metrics`` (``_step`` the step, ``_timestamp`` the time, nested keys
  joined with ``.``); ``wandb.Histogram`` -> ``histogram``; images, audio, video, tables,
  html ... -> ``media``, their files under ``files/`` copied as blobs (a missing file is a
  problem line, the rest is imported);
* summary records -> one ``update`` (summary) holding the final summary;
* system stats -> ``system`` (stored under ``sys/``); console output (``output_raw``, or
  ``files/output.log`` when the log has none) -> ``log`` lines, logger
  ``console.stdout``/``console.stderr``; alerts -> ``alert``;
* the exit record -> ``run_end``: ``finished`` for exit code 0, else ``failed``. No exit
  record means the W&B process never finished the run (it crashed, was killed, or is still
  running): the run ends ``killed`` with that reason, at its last record's time;
* telemetry, environment, files, artifacts and any other record: not imported, counted
  in ``skipped`` (by the proto's oneof name; a record type this wandb does not know is
  counted too) and written on the run as ``runlake.import`` log lines.

Idempotence: the run id is ``foreign_run_id("wandb", project, <W&B run id>)``, so a second
import writes nothing, and an offline copy and a synced copy of one W&B run are one run
(imported once, from the larger file). A resumed W&B run (several folders with one id) is
imported from its largest file only; the others are named in ``notes``.
"""

from __future__ import annotations

import math
import mimetypes
import os
import re
import socket
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

from runlake.emitter.capture import STREAM_LOGGERS
from runlake.ingest.foreign import (
    EVENTS_PER_FRAME, Envelope, Imported, foreign_run_id, foreign_writer, local_root, ns,
    project_name,
    report_logs, segment_exists, write_segment,
)
from runlake.ingest.wandb_records import install_hint, load_proto
from runlake.ingest.wandb_run import MEDIA_TYPES, WandbRun, read_run
from runlake.schemas.blobs import write_blob
from runlake.schemas.codec import encode_nonfinite
from runlake.schemas.errors import ConfigError
from runlake.schemas.events import (
    Alert, Event, Histogram, Host, Log, Media, MetricsBlock, MetricsGroup, RunEnd, RunStart,
    RunUpdate, System,
)
from runlake.schemas.segments import check_name
from runlake.schemas.severity import severity_from_level

__all__ = ["find_wandb_files", "import_wandb"]

_RUN_DIR = re.compile(r"(offline-)?run-.*")


def find_wandb_files(path: Path) -> list[Path]:
    """The ``.wandb`` files ``path`` names: the file itself, a run folder's, or every run
    folder's under a ``wandb/`` folder (or a folder holding ``wandb/``), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    own = sorted(path.glob("*.wandb"))
    if own:
        return own
    base = path / "wandb" if (path / "wandb").is_dir() else path
    found = []
    for d in sorted(base.iterdir()):
        if d.is_dir() and not d.is_symlink() and _RUN_DIR.fullmatch(d.name):
            found += sorted(d.glob("*.wandb"))
    return found


def _media_event(env: Envelope, run: WandbRun, run_dir: Path, ts: float, step: int, key: str,
                 obj: dict, kind: str, counts: dict, problems: list[str]) -> Media | None:
    rel = obj.get("path")
    if not isinstance(rel, str):
        problems.append(f"{run.path}: {key} at step {step}: a {obj.get('_type')} without a file path: skipped")
        return None
    source = run.path.parent / "files" / rel
    try:
        data = source.read_bytes()
    except OSError as exc:
        problems.append(f"{source}: {key} at step {step}: its file cannot be read "
                        f"({exc.strerror or exc}): that {kind} skipped")
        return None
    sha = write_blob(run_dir, data)
    meta = {k: obj[k] for k in ("width", "height", "format", "sample_rate", "duration", "fps",
                                "ncols", "nrows") if k in obj}
    if "ncols" in meta:
        meta["columns"] = meta.pop("ncols")
    if "nrows" in meta:
        meta["rows"] = meta.pop("nrows")
    if "duration" in meta:
        meta["duration_s"] = meta.pop("duration")
    mime = ("application/json" if rel.endswith(".json") else mimetypes.guess_type(rel)[0]
            or "application/octet-stream")
    counts["media"] = counts.get("media", 0) + 1
    caption = obj.get("caption")
    return Media(*env(), ns(ts), 0, key=key, media=kind, sha256=sha, bytes=len(data), mime=mime,
                 step=step, caption=caption if isinstance(caption, str) else None,
                 name=Path(rel).name, meta=meta)


def _histogram(env: Envelope, run: WandbRun, ts: float, step: int, key: str, obj: dict,
               problems: list[str]) -> Histogram | None:
    counts = obj.get("values")
    edges = obj.get("bins")
    packed = obj.get("packedBins")
    if isinstance(packed, dict) and isinstance(counts, list):
        lo, size = float(packed.get("min", 0)), float(packed.get("size", 0))
        edges = [lo + i * size for i in range(int(packed.get("count", len(counts))) + 1)]
    try:
        edges = [float(e) for e in edges]
        counts = [float(c) for c in counts]
        ok = len(edges) == len(counts) + 1 and all(a < b for a, b in zip(edges, edges[1:]))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        problems.append(f"{run.path}: histogram {key} at step {step}: bins/values that are not "
                        f"n+1 ascending edges and n counts: skipped")
        return None
    return Histogram(*env(), ns(ts), 0, key=key, edges=edges, counts=counts, step=step,
                     num=float(sum(counts)))


def _objects(env: Envelope, run: WandbRun, run_dir: Path, counts: dict, problems: list[str]
             ) -> Iterator[Event]:
    for ts, step, key, obj in run.objects:
        kind = obj.get("_type")
        if kind == "histogram":
            ev = _histogram(env, run, ts, step, key, obj, problems)
            if ev is not None:
                counts["histograms"] = counts.get("histograms", 0) + 1
                yield ev
        elif kind in MEDIA_TYPES:
            ev = _media_event(env, run, run_dir, ts, step, key, obj, MEDIA_TYPES[kind], counts, problems)
            if ev is not None:
                yield ev
        elif kind in ("images/separated", "audio", "videos"):
            files = obj.get("filenames") or [a.get("path") for a in obj.get(kind, []) if isinstance(a, dict)]
            captions = obj.get("captions") or obj.get("caption") or []
            media = {"images/separated": "image", "audio": "audio", "videos": "video"}[kind]
            for i, rel in enumerate(files):
                one = {"path": rel, "width": obj.get("width"), "height": obj.get("height"),
                       "caption": captions[i] if isinstance(captions, list) and i < len(captions) else None}
                ev = _media_event(env, run, run_dir, ts, step, key, {k: v for k, v in one.items() if v is not None},
                                  media, counts, problems)
                if ev is not None:
                    yield ev
        else:
            run.skipped[f"{kind} values"] += 1


def _blocks(env: Envelope, rows: list, start: int, counts: dict) -> Iterator[MetricsBlock]:
    """The history rows as ``metrics_block`` events of up to a frame's rows each, built
    column-wise (rows logging the same keys share a group) instead of one event per row."""
    points = 0
    for lo in range(0, len(rows), EVENTS_PER_FRAME):
        part = rows[lo:lo + EVENTS_PER_FRAME]
        n, first = len(part), env.seq
        env.seq += n  # one seq per row, as the rows' metrics events would take
        rows_of: dict[tuple[str, ...], list[int]] = {}
        for i, row in enumerate(part):
            rows_of.setdefault(row[2], []).append(i)
        groups = []
        for names, idx in rows_of.items():
            values = list(chain.from_iterable(part[i][3] for i in idx))
            if not math.isfinite(sum(values)):  # NaN and ±inf propagate: only then look closer
                values = list(encode_nonfinite(dict(enumerate(values))).values())
            points += len(values)
            groups.append(MetricsGroup(list(names), values, None if len(idx) == n else idx))
        times = [start if row[0] is None else ns(row[0]) for row in part]
        yield MetricsBlock(1, env.run_id, env.writer, first, times[0], 0, seqs=list(range(first, first + n)),
                           times=times, steps=[row[1] for row in part], groups=groups)
    counts["points"] = points


def _events(run: WandbRun, run_id: str, writer: str, project: str, name: str, run_dir: Path,
            counts: dict, result: Imported) -> Iterator[Event]:
    env = Envelope(run_id, writer)
    start = run.start_s or run.last_s or 0.0
    last = max(t for t in (run.end_s, run.last_s, start) if t is not None)
    config = dict(run.config)
    wandb_meta = {k: v for k, v in (("id", run.wandb_id), ("entity", run.entity), ("job_type", run.job_type),
                                    ("sweep_id", run.sweep_id), ("project", run.project)) if v}
    if "wandb" in config:
        result.notes.append("config key 'wandb' is the run's own: W&B's id/entity/job type not added")
    else:
        config["wandb"] = wandb_meta
    yield RunStart(*env(), ns(start), 0, project=project, name=name, group=run.group or None, config=config,
                   tags=run.tags, host=Host(hostname=run.host or socket.gethostname()),
                   argv=["runlake", "import", "wandb"])
    if run.notes:
        yield RunUpdate(*env(), ns(start), 0, notes=run.notes)
    for ts, update in run.config_updates:
        yield RunUpdate(*env(), ns(ts or start), 0, config=update)
    if run.metric_defs:
        yield RunUpdate(*env(), ns(start), 0, metrics=run.metric_defs)
    yield from _blocks(env, run.rows, ns(start), counts)
    for ts, values in run.stats:
        numeric = {k: v for k, v in values.items() if v.__class__ in (int, float, bool)}
        if len(numeric) < len(values):
            run.skipped["system stats that are not numbers"] += len(values) - len(numeric)
        if numeric:
            counts["system"] = counts.get("system", 0) + len(numeric)
            yield System(*env(), ns(ts or start), 0, values=encode_nonfinite(numeric))
    yield from _objects(env, run, run_dir, counts, result.problems)
    for ts, stream, line in run.output:  # INFO on both streams, as console capture writes them
        counts["logs"] = counts.get("logs", 0) + 1
        yield Log(*env(), ns(ts or last), 0, level="INFO", message=line, logger=STREAM_LOGGERS[stream])
    for ts, title, text, level in run.alerts:
        counts["alerts"] = counts.get("alerts", 0) + 1
        yield Alert(*env(), ns(ts or last), 0, message=f"{title}: {text}" if text else title,
                    severity=severity_from_level(level), alert=title or "user")
    if run.summary:
        counts["summary"] = len(run.summary)
        yield RunUpdate(*env(), ns(last), 0, summary=encode_nonfinite(run.summary))
    result.skipped = _skipped(run)  # complete now: the objects above added theirs
    yield from report_logs(env, ns(last), 0, result)
    last_step = max((r[1] for r in run.rows), default=None)
    if run.exit_code is None:
        status, reason = "killed", "no exit record: the W&B process never finished the run (crashed or killed)"
    else:
        status = "finished" if run.exit_code == 0 else "failed"
        reason = f"imported from W&B (exit code {run.exit_code})"
    yield RunEnd(*env(), ns(last), 0, status=status, exit_reason=reason, step=last_step, events=env.seq + 1)


def _skipped(run: WandbRun) -> list[str]:
    return [f"{what}: {n}" for what, n in sorted(run.skipped.items())]


def _output_log(run: WandbRun) -> None:
    """Console lines from ``files/output.log`` when the record log holds none."""
    if run.output:
        return
    path = run.path.parent / "files" / "output.log"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    run.output = [(run.last_s, "stdout", line.rstrip("\r")) for line in text.splitlines()]


def import_wandb(
    path: str | os.PathLike,
    *,
    project: str | None = None,
    root: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    ingest: bool = True,
) -> list[Imported]:
    """Import W&B runs (offline or synced) from their local files as runlake runs.

    Args:
        path: a ``wandb/`` folder (or the folder holding it), one ``offline-run-*`` /
            ``run-*`` folder, or one ``.wandb`` file.
        project: the runlake project of every imported run (default: each run's W&B
            project, made a valid name; ``wandb`` when it has none).
        root: the storage root receiving the segments (default: ``resolve_root``'s).
        db: the store file (default: the root's store).
        ingest: run ingest afterwards so the runs are queryable right away.

    Returns:
        One :class:`~runlake.ingest.foreign.Imported` per W&B run, in path order.

    Raises:
        ConfigError: ``path`` holds no ``.wandb`` file, ``project`` is invalid, or the
            ``wandb`` package (the ``interop`` extra) is missing.

    Example:
        >>> for r in import_wandb("wandb", project="old"):  # doctest: +SKIP
        ...     print(r.name, r.status, r.counts, r.skipped)
    """
    path = Path(path)
    if project is not None:
        check_name(project, "project")
    files = find_wandb_files(path)
    if not files:
        what = "does not exist" if not path.exists() else "holds no W&B run file (run-<id>.wandb)"
        raise ConfigError(f"{path} {what}: pass a wandb/ folder, an offline-run-*/run-* folder "
                          f"or a .wandb file")
    try:
        load_proto()  # before anything is written
    except ImportError as exc:
        raise ConfigError(f"importing W&B runs needs the wandb package: {install_hint()}") from exc
    # one W&B run per file name (run-<id>.wandb): an offline and a synced copy, or a resumed
    # run's folders, are read once, from the largest file; runs are read one at a time
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    root_path = local_root(root)
    results: list[Imported] = []
    for copies in sorted(by_name.values()):
        chosen = max(copies, key=lambda f: f.stat().st_size)
        run = read_run(chosen)
        proj = project or project_name(run.project, "wandb")
        wandb_id = run.wandb_id or str(run.path.resolve())
        run_id = foreign_run_id("wandb", proj, wandb_id)
        name = run.name or run.wandb_id or run.path.stem
        result = Imported(str(run.path.parent), run_id, name, "imported")
        results.append(result)
        result.notes += [f"same W&B run {wandb_id} in {p.parent}: imported once, from {run.path.parent}"
                         for p in copies if p != chosen]
        result.problems = list(run.problems)
        if not run.wandb_id:
            result.problems.append(f"{run.path}: no run record (W&B's run id, project, config): "
                                   f"imported under the file's path")
        _output_log(run)
        if not (run.rows or run.objects or run.output or run.stats or run.summary or run.config):
            result.status = "empty"
            continue
        writer = foreign_writer(run_id)
        run_dir = root_path / proj / run_id
        if segment_exists(run_dir / writer):
            result.status = "exists"
            result.skipped = _skipped(run)
            continue
        counts: dict[str, int] = {}
        # the segment appears (renamed) only once every event, and so every blob, is written
        write_segment(run_dir / writer, _events(run, run_id, writer, proj, name, run_dir, counts, result))
        result.counts, result.skipped = counts, _skipped(run)
    if ingest and any(r.status == "imported" for r in results):
        from runlake.ingest import ingest as run_ingest

        run_ingest(root=root_path, db=db)
    return results
