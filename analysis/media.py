"""Media and histograms of runs: the queries behind the dashboard's Media view, and the one
safe way to read a media blob's bytes.

Queries (each takes an open read-only connection, like the rest of ``analysis``):

* :func:`media_overview`: which keys the runs logged media and histograms under (one
  connection for the view's first draw); with no runs given, the newest runs that have any.
* :func:`media_steps`: the steps a media key was logged at, thinned evenly to a bound (a
  slider of 100,000 positions helps nobody).
* :func:`media_at`: each run's items of a key at the step nearest a chosen one, with the
  quality scores that describe them (``meta.scores``, and the ``samples`` rows of the same
  run, step and name).
* :func:`histogram_series`: a histogram key over steps, at most ``max_steps`` evenly spaced
  rows per run (first and last included), and :func:`heatmap_cells`, its buckets as cells.

Reading a blob (:func:`read_blob`): the ``media.blob`` column is data in a file anyone with
the store can edit, so it is never trusted as a path. It must be the canonical
``.../blobs/<sha[:2]>/<sha>`` of the row's own checksum, relative, without ``.`` or ``..``;
resolved (links followed) it must stay inside the root; the file must be a regular file no
bigger than the cap; and the bytes read must hash to the row's SHA-256. Any failure is a
:class:`Blob` with a one-line ``problem`` and no bytes: a damaged blob is reported, never
shown as something it is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import polars as pl

from runlake.analysis._common import frame, records, rows, run_scope
from runlake.schemas.blobs import BLOBS_DIR, is_sha256
from runlake.schemas.objects import is_url

__all__ = [
    "Blob",
    "MAX_SHOWN_BYTES",
    "MAX_SLIDER_STEPS",
    "blob_root",
    "heatmap_cells",
    "histogram_series",
    "media_at",
    "media_overview",
    "media_steps",
    "read_blob",
]

MAX_SHOWN_BYTES = 64 * 2**20
"""Largest blob the dashboard reads to show (a browser tab is no place for a 256 MiB video)."""
MAX_SLIDER_STEPS = 500
"""Most steps a key's step slider offers (evenly spaced, first and last kept)."""
_TABLES = ("media", "histograms")


def _has_tables(con) -> bool:
    """Whether the store has the media tables (a store from before migration 3 has not,
    until ``runlake ingest`` upgrades it)."""
    found = rows(con, "SELECT count(DISTINCT table_name) FROM information_schema.tables "
                      "WHERE table_name IN ('media', 'histograms')")
    return found[0][0] == len(_TABLES)


def media_overview(con, run_ids: Sequence[str] | None = None, newest: int = 5) -> dict[str, Any]:
    """The media and histogram keys of these runs.

    Args:
        run_ids: the runs; None or empty: the ``newest`` runs (by their latest item) that
            logged media or histograms.

    Returns:
        ``{"runs": [...], "media": [{key, media, runs, items, first_step, last_step}],
        "histograms": [{key, runs, rows, first_step, last_step}], "upgraded": bool}``,
        keys sorted; ``upgraded`` is False for a store without the tables (all else empty).
    """
    if not _has_tables(con):
        return {"runs": list(run_ids or []), "media": [], "histograms": [], "upgraded": False}
    ids = list(run_ids or [])
    if not ids:
        ids = [r[0] for r in rows(con, """
            SELECT run_id FROM (SELECT run_id, max(ts) AS t FROM media GROUP BY run_id
                                UNION ALL SELECT run_id, max(ts) FROM histograms GROUP BY run_id)
            GROUP BY run_id ORDER BY max(t) DESC, run_id LIMIT ?""", [int(newest)])]
    where, params = run_scope(ids)
    media = records(con, f"""
        SELECT key, media, count(DISTINCT run_id) AS runs, count(*) AS items,
               min(step) AS first_step, max(step) AS last_step
        FROM media WHERE {where} GROUP BY key, media ORDER BY key, media""", params)
    hists = records(con, f"""
        SELECT key, count(DISTINCT run_id) AS runs, count(*) AS rows,
               min(step) AS first_step, max(step) AS last_step
        FROM histograms WHERE {where} GROUP BY key ORDER BY key""", params)
    return {"runs": ids, "media": media, "histograms": hists, "upgraded": True}


def media_steps(con, run_ids: Sequence[str], key: str, limit: int = MAX_SLIDER_STEPS) -> list[int]:
    """The distinct steps ``key`` has media at in these runs, ascending, thinned evenly
    to at most ``limit`` (first and last kept). Items logged without a step are left out."""
    where, params = run_scope(run_ids)
    steps = [r[0] for r in rows(con, f"SELECT DISTINCT step FROM media WHERE key = ? AND "
                                     f"step IS NOT NULL AND {where} ORDER BY step",
                                [key, *params])]
    return _thin(steps, limit)


def _thin(values: list, limit: int) -> list:
    """``limit`` evenly spaced members of ``values`` (all when there are no more)."""
    n = len(values)
    if n <= limit:
        return values
    if limit < 2:
        return values[-1:]
    return [values[round(k * (n - 1) / (limit - 1))] for k in range(limit)]


def media_at(con, run_ids: Sequence[str], key: str, step: int | None,
             per_run: int = 16) -> list[dict[str, Any]]:
    """Each run's items of ``key`` at the step nearest ``step`` (a tie takes the lower
    step; None: the last step), at most ``per_run`` per run, by rank then time.

    Returns:
        One dict per item: ``run_id, rank, step, ts, media, sha256, bytes, mime, caption,
        name, blob, meta`` (a dict) and ``scores`` (a dict: ``meta["scores"]`` overlaid with
        the ``samples`` scores of the same run and step whose name is the item's ``name``,
        or its key when it has no name).
    """
    where, params = run_scope(run_ids)
    if step is None:
        pick, pick_params = "SELECT run_id, max(step) AS step FROM m GROUP BY run_id", []
    else:
        pick, pick_params = ("""SELECT run_id, step FROM (SELECT DISTINCT run_id, step FROM m)
            QUALIFY row_number() OVER (PARTITION BY run_id
                ORDER BY abs(step::DOUBLE - ?) NULLS LAST, step) = 1""", [float(step)])
    found = records(con, f"""
        WITH m AS (SELECT * FROM media WHERE key = ? AND {where}),
        pick AS ({pick})
        SELECT m.run_id, m.rank, m.step, m.ts, m.media, m.sha256, m.bytes, m.mime, m.caption,
               m.name, m.blob, m.meta
        FROM m JOIN pick ON m.run_id = pick.run_id AND m.step IS NOT DISTINCT FROM pick.step
        QUALIFY row_number() OVER (PARTITION BY m.run_id ORDER BY m.rank, m.ts) <= ?
        ORDER BY m.run_id, m.rank, m.ts""", [key, *params, *pick_params, int(per_run)])
    for item in found:
        item["meta"] = _json_dict(item["meta"])
        scores = item["meta"].get("scores")
        item["scores"] = dict(scores) if isinstance(scores, dict) else {}
    _add_sample_scores(con, found, key)
    return found


def _json_dict(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _add_sample_scores(con, items: list[dict[str, Any]], key: str) -> None:
    """Overlay the ``samples`` scores logged for the same run, step and name."""
    picked = {(i["run_id"], i["step"]) for i in items if i["step"] is not None}
    if not picked:
        return
    where, params = run_scope(sorted({r for r, _ in picked}))
    steps = sorted({s for _, s in picked})
    found = rows(con, f"SELECT run_id, step, name, key, value FROM samples WHERE {where} "
                      f"AND key <> '' AND step IN ({', '.join('?' * len(steps))})",
                 [*params, *steps])
    scores: dict[tuple, dict[str, float]] = {}
    for run_id, step, name, score, value in found:
        scores.setdefault((run_id, step, name), {})[score] = value
    for item in items:
        extra = scores.get((item["run_id"], item["step"], item["name"] or key))
        if extra:
            item["scores"].update(extra)


def histogram_series(con, run_ids: Sequence[str], key: str, max_steps: int = 200) -> pl.DataFrame:
    """``key``'s histograms over steps: per run its lowest rank, one row per step (the
    latest logged), at most ``max_steps`` rows per run evenly spaced by position (first
    and last step kept). One query.

    Returns:
        ``run_id, step, edges, counts, min, max, num`` (edges and counts as lists), by run
        and step.
    """
    m = max(2, int(max_steps))
    where, params = run_scope(run_ids)
    return frame(con, f"""
        WITH h AS (
            SELECT run_id, rank, step, ts, edges, counts, min, max, num FROM histograms
            WHERE key = ? AND step IS NOT NULL AND {where}
            QUALIFY rank = min(rank) OVER (PARTITION BY run_id)),
        d AS (SELECT * FROM h
              QUALIFY row_number() OVER (PARTITION BY run_id, step ORDER BY ts DESC) = 1),
        n AS (SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY step) - 1 AS j,
                     count(*) OVER (PARTITION BY run_id) AS n FROM d)
        SELECT run_id, step, edges, counts, min, max, num FROM n
        WHERE n <= ? OR j = 0
           OR (j * (? - 1)) // (n - 1) <> ((j - 1) * (? - 1)) // (n - 1)
        ORDER BY run_id, step""", [key, *params, m, m, m])


def heatmap_cells(series: pl.DataFrame, max_cells: int = 60_000) -> pl.DataFrame:
    """The buckets of :func:`histogram_series` rows as heatmap cells.

    Each cell spans its step to the next shown step of its run (x0..x1) and its bucket
    (lo..hi), coloured by ``count``; empty buckets are left out. When a run's cells would
    exceed ``max_cells``, every k-th step is kept. A row whose edges do not fit its counts
    (``len(edges) != len(counts) + 1``) is skipped.

    Returns:
        ``run_id, step, x0, x1, lo, hi, count``.
    """
    schema = {"run_id": pl.String, "step": pl.Int64, "x0": pl.Float64, "x1": pl.Float64,
              "lo": pl.Float64, "hi": pl.Float64, "count": pl.Float64}
    if series.height == 0:
        return pl.DataFrame(schema=schema)
    ok = series.filter(pl.col("edges").list.len() == pl.col("counts").list.len() + 1)
    parts = []
    for (run_id,), part in ok.group_by("run_id", maintain_order=True):
        buckets = int(part["counts"].list.len().max() or 1)
        every = max(1, -(-part.height * buckets // max_cells))
        part = part.gather_every(every).sort("step")
        gap = pl.col("step").diff().fill_null(1).clip(lower_bound=1)
        nxt = pl.col("step").shift(-1)
        part = part.with_columns(
            x0=pl.col("step").cast(pl.Float64),
            x1=pl.when(nxt.is_null()).then(pl.col("step") + gap.last()).otherwise(nxt)
               .cast(pl.Float64),
            lo=pl.col("edges").list.slice(0, pl.col("counts").list.len()),
            hi=pl.col("edges").list.slice(1),
        )
        parts.append(part.select("run_id", "step", "x0", "x1", "lo", "hi",
                                 pl.col("counts").alias("count")))
    if not parts:
        return pl.DataFrame(schema=schema)
    cells = pl.concat(parts).explode(["lo", "hi", "count"])
    return cells.filter(pl.col("count") > 0).cast(schema)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Blob:
    """A blob read for showing: its bytes, or why there are none (one line, plain text)."""

    data: bytes | None
    problem: str | None = None


def _refused(why: str) -> Blob:
    return Blob(None, f"refused: {why}")


def read_blob(root: str | os.PathLike, blob: str, sha256: str, size: int | None = None,
              *, max_bytes: int = MAX_SHOWN_BYTES) -> Blob:
    """The bytes of the blob a ``media`` row names, checked (see the module docstring).

    Args:
        root: the storage root the store was ingested from (``blob`` is relative to it).
        blob: the row's ``blob`` column.
        sha256: the row's ``sha256`` column: the bytes must hash to it.
        size: the row's ``bytes`` column, when known: the file must be that long.
        max_bytes: a bigger file is not read.

    Returns:
        ``Blob(data)``, or ``Blob(None, problem)``: ``refused: ...`` (a path that is not
        the row's blob or leads out of the root), ``blob missing: ...``, ``blob too big
        to show: ...`` or ``blob damaged: ...`` (its bytes do not match the checksum).
    """
    if is_url(root):
        return Blob(None, "blob on object storage: the dashboard shows blobs of a local root")
    if not is_sha256(sha256):
        return _refused(f"the row's sha256 {str(sha256)[:80]!r} is not a blob name")
    text = str(blob or "")
    rel = PurePosixPath(text)
    if (not text or "\\" in text or "\x00" in text or rel.is_absolute()
            or any(p in ("", ".", "..") for p in text.split("/"))
            or rel.parts[-3:] != (BLOBS_DIR, sha256[:2], sha256)):
        return _refused(f"the blob path {text[:200]!r} is not this item's blob "
                        f"(<project>/<run>/{BLOBS_DIR}/{sha256[:2]}/{sha256[:12]}…)")
    base = os.path.realpath(os.fspath(root))
    path = os.path.realpath(os.path.join(base, *rel.parts))
    if os.path.commonpath([base, path]) != base:
        return _refused(f"the blob path {text[:200]!r} leads outside the root {base} "
                        f"(through a link)")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return Blob(None, f"blob missing: {path} (the run's {BLOBS_DIR}/ folder was moved "
                          f"or deleted)")
    except OSError as exc:
        return Blob(None, f"blob unreadable: {path}: {exc.strerror or exc}")
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return _refused(f"{path} is not a regular file")
        if info.st_size > max_bytes:
            return Blob(None, f"blob too big to show: {info.st_size:,} bytes (the dashboard "
                              f"shows up to {max_bytes:,}): {path}")
        data = f.read(max_bytes + 1)
    if (size is not None and len(data) != size) or hashlib.sha256(data).hexdigest() != sha256:
        return Blob(None, f"blob damaged: {path} ({len(data):,} bytes) does not match its "
                          f"checksum {sha256[:12]}… (the file changed after it was logged)")
    return Blob(data)


def blob_root(db: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """The root a store's ``blob`` paths are relative to: ``root`` when given, else the
    folder holding the store (``<root>/runlake.duckdb``, ``<root>/runlake-lake``)."""
    if root is not None:
        return os.fspath(root)
    if is_url(db):
        return str(db).rstrip("/").rsplit("/", 1)[0]
    return str(Path(os.fspath(db)).parent)
