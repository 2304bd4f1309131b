"""Finding segment files under a storage root.

The layout is fixed by the contract (:mod:`runlake.schemas.segments`):
``<root>/<project>/<run_id>/<writer>/<seq>.jsonl.zst[.open]``. Discovery only lists and
stats files; it never opens them. Each segment is identified by its ledger key (the
*sealed* path relative to the root), so an open segment and the same segment after the
writer sealed it by rename are one and the same entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runlake.schemas.segments import OPEN_SUFFIX, segment_key, segment_seq

__all__ = ["SegmentFile", "discover"]


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One segment as seen on disk during discovery."""

    path: Path
    key: str
    project: str
    run_id: str
    writer: str
    seq: int
    sealed: bool
    size: int

    @property
    def sealed_path(self) -> Path:
        """Where the segment lives once sealed (itself when already sealed)."""
        p = str(self.path)
        return Path(p[: -len(OPEN_SUFFIX)]) if p.endswith(OPEN_SUFFIX) else self.path


def _subdirs(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []  # removed while we walked: nothing to read there


def discover(root: Path) -> list[SegmentFile]:
    """List every segment under ``root``, sorted by (project, run, writer, seq).

    When both ``N.jsonl.zst.open`` and ``N.jsonl.zst`` are listed (a rename racing the
    walk), only the sealed one is kept.

    Args:
        root: the storage root.

    Returns:
        The segments found; an empty list when the root holds none.
    """
    found: dict[str, SegmentFile] = {}
    for project in _subdirs(str(root)):
        for run in _subdirs(project.path):
            for writer in _subdirs(run.path):
                try:
                    entries = list(os.scandir(writer.path))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    seq = segment_seq(entry.name)
                    if seq is None:
                        continue
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # sealed (renamed) between listing and stat
                    path = Path(entry.path)
                    sealed = not entry.name.endswith(OPEN_SUFFIX)
                    key = segment_key(path, root)
                    if key in found and found[key].sealed and not sealed:
                        continue
                    found[key] = SegmentFile(
                        path, key, project.name, run.name, writer.name, seq, sealed, size
                    )
    return sorted(found.values(), key=lambda s: (s.project, s.run_id, s.writer, s.seq))
