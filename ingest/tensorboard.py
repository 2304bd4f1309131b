"""Importing TensorBoard logs into the store: each TensorBoard run becomes a runlake run.

Why it exists: most teams have years of TensorBoard logs; comparing new runs with old ones
needs them in the same store, whatever wrote them and whatever they hold.

How: :mod:`runlake.ingest.tb_read` reads every event file of a folder (every record, torn
or corrupt ones reported with file and offset) into runlake's kinds; this module decides
which folders form one run, turns them into ordinary events written as one sealed segment
per writer under ``<root>/<project>/<run_id>/<writer>/000000.jsonl.zst``, then runs the
normal ingest. Going through segments keeps one write path into the store (the same
derivations of ``runs``/``writers``, the same exactly-once ledger) and keeps the root the
source of truth: a store rebuilt from the root still has the imported runs.

Which folders form one run (``add_*`` writers put some data in subfolders):

* a folder with event files is a run, named by its path under the logdir;
* ``<run>/<tag>_<name>/`` holding only scalars tagged ``<tag>`` (``add_scalars``) belongs
  to ``<run>``, its points keyed ``<tag>/<name>``;
* the one subfolder holding an hparams session (``add_hparams`` writes ``<run>/<time>/``)
  belongs to ``<run>`` when ``<run>`` has no hparams of its own: its hparams become the
  run's config, its metrics the run's metrics. Several such subfolders are several trials,
  each its own run (merging them would lose all but one config);
* ``<run>/rank<r>/`` (runlake's export and live mirror) is rank ``r`` of ``<run>``.

Every run gets log lines (logger ``runlake.import``) naming what was not imported and
why, so the store itself says what the TensorBoard files held beyond its rows.

Histograms become ``histogram`` events with the file's buckets and statistics, images and
audio ``media`` events whose blobs (``<run>/blobs/``, written before the segment that
refers to them) are the encoded bytes from the event files, unchanged
(:mod:`runlake.ingest.tb_media`): ``runlake export tensorboard`` writes them back as they were.

Idempotence: the run id is derived from the project and the run folder's absolute path
(``tb-<hash>``), the writer from the run id and rank, so importing the same directory twice
finds the segments already present and skips them; nothing is duplicated. Segments are
written to a temporary name and renamed, so ingest never sees a partial file.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from runlake.ingest.foreign import (
    foreign_run_id, foreign_writer, local_root, ns, segment_exists, write_segment,
)
from runlake.ingest.tb_media import load_media
from runlake.ingest.tb_read import Folder, Skip, is_event_file, read_folder
from runlake.schemas.blobs import media_max_bytes, write_blob
from runlake.schemas.codec import encode_nonfinite
from runlake.schemas.errors import ConfigError
from runlake.schemas.events import Event, Histogram, Host, Log, Media, Metrics, RunEnd, RunStart, Sample
from runlake.schemas.segments import check_name

__all__ = ["ImportedRun", "Part", "find_run_dirs", "import_tensorboard", "plan_runs"]

_RANK_DIR = re.compile(r"rank([1-9]\d{0,5})")


@dataclass
class Part:
    """One folder's contribution to a run."""

    folder: Folder
    rank: int = 0
    role: str = "run"  # "run" | "add_scalars" | "add_hparams" | "rank"
    rename: str | None = None  # add_scalars: the key its single tag becomes


@dataclass
class ImportedRun:
    """The outcome for one TensorBoard run (one run folder and the subfolders it owns)."""

    path: Path
    run_id: str
    name: str
    status: str  # "imported" | "exists" | "empty"
    points: int = 0
    texts: int = 0
    hparams: int = 0
    samples: int = 0
    histograms: int = 0
    media: int = 0  # images and audio clips (one summary may hold several)
    ranks: int = 1
    folders: list[str] = field(default_factory=list)  # subfolders merged in, with their role
    imported: dict[str, int] = field(default_factory=dict)  # summaries per kind
    skipped: list[str] = field(default_factory=list)  # "<kind>: <n> (<tags>): <why>"
    problems: list[str] = field(default_factory=list)  # torn/corrupt records, unreadable files
    notes: list[str] = field(default_factory=list)


def find_run_dirs(logdir: Path) -> list[Path]:
    """Every directory under ``logdir`` (itself included) holding ``*tfevents*`` files, sorted."""
    found = []
    for dirpath, _dirs, files in os.walk(logdir):
        if any(is_event_file(f) for f in files):
            found.append(Path(dirpath))
    return sorted(found)


def _attach(child: Folder, parent: Folder) -> Part | None:
    """``child`` as a rank or ``add_scalars`` part of its parent's run, or None."""
    name = child.path.name
    m = _RANK_DIR.fullmatch(name)
    if m:
        return Part(child, int(m.group(1)), "rank")
    tags = child.scalar_tags()
    if len(tags) == 1 and set(child.imported) == {"scalars"} and not child.hparams:
        (tag,) = tags
        prefix = tag.replace("/", "_") + "_"
        if name.startswith(prefix) and len(name) > len(prefix):
            return Part(child, 0, "add_scalars", f"{tag}/{name[len(prefix):]}")
    return None


@dataclass
class _Open:
    """A run still collecting folders; ``trials``: its subfolders holding an hparams session."""

    path: Path
    parts: list[Part]
    trial_of: _Open | None = None
    trials: list[_Open] = field(default_factory=list)


def plan_runs(logdir: Path, dirs: list[Path]) -> Iterator[tuple[Path, list[Part]]]:
    """Read the folders and yield each run (its folder, its parts, itself first) as soon as
    every folder it can own has been read, so one run's points are in memory at a time.

    ``dirs`` must be sorted: a folder's subfolders then follow it, before anything else.
    An ``add_hparams`` subfolder joins its parent only if it is the parent's one such
    subfolder, which is known once the parent is complete; until then it is a pending trial.
    """
    stack: list[_Open] = []

    def close(run: _Open) -> Iterator[tuple[Path, list[Part]]]:
        if run.trial_of is not None:
            return  # decided, and emitted, with the run it may belong to
        if len(run.trials) == 1:
            (trial,) = run.trials
            run.parts += [Part(p.folder, p.rank, "add_hparams" if p.role == "run" else p.role, p.rename)
                          for p in trial.parts]
            run.trials = trial.trials
        yield run.path, run.parts
        for trial in run.trials:
            trial.trial_of = None
            yield from close(trial)

    for d in dirs:
        while stack and not d.is_relative_to(stack[-1].path):
            yield from close(stack.pop())
        folder = read_folder(d)
        owner = next(((run, p) for run in reversed(stack) for p in run.parts if p.folder.path == d.parent), None)
        if owner is not None and d != logdir:
            run, parent = owner
            part = _attach(folder, parent.folder)
            if part is not None:
                if part.role != "rank":
                    part.rank = parent.rank
                run.parts.append(part)
                continue
            if (folder.sessions and parent.role == "run" and not parent.folder.sessions
                    and not parent.folder.experiment):
                trial = _Open(d, [Part(folder)], trial_of=run)
                run.trials.append(trial)
                stack.append(trial)
                continue
        stack.append(_Open(d, [Part(folder)]))
    while stack:
        yield from close(stack.pop())


def _summarise(result: ImportedRun, parts: list[Part], logdir: Path) -> dict:
    """Fill ``result`` from the parts; returns the run's config."""
    config: dict = {}
    skipped: dict[str, Skip] = {}
    imported: dict[str, int] = {}
    experiment = False
    for part in parts:
        f = part.folder
        if part.role != "run":
            what = f"{part.role} -> {part.rename}" if part.rename else (
                f"rank {part.rank}" if part.role == "rank" else part.role)
            result.folders.append(f"{f.path.relative_to(logdir).as_posix()} ({what})")
        for key, value in f.hparams.items():
            if key in config and config[key] != value:
                result.notes.append(f"hparam {key!r}: {config[key]!r} kept, {value!r} in "
                                    f"{f.path.name} differs")
                continue
            config[key] = value
        if f.sessions > 1:
            result.notes.append(f"{f.sessions} hparams sessions in {f.path.name}: the later values win")
        experiment |= f.experiment
        for kind, n in f.imported.items():
            imported[kind] = imported.get(kind, 0) + n
        for kind, s in f.skipped.items():
            if kind in skipped:
                skipped[kind].count += s.count
                skipped[kind].tags |= s.tags
            else:
                skipped[kind] = Skip(s.count, s.why, set(s.tags))
        cap = media_max_bytes()
        for item in f.media:
            if item.nbytes > cap:
                s = skipped.setdefault("media too big", Skip(0, f"over the media cap of {cap:,} bytes "
                                                                f"(RUNLAKE_MEDIA_MAX_BYTES)"))
                s.count += 1
                s.tags.add(item.tag)
        result.problems.extend(f.problems)
        result.notes.extend(f.notes)
    if experiment and not config:
        skipped["hparams experiment"] = Skip(1, "hparam domains and metric list only; the values "
                                                "are in its trial runs")
    result.imported = imported
    result.skipped = [s.describe(k) for k, s in sorted(skipped.items())]
    result.points = sum(len(p.folder.points) for p in parts)
    result.texts = sum(len(p.folder.texts) for p in parts)
    result.samples = sum(len(p.folder.samples) for p in parts)
    result.histograms = sum(len(p.folder.histograms) for p in parts)
    result.media = sum(len(p.folder.media) for p in parts) - (skipped["media too big"].count
                                                              if "media too big" in skipped else 0)
    result.hparams = len(config)
    result.ranks = len({p.rank for p in parts})
    return config


def _events(run_id: str, writer: str, rank: int, world: int, project: str, name: str,
            config: dict, parts: list[Part], report: list[tuple[str, str]], run_dir: Path) -> list[Event]:
    """The events of one rank's writer, built from the parts of that rank; the media's
    blobs are written into ``run_dir`` on the way (before the segment is)."""
    points, texts, samples, hists, media, walls = [], [], [], [], [], []
    for part in parts:
        f = part.folder
        points.extend(f.points if part.rename is None else [(s, w, part.rename, v) for s, w, _, v in f.points])
        texts.extend(f.texts)
        samples.extend(f.samples)
        hists.extend(f.histograms)
        media.extend(f.media)
        walls.extend(f.walls)
    points.sort(key=lambda p: (p[0], p[1], p[2]))
    first, last = (min(walls), max(walls)) if walls else (0.0, 0.0)
    seq = 0

    def env() -> tuple:
        nonlocal seq
        seq += 1
        return (1, run_id, writer, seq - 1)

    events: list[Event] = [
        RunStart(*env(), ns(first), rank, project=project, name=name, config=config, tags=["tensorboard"],
                 host=Host(hostname=socket.gethostname()), argv=["runlake", "import", "tensorboard"],
                 world_size=world)
    ]
    group: dict[str, float] = {}
    key = None
    for step, wall, tag, value in points:
        if (step, wall) != key or tag in group:
            if group:
                events.append(Metrics(*env(), ns(key[1]), rank, step=key[0], values=encode_nonfinite(group)))
            group, key = {}, (step, wall)
        group[tag] = value
    if group:
        events.append(Metrics(*env(), ns(key[1]), rank, step=key[0], values=encode_nonfinite(group)))
    for step, wall, logger, level, text in sorted(texts, key=lambda t: (t[1], t[0])):
        levelno = {"DEBUG": 10, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}.get(level, 20)
        events.append(Log(*env(), ns(wall), rank, level=level, message=text, levelno=levelno,
                          logger=logger, step=step))
    for step, wall, tag, uri, meta in sorted(samples, key=lambda t: (t[1], t[0], t[2])):
        events.append(Sample(*env(), ns(wall), rank, name=tag, scores={}, step=step, uri=uri, meta=meta))
    for step, wall, tag, edges, counts, stats in sorted(hists, key=lambda t: (t[0], t[1], t[2])):
        events.append(Histogram(*env(), ns(wall), rank, key=tag, edges=edges, counts=counts, step=step, **stats))
    cache: dict = {}
    cap = media_max_bytes()
    for item in sorted(media, key=lambda m: (m.step, m.wall, m.tag, m.meta.get("index", 0))):
        if item.nbytes > cap:
            continue  # reported in skipped
        try:
            data = load_media(item, cache)
        except (OSError, ValueError) as exc:
            report.append(("WARNING", f"{item.media} {item.tag!r} at step {item.step} not imported: {exc}"))
            continue
        sha = write_blob(run_dir, data)
        events.append(Media(*env(), ns(item.wall), rank, key=item.tag, media=item.media, sha256=sha,
                            bytes=len(data), mime=item.mime, step=item.step, caption=item.caption,
                            meta=item.meta))
    for level, message in report:
        events.append(Log(*env(), ns(last), rank, level=level, message=message,
                          levelno=30 if level == "WARNING" else 20, logger="runlake.import"))
    last_step = max([p[0] for p in points] + [h[0] for h in hists] + [m.step for m in media], default=None)
    events.append(RunEnd(*env(), ns(last), rank, status="finished", exit_reason="imported from TensorBoard",
                         step=last_step, events=seq + 1))
    return events


def import_tensorboard(
    logdir: str | os.PathLike,
    *,
    project: str = "tensorboard",
    root: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    ingest: bool = True,
) -> list[ImportedRun]:
    """Import every TensorBoard run under ``logdir`` as a runlake run.

    Args:
        logdir: a TensorBoard log directory (as passed to ``tensorboard --logdir``).
        project: the runlake project of the imported runs.
        root: the storage root receiving the segments (default: ``resolve_root``'s).
        db: the store file (default: the root's store).
        ingest: run ingest afterwards so the runs are queryable right away.

    Returns:
        One :class:`ImportedRun` per run, in path order: what was imported, what was
        skipped and why, and any torn or corrupt records (the rest is imported).

    Raises:
        ConfigError: ``logdir`` has no TensorBoard event files, or ``project`` is invalid.

    Example:
        >>> for r in import_tensorboard("tb_logs", project="old"):  # doctest: +SKIP
        ...     print(r.name, r.status, r.imported, r.skipped)
    """
    logdir = Path(logdir)
    check_name(project, "project")
    if not logdir.is_dir():
        what = "is a file" if logdir.exists() else "does not exist"
        raise ConfigError(f"{logdir} {what}: pass the directory given to `tensorboard --logdir`")
    dirs = find_run_dirs(logdir)
    if not dirs:
        raise ConfigError(
            f"no TensorBoard event files (events.out.tfevents.*) under {logdir}: pass the "
            f"directory given to `tensorboard --logdir`"
        )
    root_path = local_root(root)
    results = []
    for path, parts in plan_runs(logdir, dirs):
        rel = path.relative_to(logdir).as_posix()
        name = logdir.resolve().name if rel == "." else rel
        run_id = foreign_run_id("tb", project, str(path.resolve()))
        result = ImportedRun(path, run_id, name, "imported")
        config = _summarise(result, parts, logdir)
        results.append(result)
        if not any(p.folder.has_data() for p in parts):
            result.status = "empty"
            continue
        ranks = sorted({p.rank for p in parts})
        report = [("WARNING", f"not imported: {s}") for s in result.skipped]
        report += [("WARNING", p) for p in result.problems] + [("INFO", n) for n in result.notes]
        written = 0
        for rank in ranks:
            writer = foreign_writer(run_id, rank)  # stable: a re-import finds it
            writer_dir = root_path / project / run_id / writer
            if segment_exists(writer_dir):
                continue
            mine = [p for p in parts if p.rank == rank]
            write_segment(writer_dir, _events(run_id, writer, rank, ranks[-1] + 1, project, name, config,
                                               mine, report if rank == 0 else [], root_path / project / run_id))
            written += 1
        if not written:
            result.status = "exists"
    results.sort(key=lambda r: r.path)
    if ingest and any(r.status == "imported" for r in results):
        from runlake.ingest import ingest as run_ingest

        run_ingest(root=root_path, db=db)
    return results
