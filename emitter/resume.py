"""Resuming a run as a new attempt: find the run, the attempt number and the next step.

A resumed process writes into the same run directory under a new writer id whose attempt
is one more than the highest attempt of the run's existing writers (of this rank, when
this rank wrote before). Steps continue from one past the last metrics step this rank
wrote, read back from its segments (whole frames only; a torn tail is ignored). Existing
segments are only read, never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runlake.schemas.codec import decode_lines
from runlake.schemas.events import Metrics, MetricsBlock, RunStart
from runlake.schemas.segments import (
    OPEN_SUFFIX,
    FrameReader,
    iter_frames,
    parse_writer_id,
    segment_seq,
)

__all__ = ["ResumePoint", "find_latest_run", "read_events", "resume_point", "writer_dirs"]


@dataclass(frozen=True)
class ResumePoint:
    attempt: int
    resumed_from: str | None
    start_step: int
    last_step: int | None
    name: str | None = None
    group: str | None = None
    config: dict | None = None
    tags: tuple[str, ...] = ()


def writer_dirs(run_dir: Path) -> list[tuple[int, int, Path]]:
    """``(rank, attempt, path)`` of every writer directory in a run directory."""
    out = []
    try:
        entries = list(run_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for p in entries:
        ident = parse_writer_id(p.name)
        if ident is not None and p.is_dir():
            out.append((*ident, p))
    return out


def _segments(writer_dir: Path) -> list[Path]:
    segs = [(segment_seq(p.name), p) for p in writer_dir.iterdir()]
    return [p for seq, p in sorted((s, p) for s, p in segs if s is not None)]


def read_events(writer_dir: Path, *, first_frame_only: bool = False):
    """Yield the events of a writer directory in order, skipping torn or damaged frames.

    Metrics blocks come as :class:`MetricsBlock` (their columns), not unpacked. Frames are
    read by :class:`~runlake.schemas.segments.FrameReader`, as ingest reads them: a damaged
    frame, or one whose header declares an absurd size, is skipped (ingest quarantines it).
    """
    reader = FrameReader()
    for path in _segments(writer_dir):
        try:
            buf = path.read_bytes()
        except OSError:
            continue
        sealed = not path.name.endswith(OPEN_SUFFIX)
        for _span, data in iter_frames(buf, sealed=sealed, reader=reader):
            events, _problems = decode_lines(data, unpack=False)
            yield from events
            if first_frame_only:
                return


def _run_start(run_dir: Path) -> RunStart | None:
    for _rank, _attempt, wdir in sorted(writer_dirs(run_dir)):
        for ev in read_events(wdir, first_frame_only=True):
            if isinstance(ev, RunStart):
                return ev
    return None


def find_latest_run(project_dir: Path, name: str) -> str | None:
    """The id of the most recently started run named ``name`` in a project folder.

    Run folders are scanned newest first (ids are time-sortable; folder mtime breaks ties
    for explicit ids); the first whose run_start carries ``name`` wins.
    """
    try:
        runs = [p for p in project_dir.iterdir() if p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return None
    best: tuple[float, str] | None = None
    for run_dir in runs:
        start = _run_start(run_dir)
        if start is None or start.name != name:
            continue
        key = (float(start.ts) / (1e9 if isinstance(start.ts, int) else 1.0), run_dir.name)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]


def resume_point(run_dir: Path, rank: int) -> ResumePoint:
    """Attempt number, previous writer and first step for ``rank`` resuming ``run_dir``."""
    writers = writer_dirs(run_dir)
    mine = [w for w in writers if w[0] == rank]
    pool = mine or writers
    if not pool:
        return ResumePoint(attempt=0, resumed_from=None, start_step=0, last_step=None)
    top = max(a for _r, a, _p in pool)
    previous = max((w for w in pool if w[1] == top), key=lambda w: w[2].stat().st_mtime)
    start = _run_start(run_dir)
    last: int | None = None
    for _r, _a, wdir in mine:
        for ev in read_events(wdir):
            if ev.__class__ is MetricsBlock:
                step = max(ev.steps, default=None)
            elif ev.__class__ is Metrics:
                step = ev.step
            else:
                continue
            if step is not None and (last is None or step > last):
                last = step
    return ResumePoint(
        attempt=top + 1,
        resumed_from=previous[2].name,
        start_step=0 if last is None else min(last + 1, 2**63 - 1),  # int64 at most
        last_step=last,
        name=None if start is None else start.name,
        group=None if start is None else start.group,
        config=None if start is None else dict(start.config),
        tags=() if start is None else tuple(start.tags),
    )
