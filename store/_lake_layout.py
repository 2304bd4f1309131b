"""The lake's layout on disk: folders, runlake's own files, table schemas, and bad input.

Everything that names a path inside a lake, or turns what is found there into a clear
:class:`StoreError`, lives here; :mod:`runlake.store.lake` tells the story of how the
pieces commit exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import ColumnProperties, DeltaTable, WriterProperties
from deltalake.exceptions import DeltaError, TableNotFoundError

from runlake.schemas.errors import StoreError
from runlake.schemas.objects import is_url
from runlake.store._lake_io import io_for, storage_options
from runlake.store.spec import TABLES, Table, arrow_schema

__all__ = [
    "APP", "COMMITS", "FORMAT", "KILL_ENV", "META", "LakeFiles", "WRITER", "check_table_schema",
    "commits_schema", "delta_schema", "kill_point", "open_table", "sort_indices", "writer",
]

FORMAT = 1
"""The lake format this runlake writes and reads (``_runlake/lake.json``). A newer one is
refused: its rules (hidden columns, commits) may differ from the ones read here."""

APP = "runlake-ingest"
"""The application id of ingest's Delta transactions (issue 11 adds one per shard)."""

COMMITS = "_commits"
"""The table holding one row per complete chunk, written last."""

META = "_runlake"
_INFO = f"{META}/lake.json"
_READERS = f"{META}/readers"
HIDDEN = (pa.field("_app", pa.string(), False), pa.field("_chunk", pa.int64(), False))

KILL_ENV = "RUNLAKE_LAKE_KILL_AT"
"""Test hook: ``<point>`` or ``<point>@<n>`` (the n-th time) SIGKILLs this process there."""

WRITER = WriterProperties(compression="ZSTD")
"""For tables without a spec (``_commits``)."""
_DELTA = ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED")
_SPLIT = ColumnProperties(dictionary_enabled=False, encoding="BYTE_STREAM_SPLIT")
_WRITERS: dict[str, WriterProperties] = {}
ROW_GROUP = 122_880
"""Rows per Parquet row group: DuckDB's own row-group size, so its scans split into as many
parallel tasks (and prune as finely) as on the DuckDB file; 1M-row groups made the curve
query 2.3x slower than the file's."""


def writer(name: str) -> WriterProperties:
    """zstd, with integers and timestamps delta-encoded (sorted steps and times cost ~0
    bytes: 2.1 B/point with dictionaries) and doubles byte-stream-split (~12% smaller)."""
    if name not in TABLES:
        return WRITER
    if name not in _WRITERS:
        props = {c.name: _DELTA for c in TABLES[name].columns
                 if c.duck in ("BIGINT", "INTEGER", "TIMESTAMP")}
        props.update({c.name: _SPLIT for c in TABLES[name].columns if c.duck == "DOUBLE"})
        props["_chunk"] = _DELTA
        _WRITERS[name] = WriterProperties(compression="ZSTD", column_properties=props,
                                          max_row_group_size=ROW_GROUP)
    return _WRITERS[name]
_REBUILD = "run `runlake ingest --rebuild` (the lake is rebuilt from the segments, which hold " \
           "every point)"
_STALE_TMP_S = 600.0
_kill_counts: dict[str, int] = {}


def kill_point(point: str) -> None:
    """SIGKILL this process here when ``$RUNLAKE_LAKE_KILL_AT`` names ``point``."""
    want = os.environ.get(KILL_ENV)
    if not want:
        return
    name, _, nth = want.partition("@")
    if name != point:
        return
    _kill_counts[point] = seen = _kill_counts.get(point, 0) + 1
    if seen >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def delta_schema(name: str) -> pa.Schema:
    """The Delta schema of store table ``name``: the spec's stored columns + hidden ones."""
    return pa.schema(list(arrow_schema(name, plain=True)) + list(HIDDEN))


def commits_schema() -> pa.Schema:
    return pa.schema([pa.field("app", pa.string(), False), pa.field("chunk", pa.int64(), False),
                      pa.field("committed_at", pa.timestamp("us"), False),
                      pa.field("rows", pa.int64(), False)])


class LakeFiles:
    """The paths of one lake (a folder, or an ``s3://`` URL), its own files under
    ``_runlake/``, and the checks of what lies in it. File I/O goes through
    :mod:`runlake.store._lake_io`, the same methods for a folder and a bucket."""

    def __init__(self, path: Path | str) -> None:
        self.io = io_for(path)
        self.path = self.io.path  # a Path, or the URL string
        self.is_url = self.io.url
        self.meta = self.io.join(META)
        self.info = self.io.join(_INFO)

    def table(self, name: str) -> Path | str:
        return self.io.join(name)

    def names(self) -> list[str]:
        return [*TABLES, COMMITS]

    def exists(self) -> bool:
        """Whether a lake is here: locally its ``_runlake/`` folder; on a bucket (no
        folders) its ``lake.json``, written last when a lake is made."""
        if self.is_url:
            return self.io.read_text(_INFO) is not None
        return self.io.has(META)

    def make(self) -> None:
        """Create the lake's folder (nothing to create on a bucket)."""
        if not self.is_url:
            self.path.mkdir(parents=True, exist_ok=True)

    def has_table(self, name: str) -> bool:
        return self.io.has(f"{name}/_delta_log")

    def check_format(self) -> str | None:
        """Refuse a lake written by a newer runlake, or a damaged ``lake.json``; returns the
        lake's id (a new one whenever the lake is made again, e.g. rebuilt)."""
        try:
            text = self.io.read_text(_INFO)
            if text is None:
                if self.io.has(META) and any(self.has_table(n) for n in self.names()):
                    raise StoreError(f"the lake {self.path} has no {self.info}: it was not "
                                     f"made by runlake, or that file was removed; {_REBUILD}")
                return None
            info = json.loads(text)
            fmt = int(info["format"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read {self.info} ({exc}): the lake's format record is "
                             f"damaged; {_REBUILD}") from None
        if fmt > FORMAT:
            raise StoreError(f"the lake {self.path} was written by a newer runlake (lake "
                             f"format {fmt}; this runlake reads format {FORMAT}): upgrade "
                             f"runlake (pip install -U runlake)")
        return str(info.get("id", "")) or None

    def write_format(self) -> None:
        """Write ``lake.json`` once (created exclusively: two first writers agree on one)."""
        from runlake import __version__

        self.io.write(_INFO, json.dumps({
            "format": FORMAT, "id": uuid.uuid4().hex, "created_by": f"runlake {__version__}",
            "created_at": time.time()}) + "\n", new=True)

    def check_folders(self) -> None:
        """Refuse a folder that is not one of the lake's tables (nothing is guessed). Not
        on a bucket: it would list every data file of the lake."""
        if self.is_url:
            return
        known = {*self.names(), META}
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else ():
            if entry.is_dir() and entry.name not in known and not entry.name.startswith("."):
                raise StoreError(
                    f"unknown folder {entry} in the lake: not a table of this runlake "
                    f"(written by a newer runlake? upgrade runlake; otherwise move it out of "
                    f"{self.path})")

    def clean_temp_commits(self) -> list[str]:
        """Remove temp commit files a killed writer left in a ``_delta_log`` (Delta never
        reads them: the commit they belonged to did not happen). Fresh ones are left to
        their writer, who may still be renaming them."""
        removed = []
        now = time.time()
        for name in self.names():
            for rel, mtime in list(self.io.files(f"{name}/_delta_log", ".tmp")):
                if now - mtime > _STALE_TMP_S:
                    self.io.delete(rel)
                    removed.append(rel)
        return removed

    # -- reader leases (``_runlake/readers/``) ------------------------------------------
    def write_lease(self, name: str, text: str) -> str:
        """Write the reader lease ``name``; returns its key for :meth:`remove_lease`."""
        rel = f"{_READERS}/{name}"
        self.io.write(rel, text)
        return rel

    def leases(self) -> Iterator[tuple[str, str | None]]:
        """``(key, text)`` of every reader lease (text None: gone or being written)."""
        for rel, _mtime in list(self.io.files(_READERS, ".json")):
            try:
                yield rel, self.io.read_text(rel)
            except (OSError, StoreError):
                yield rel, None

    def remove_lease(self, key: str) -> None:
        self.io.delete(key)


def _damaged_commit(path: Path | str) -> Path | None:
    """The first commit file of a table's log that is not JSON lines (cut short); local
    tables only (object storage writes a commit whole or not at all)."""
    if is_url(path):
        return None
    log = Path(path) / "_delta_log"
    for file in sorted(log.glob("[0-9]" * 20 + ".json")):
        try:
            for line in file.read_bytes().splitlines():
                if line.strip():
                    json.loads(line)
        except ValueError:
            return file
    return None


def table_error(path: Path, exc: BaseException) -> StoreError:
    """A Delta failure on table ``path`` as a one-line StoreError naming what to run."""
    bad = _damaged_commit(path)
    if bad is not None:
        return StoreError(f"the lake table {path} has a half-written commit {bad} (cut by a "
                          f"copy, a full disk or a crash of the machine): {_REBUILD}")
    detail = " ".join(str(exc).split())[:300]
    missing = "No such file" in detail or "NotFound" in detail or "not found" in detail
    what = "a data file its log references is missing" if missing else "it cannot be read"
    return StoreError(f"the lake table {path}: {what} ({detail}); {_REBUILD}")


def open_table(path: Path, version: int | None = None) -> DeltaTable:
    """The Delta table at ``path``, or a StoreError naming it and what to run."""
    try:
        return DeltaTable(str(path), version=version, storage_options=storage_options(path))
    except TableNotFoundError as exc:
        raise StoreError(f"the lake table {path} is missing (its folder or _delta_log was "
                         f"removed): {_REBUILD}") from exc
    except (DeltaError, OSError, ValueError) as exc:
        raise table_error(path, exc) from exc


def check_table_schema(dt: DeltaTable, name: str, path: Path) -> list[pa.Field]:
    """Columns the spec has and the table lacks (to add); a column the spec does not know
    means a newer runlake wrote the table: refused."""
    want = delta_schema(name) if name != COMMITS else commits_schema()
    have = {f.name for f in dt.schema().to_arrow()}
    extra = have - set(want.names)
    if extra:
        raise StoreError(f"the lake table {path} has columns this runlake does not know "
                         f"({', '.join(sorted(extra))}): it was written by a newer runlake; "
                         f"upgrade runlake (pip install -U runlake)")
    return [f for f in want if f.name not in have]


def _codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """Dense non-negative int64 codes ordering ``col`` like its values (nulls last)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.dictionary_encode(arr)
    if pa.types.is_dictionary(arr.type):
        rank = pc.rank(arr.dictionary, sort_keys="ascending").to_numpy().astype(np.int64) - 1
        idx = arr.indices.fill_null(len(rank)).to_numpy(zero_copy_only=False)
        rank = np.append(rank, len(rank))  # null -> last
        return rank[idx], len(rank)
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.int8())
    values = pc.cast(arr, pa.int64()) if not pa.types.is_int64(arr.type) else arr
    if len(values) == 0:
        return np.zeros(0, np.int64), 1
    lo, hi = pc.min_max(values).values()
    lo, hi = (lo.as_py() or 0), (hi.as_py() or 0)
    a = values.fill_null(hi + 1).to_numpy(zero_copy_only=False) - lo
    return a, hi + 2 - lo


def sort_indices(tbl: pa.Table, columns: tuple[str, ...]) -> np.ndarray | None:
    """Row order of ``tbl`` sorted by ``columns`` (None: already sorted). One stable int64
    argsort over a composite code when the columns' ranges fit (the usual case), else a
    lexsort; strings are ranked through their dictionary, so nothing runs per row in Python."""
    cols = [c for c in columns if c in tbl.column_names]
    if not cols or tbl.num_rows < 2:
        return None
    parts = [_codes(tbl[c]) for c in cols]
    span = 1
    for _, r in parts:
        span *= r
    if span < 2**62:
        comp = parts[0][0].astype(np.int64, copy=True)
        for a, r in parts[1:]:
            comp *= r
            comp += a
        if bool(np.all(comp[1:] >= comp[:-1])):
            return None
        return np.argsort(comp, kind="stable")
    return np.lexsort([a for a, _ in reversed(parts)])


def table_kind(name: str) -> str:
    return "commits" if name == COMMITS else TABLES[name].kind


def spec_table(name: str) -> Table | None:
    return TABLES.get(name)


def delta_config() -> dict[str, Any]:
    """Table properties: checkpoints every 100 commits, logs kept 7 days."""
    return {"delta.checkpointInterval": "100", "delta.logRetentionDuration": "interval 7 days"}
