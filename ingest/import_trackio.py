"""Importing a trackio project database (``~/.cache/huggingface/trackio/<project>.db``).

Why: trackio keeps each project in one SQLite file; importing it puts those runs beside
new ones in the same store. The file is opened read-only (``mode=ro``) with the standard
library: trackio need not be installed, and nothing is written to it.

What trackio's tables become (one run per ``run_id``; databases written before trackio
0.24 have no ``run_id``: a run is then its ``run_name``):

* the file's name -> project (trackio's own project name on disk; or ``project=``);
* ``configs.config`` -> config (trackio's ``_Username``/``_Created`` go to
  ``config["_trackio"]``, ``_Group`` -> group); the run starts at ``_Created``;
* ``metrics`` (one row per ``trackio.log`` call: step, timestamp, JSON values) -> metric
  points with that step and timestamp (microseconds, exact); ``"NaN"``/``"Infinity"``
  kept; ``trackio.Histogram`` -> ``histogram`` events (bins -> edges, values -> counts);
  ``trackio.Image``/``Audio``/``Video`` (files under ``<db folder>/media/``) and ``Html``/
  ``Object3D`` -> ``media`` blobs; ``trackio.Table`` -> a table blob (``{"columns",
  "data"}`` JSON); ``trackio.Markdown`` -> a text blob;
* ``system_metrics`` -> system samples (``sys/`` keys); ``alerts`` -> alerts
  (warn -> warning, error -> critical);
* trackio records no end status: each run ends ``finished`` at its last row.

Not imported, and said so on the run (``runlake.import`` log lines) and in the result:
traces, artifacts, strings and other values that are not numbers, media whose file is
missing, tables and columns a newer trackio added.

Idempotence: run id ``foreign_run_id("trackio", project, run_id or run_name)``; importing
twice finds the segment and writes nothing.
"""

from __future__ import annotations

import json
import mimetypes
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

from runlake.ingest.foreign import (
    Envelope,
    Imported,
    foreign_run_id,
    foreign_writer,
    local_root,
    metric_events,
    project_name,
    report_logs,
    segment_exists,
    write_segment,
)
from runlake.emitter.encode_media import Encoded, encode_bytes, encode_table, encode_text, sniff
from runlake.schemas.blobs import media_max_bytes, write_blob
from runlake.schemas.codec import encode_nonfinite
from runlake.schemas.errors import ConfigError, EventValueError
from runlake.schemas.events import Alert, Event, Histogram, Media, RunEnd, RunStart, System
from runlake.schemas.segments import check_name
from runlake.schemas.severity import severity_from_level

__all__ = ["import_trackio"]

_HOW = "pass a trackio project database (~/.cache/huggingface/trackio/<project>.db)"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_TOKENS = ("NaN", "Infinity", "-Infinity")  # trackio's and runlake's non-finite tokens alike
_FILE_MEDIA = {"trackio.image": "image", "trackio.audio": "audio", "trackio.video": "video",
               "trackio.html": "file", "trackio.object3d": "file"}
_KNOWN_TABLES = {"metrics", "configs", "system_metrics", "alerts", "traces", "project_metadata",
                 "pending_uploads", "artifacts", "artifact_versions", "artifact_aliases",
                 "run_artifact_links", "external_run_artifact_links", "sqlite_sequence"}
_KNOWN_COLUMNS = {
    "metrics": {"id", "run_id", "timestamp", "run_name", "step", "metrics", "log_id", "space_id"},
    "configs": {"id", "run_id", "run_name", "config", "created_at"},
    "system_metrics": {"id", "run_id", "timestamp", "run_name", "metrics", "log_id", "space_id"},
    "alerts": {"id", "run_id", "timestamp", "run_name", "title", "text", "level", "step", "alert_id"},
}


def _ns(text: str) -> int:
    """An ISO timestamp (trackio's, UTC) as integer ns, exactly (to the microsecond)."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US * 1000


def _json(raw: Any) -> Any:
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _object_of(raw: Any) -> dict:
    """A row's JSON values (``{key: value}``); ValueError when it is anything else."""
    values = _json(raw)
    if not isinstance(values, dict):
        raise ValueError(f"a {type(values).__name__}, not an object")
    return values


class _Db:
    """The project database, opened read-only; which tables and columns it has."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ConfigError(f"{path} is not a SQLite database: {_HOW}")
        self.con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        self.notes: list[str] = []
        try:
            tables = [r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            self.cols = {t: {r[1] for r in self.con.execute(f'PRAGMA table_info("{t}")')} for t in tables}
            for t in sorted(set(tables) - _KNOWN_TABLES):
                if self.con.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone():
                    self.notes.append(f"table {t}: not known to this importer (newer trackio?); not imported")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path} is a damaged SQLite database ({exc}): {_HOW}") from exc
        if "metrics" not in self.cols and "configs" not in self.cols:
            raise ConfigError(f"{path} has no metrics or configs table: not a trackio project? {_HOW}")
        for t, known in _KNOWN_COLUMNS.items():
            for col in sorted(self.cols.get(t, set()) - known):
                self.notes.append(f"{t}.{col}: a column this importer does not know (newer trackio?); "
                                  f"not imported")
        self.ident = "run_id" if "run_id" in self.cols.get("metrics", self.cols.get("configs", ())) else "run_name"

    def has(self, table: str, col: str | None = None) -> bool:
        return table in self.cols and (col is None or col in self.cols[table])

    def runs(self) -> list[tuple[str, str]]:
        """(identity, run name) of every run, in order of first appearance."""
        parts = [f'SELECT {self.ident}, run_name, {ts} AS t FROM "{t}"' for t, ts in (
            ("metrics", "timestamp"), ("configs", "created_at"), ("system_metrics", "timestamp"),
            ("alerts", "timestamp")) if self.has(t, self.ident) and self.has(t, "run_name")]
        sql = (f"SELECT {self.ident}, max(run_name), min(t) FROM ({' UNION ALL '.join(parts)}) "
               f"WHERE {self.ident} IS NOT NULL GROUP BY 1 ORDER BY 3, 1")
        try:
            return [(i, n or i) for i, n, _ in self.con.execute(sql)]
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: the runs cannot be listed ({exc}): the database is "
                              f"damaged; restore it from a backup") from exc

    def rows(self, table: str, cols: str, ident: str, order: str = "id") -> list[tuple]:
        if not self.has(table, self.ident):
            return []
        return self.con.execute(f'SELECT {cols} FROM "{table}" WHERE {self.ident} = ? ORDER BY {order}',
                                (ident,)).fetchall()

    def count(self, table: str, col: str, ident: str) -> int:
        if not self.has(table, col):
            return 0
        return self.con.execute(f'SELECT count(*) FROM "{table}" WHERE {col} = ?', (ident,)).fetchone()[0]


class _Run:
    """One run read from the database, turned into events (blobs written on the way)."""

    def __init__(self, db: _Db, ident: str, name: str, run_dir: Path, result: Imported) -> None:
        self.db, self.ident, self.name, self.run_dir, self.result = db, ident, name, run_dir, result
        self.media_dir = db.path.parent / "media"
        self.rows: list[tuple[int, int, dict[str, Any]]] = []  # (step, ts, numbers) per log call
        self.others: list[tuple[int, int, type, dict]] = []  # (ts, order, kind, fields)
        self.skipped: dict[str, set[str]] = {}
        self.counts = {"points": 0, "system": 0, "histograms": 0, "media": 0, "alerts": 0}

    def _skip(self, what: str, key: str) -> None:
        self.skipped.setdefault(what, set()).add(key)

    def read(self) -> None:
        cfg = self.db.rows("configs", "config, created_at", self.ident)
        self.config: dict[str, Any] = {}
        try:
            self.config = _json(cfg[-1][0]) if cfg else {}
            if not isinstance(self.config, dict):
                raise ValueError(f"a {type(self.config).__name__}, not an object")
        except (ValueError, TypeError) as exc:
            self.result.problems.append(f"{self.db.path}: config of run {self.ident} unreadable ({exc}); "
                                        f"imported without it")
            self.config = {}
        created = self.config.pop("_Created", None) or (cfg[-1][1] if cfg else None)
        extra = {"run_id": self.ident if self.db.ident == "run_id" else None,
                 "username": self.config.pop("_Username", None), "created": created}
        self.group = self.config.pop("_Group", None)
        self.config["_trackio"] = {k: v for k, v in extra.items() if v is not None}
        self.start = _ns(created) if created else None
        for row_id, ts, step, raw in self.db.rows("metrics", "id, timestamp, step, metrics", self.ident):
            try:
                t, values = _ns(ts), _object_of(raw)
            except (ValueError, TypeError) as exc:
                self.result.problems.append(f"{self.db.path}: metrics row {row_id} unreadable ({exc}); skipped")
                continue
            numbers = {}
            for key, value in values.items():
                if _number(value) or value in _TOKENS:
                    numbers[key] = value
                else:
                    self._value(key, value, step, t)
            if numbers:
                self.rows.append((step, t, numbers))
                self.counts["points"] += len(numbers)
        for row_id, ts, raw in self.db.rows("system_metrics", "id, timestamp, metrics", self.ident):
            try:
                t, values = _ns(ts), _object_of(raw)
            except (ValueError, TypeError) as exc:
                self.result.problems.append(f"{self.db.path}: system_metrics row {row_id} unreadable "
                                            f"({exc}); skipped")
                continue
            numbers = {k: v for k, v in values.items() if _number(v)}
            for k in set(values) - set(numbers):
                self._skip("system values that are not numbers", k)
            if numbers:
                self.others.append((t, len(self.others), System, {"values": numbers}))
                self.counts["system"] += len(numbers)
        if self.db.has("alerts", "title"):
            for ts, title, text, level, step in self.db.rows("alerts", "timestamp, title, text, level, step",
                                                              self.ident):
                try:
                    t = _ns(ts)
                except (ValueError, TypeError) as exc:
                    self.result.problems.append(f"{self.db.path}: alert {title!r} unreadable ({exc}); skipped")
                    continue
                self.others.append((t, len(self.others), Alert, dict(
                    message=f"{title}: {text}" if text else title, alert="trackio",
                    severity=severity_from_level(level), step=step)))
                self.counts["alerts"] += 1
        traces = self.db.count("traces", self.db.ident, self.ident)
        if traces:
            self.result.skipped.append(f"traces: {traces}")
        links = self.db.count("run_artifact_links", self.db.ident, self.ident)
        if links:
            self.result.skipped.append(f"artifacts: {links} link(s)")
        self.rows.sort(key=lambda r: (r[0], r[1]))  # stable: log calls in order within a step
        self.others.sort(key=lambda o: (o[0], o[1]))

    def _value(self, key: str, value: Any, step: int, ts: int) -> None:
        """A value that is not a number: a trackio object becomes an event, the rest is told."""
        if isinstance(value, dict) and "_type" in value:
            kind = value["_type"]
            event = self._object(key, kind, value, step)
            if event is not None:
                self.others.append((ts, len(self.others), *event))
        else:
            self._skip(f"values that are not numbers ({type(value).__name__})", key)

    def _object(self, key: str, kind: str, value: dict, step: int) -> tuple[type, dict] | None:
        """A trackio object (``{"_type": ...}``) as an event kind and its fields, or None."""
        if kind == "trackio.histogram":
            edges, counts = value.get("bins") or [], value.get("values") or []
            if len(edges) != len(counts) + 1 or any(b <= a for a, b in zip(edges, edges[1:])):
                self.result.problems.append(f"histogram {key!r} at step {step}: {len(edges)} bins for "
                                            f"{len(counts)} counts (or not ascending); skipped")
                return None
            self.counts["histograms"] += 1
            return Histogram, dict(key=key, edges=[float(e) for e in edges],
                                   counts=[float(c) for c in counts], step=step, num=float(sum(counts)))
        if kind in _FILE_MEDIA:
            path = self.media_dir / (value.get("file_path") or "")
            try:
                data = path.read_bytes()
            except OSError as exc:
                self.result.problems.append(f"{kind} {key!r} at step {step}: {path} unreadable "
                                            f"({exc.strerror or exc}); skipped")
                return None
            mime = sniff(data) or mimetypes.guess_type(path.name)[0]
            return self._media(key, step, value.get("caption"), path.name,
                               lambda cap: encode_bytes(data, media=_FILE_MEDIA[kind], mime=mime, cap=cap))
        if kind == "trackio.table":
            rows = value.get("_value") or []
            columns: list[str] = []
            for row in rows:
                columns += [c for c in row if c not in columns]
            table = {"columns": columns, "data": [[row.get(c) for c in columns] for row in rows]}
            return self._media(key, step, None, None, lambda cap: encode_table(table, cap=cap))
        if kind == "trackio.markdown":
            def markdown(cap: int) -> Encoded:
                encoded = encode_text(str(value.get("_value", "")), cap=cap)
                encoded.mime = "text/markdown"
                return encoded
            return self._media(key, step, None, None, markdown)
        self._skip(f"objects of type {kind}", key)
        return None

    def _media(self, key: str, step: int, caption: str | None, name: str | None,
               encode: Callable[[int], Encoded]) -> tuple[type, dict] | None:
        """A ``media`` event's fields, its blob written first (the emitter's encoders: the
        same mime sniffing, facts and size cap as ``log_media``)."""
        try:
            blob = encode(media_max_bytes())
        except EventValueError as exc:
            self.result.problems.append(f"media {key!r} at step {step}: {exc}; skipped")
            return None
        sha = write_blob(self.run_dir, blob.data)  # before the segment that refers to it
        self.counts["media"] += 1
        return Media, dict(key=key, media=blob.media, sha256=sha, bytes=len(blob.data), mime=blob.mime,
                           step=step, caption=caption, name=name, meta=blob.meta)

    def events(self, project: str, writer: str) -> Iterator[Event]:
        env = Envelope(self.result.run_id, writer)
        times = [r[1] for r in self.rows] + [o[0] for o in self.others]
        start = self.start if self.start is not None else min(times, default=0)
        end = max([start, *times])
        yield RunStart(*env(), start, 0, project=project, name=self.name, group=self.group,
                       config=self.config, argv=["runlake", "import", "trackio"])
        yield from metric_events(env, 0, ((s, t, encode_nonfinite(v)) for s, t, v in self.rows))
        for ts, _, kind, fields in self.others:
            yield kind(*env(), ts, 0, **fields)
        yield from report_logs(env, end, 0, self.result)
        yield RunEnd(*env(), end, 0, status="finished", exit_reason="imported from trackio",
                     step=self.rows[-1][0] if self.rows else None, events=env.seq + 1)


def _number(value: Any) -> bool:
    return value.__class__ in (int, float, bool)


def import_trackio(
    db_path: str | os.PathLike,
    *,
    project: str | None = None,
    root: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    ingest: bool = True,
) -> list[Imported]:
    """Import every run of a trackio project database as a runlake run.

    Args:
        db_path: the project's ``.db`` file (trackio keeps them in
            ``~/.cache/huggingface/trackio/``; media in the ``media/`` folder beside it).
        project: the runlake project (default: the database's project name).
        root: the storage root receiving the segments (default: ``resolve_root``'s).
        db: the store file (default: the root's store).
        ingest: run ingest afterwards so the runs are queryable right away.

    Returns:
        One :class:`Imported` per run, in order of first appearance: ``imported``,
        ``exists`` (imported before) or ``skipped`` (unreadable: ``problems``).

    Raises:
        ConfigError: the file is missing, not SQLite, not a trackio database, or damaged
            beyond listing its runs; or ``project`` is invalid.

    Example:
        >>> import_trackio("~/.cache/huggingface/trackio/my-project.db")  # doctest: +SKIP
    """
    path = Path(db_path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"{path} {what}: {_HOW}")
    if project is not None:
        try:
            check_name(project, "project")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    root_path = local_root(root)
    source = _Db(path)
    proj = project or project_name(path.stem, "trackio")
    results = []
    for ident, name in source.runs():
        run_id = foreign_run_id("trackio", proj, ident)
        result = Imported(f"{path} run {ident}", run_id, name, "imported")
        results.append(result)
        writer = foreign_writer(run_id)
        run_dir = root_path / proj / run_id
        if segment_exists(run_dir / writer):
            result.status = "exists"
            continue
        run = _Run(source, ident, name, run_dir, result)
        try:
            run.read()
        except sqlite3.DatabaseError as exc:
            result.status = "skipped"
            result.problems.append(f"{path}: run {ident} unreadable ({exc})")
            continue
        result.counts = {k: v for k, v in run.counts.items() if v}
        result.skipped += [f"{what}: {', '.join(sorted(keys)[:5])}{' ...' if len(keys) > 5 else ''}"
                           for what, keys in sorted(run.skipped.items())]
        result.notes += source.notes
        write_segment(run_dir / writer, run.events(proj, writer))
    if ingest and any(r.status == "imported" for r in results):
        from runlake.ingest import ingest as run_ingest

        run_ingest(root=root_path, db=db)
    return results
