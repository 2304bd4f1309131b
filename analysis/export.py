"""Exporting runs from the store: Parquet or CSV per table, and TensorBoard event files.

Why it exists: the store is the place to query, but people also hand data to other tools.
:func:`export_table` writes the selected runs' rows of one table with DuckDB's ``COPY ...
TO`` through a read-only connection (the SQL console forbids ``COPY``; this is trusted
local code with a fixed table allow-list and bound parameters). :func:`export_tensorboard`
writes one TensorBoard run directory per runlake run that TensorBoard's own reader loads
with the same values (scalars as float32, TensorBoard's scalar type; histograms with their
stored buckets and statistics; images and audio with their blobs' bytes unchanged).

The store is held only while one table is copied, so ingest is never blocked for long.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from runlake.analysis._common import rows, scalar
from runlake.analysis.runs import resolve_runs
from runlake.schemas.errors import ConfigError
from runlake.store import read_store
from runlake.store.spec import TABLES, VIEWS

__all__ = ["EXPORT_TABLES", "ExportResult", "export_table", "export_tables", "export_tensorboard"]

EXPORT_TABLES: tuple[str, ...] = tuple(sorted(
    [t.name for t in TABLES.values() if t.per_run]
    + [v for v, (_, select) in VIEWS.items() if re.search(r"\brun_id\b", select)]
))
"""Tables (and views) that hold per-run rows and can be exported."""

_ORDER = {
    "metrics": "run_id, rank, step, key, ts",
    "data_items": "run_id, rank, step, ts",
    "runs": "run_id",
    "writers": "run_id, writer",
    "metric_summary": "run_id, key",
    "anomalies": "run_id, detected_at, kind",
}


@dataclass(frozen=True)
class ExportResult:
    """One file written by an export."""

    table: str
    path: Path
    rows: int
    histograms: int = 0
    media: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # TensorBoard: media not written, by reason


def export_table(con, table: str, run_ids: list[str], path: Path, fmt: str) -> int:
    """Copy the rows of ``table`` for ``run_ids`` to ``path`` as Parquet or CSV.

    Returns:
        The number of rows written.

    Raises:
        ConfigError: an unknown table or format.
    """
    if table not in EXPORT_TABLES:
        raise ConfigError(f"cannot export table {table!r}: expected one of {', '.join(EXPORT_TABLES)}")
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"unknown export format {fmt!r}: expected parquet or csv")
    order = _ORDER.get(table, "run_id, rank, ts")
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
    target = str(path).replace("'", "''")
    scope = "run_id IN (SELECT unnest($ids))"
    query = f"SELECT {_select_list(con, table)} FROM {table} WHERE {scope} ORDER BY {order}"
    con.execute(f"COPY ({query}) TO '{target}' ({options})", {"ids": run_ids})  # a write: no result
    return scalar(con, f"SELECT count(*) FROM {table} WHERE {scope}", {"ids": run_ids})


def _select_list(con, table: str) -> str:
    """Every column of ``table``, JSON columns cast to text.

    Why: DuckDB writes a JSON column to Parquet as binary with a JSON annotation that most
    readers (polars, pandas without pyarrow's extension types) load as raw bytes; a JSON
    string is what a user of ``config`` or ``augment`` expects.
    """
    out = []
    for name, kind, *_ in rows(con, f"DESCRIBE SELECT * FROM {table}"):
        col = '"' + name.replace('"', '""') + '"'
        out.append(f"{col}::VARCHAR AS {col}" if str(kind).upper() == "JSON" else col)
    return ", ".join(out)


def export_tables(
    db: str | Path, refs: Iterable[str], out: str | Path, *, fmt: str = "parquet", tables: Iterable[str] | None = None
) -> list[ExportResult]:
    """Export the runs ``refs`` to ``out/<table>.<fmt>``, one file per table.

    Args:
        db: the store file.
        refs: RUN references (id, unique name, or unique id prefix).
        out: the output directory (created if missing).
        fmt: ``"parquet"`` or ``"csv"``.
        tables: which tables; default every table in :data:`EXPORT_TABLES`.

    Returns:
        One :class:`ExportResult` per file written.

    Raises:
        RunNotFoundError, ConfigError, StoreError.
    """
    tables = list(tables or EXPORT_TABLES)
    for t in tables:
        if t not in EXPORT_TABLES:
            raise ConfigError(f"cannot export table {t!r}: expected one of {', '.join(EXPORT_TABLES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with read_store(db) as con:
        run_ids = resolve_runs(con, refs)
    for t in tables:
        path = out / f"{t}.{fmt}"
        with read_store(db) as con:
            rows = export_table(con, t, run_ids, path, fmt)
        results.append(ExportResult(t, path, rows))
    return results


def export_tensorboard(db: str | Path, refs: Iterable[str], out: str | Path, *,
                       root: str | Path | None = None) -> list[ExportResult]:
    """Write each run as a TensorBoard run directory under ``out``.

    Layout: ``out/<run name>/`` (``<name>-<run id>`` when names repeat, the id when the run
    has no name) holds rank 0's metrics and system metrics (``sys/...``), the config as
    hparams (flattened, see :func:`flatten_hparams`) and as a ``config`` text, its
    histograms and its images, audio and text media; other ranks go to
    ``out/<dir>/rank<r>/``. A metric, histogram or media without a step (system samples) is
    placed at its index in time order. Forms: see
    :mod:`runlake.emitter.integrations.tensorboard` (a TensorBoard import exports back with
    the same buckets and bytes). Video, tables and files have no TensorBoard tab; they, and
    media whose blob is missing or fails its checksum, are counted in ``skipped``.

    Args:
        db: the store.
        refs: RUN references.
        out: the output directory.
        root: the storage root holding the blobs (``media.blob`` is relative to it);
            default: the folder holding ``db``.

    Returns:
        One :class:`ExportResult` per directory written (``rows``: scalar points).

    Raises:
        RunNotFoundError, StoreError.
    """
    from runlake.emitter.integrations.tensorboard import EventFileWriter, flatten_hparams

    out = Path(out)
    root = Path(root) if root is not None else Path(db).parent
    with read_store(db) as con:
        run_ids = resolve_runs(con, refs)
        runs = rows(con, "SELECT run_id, name, config FROM runs WHERE run_id IN (SELECT unnest($ids))",
                    {"ids": run_ids})
    names = [r[1] for r in runs]
    results = []
    for run_id, name, config in sorted(runs, key=lambda r: run_ids.index(r[0])):
        dirname = run_id if not name else (name if names.count(name) == 1 else f"{name}-{run_id}")
        base = out / _safe_dir(dirname)
        with read_store(db) as con:
            points_rows = rows(
                con,
                """
                SELECT rank,
                       coalesce(step, row_number() OVER (PARTITION BY rank, key ORDER BY ts) - 1) AS s,
                       epoch(ts) AS wall, key, value
                FROM metrics WHERE run_id = ? ORDER BY rank, s, ts, key
                """,
                [run_id],
            )
        writers: dict[int, EventFileWriter] = {}
        points = 0
        try:
            head = writers[0] = EventFileWriter(base)
            cfg = json.loads(config) if isinstance(config, str) else (config or {})
            if cfg:
                head.hparams(flatten_hparams(cfg))
                head.text("config", "```json\n" + json.dumps(cfg, indent=2, sort_keys=True) + "\n```")
            batch: dict[str, float] = {}
            current = None
            for rank, step, wall, key, value in points_rows:
                if (rank, step, wall) != current:
                    if batch:
                        writers[current[0]].scalars(current[1], batch, current[2])
                    batch, current = {}, (rank, step, wall)
                    if rank not in writers:
                        writers[rank] = EventFileWriter(base / f"rank{rank}")
                if key in batch:  # same key twice at one step and time: keep both points
                    writers[rank].scalars(step, batch, wall)
                    batch = {}
                batch[key] = value
                points += 1
            if batch:
                writers[current[0]].scalars(current[1], batch, current[2])

            def writer(rank: int) -> EventFileWriter:
                if rank not in writers:
                    writers[rank] = EventFileWriter(base / f"rank{rank}")
                return writers[rank]

            hists = _write_histograms(db, run_id, writer)
            media, skipped = _write_media(db, run_id, root, writer)
        finally:
            for w in writers.values():
                w.close()
        results.append(ExportResult("tensorboard", base, points, hists, media, skipped))
    return results


def _write_histograms(db, run_id: str, writer) -> int:
    from runlake.emitter.media import HISTOGRAM_STATS

    with read_store(db) as con:
        found = rows(con, f"""
            SELECT rank, coalesce(step, row_number() OVER (PARTITION BY rank, key ORDER BY ts) - 1) AS s,
                   epoch(ts), key, edges, counts, {", ".join(HISTOGRAM_STATS)}
            FROM histograms WHERE run_id = ? ORDER BY rank, s, ts, key""", [run_id])
    for rank, step, wall, key, edges, counts, *stats in found:
        writer(rank).histogram(step, key, list(edges), list(counts), dict(zip(HISTOGRAM_STATS, stats)), wall)
    return len(found)


def _write_media(db, run_id: str, root: Path, writer) -> tuple[int, dict[str, int]]:
    """Images, audio and text; a plugin-tensor group (``meta`` index/count) as one summary."""
    from runlake.emitter.integrations.tensorboard import write_media

    with read_store(db) as con:
        found = rows(con, """
            SELECT rank, coalesce(step, row_number() OVER (PARTITION BY rank, key ORDER BY ts) - 1) AS s,
                   epoch(ts), key, media, sha256, mime, caption, blob, meta::VARCHAR
            FROM media WHERE run_id = ?
            ORDER BY rank, s, ts, key, try_cast(meta->>'index' AS INTEGER) NULLS FIRST""", [run_id])
    skipped: dict[str, int] = {}
    written = 0
    groups: dict[tuple, list] = {}
    for rank, step, wall, key, media, sha, mime, caption, blob, meta in found:
        if media not in ("image", "audio", "text"):
            skipped[media] = skipped.get(media, 0) + 1
            continue
        try:
            data = (root / blob).read_bytes()
        except OSError:
            skipped["missing blob"] = skipped.get("missing blob", 0) + 1
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            skipped["blob checksum mismatch"] = skipped.get("blob checksum mismatch", 0) + 1
            continue
        meta = json.loads(meta) if meta else {}
        if media != "text" and isinstance(meta.get("index"), int) and isinstance(meta.get("count"), int):
            groups.setdefault((rank, step, wall, key, media), []).append((data, meta, caption))
            continue
        write_media(writer(rank), step, key, media, data, meta, mime, wall)
        written += 1
    for (rank, step, wall, key, media), items in groups.items():
        writer(rank).media_group(step, key, media, items, wall)
        written += len(items)
    return written, skipped


def _safe_dir(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._+=@-]", "_", name).strip(".") or "run"
    return cleaned[:128]
