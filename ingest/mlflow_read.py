"""Reading MLflow's two local backends directly, without MLflow installed.

Why directly: MLflow 3.13+ refuses to open a file store (``mlruns/``) unless
``MLFLOW_ALLOW_FILE_STORE=true``, and opening a SQLite backend with MLflow runs its
migrations, changing the file. This module reads both formats as they are on disk and
never writes to them (SQLite is opened ``mode=ro``).

* File store: ``<mlruns>/<experiment_id>/meta.yaml`` (the experiment) and
  ``<experiment_id>/<run_uuid>/`` with ``meta.yaml`` (status, times, name), ``params/<key>``
  and ``tags/<key>`` (one file each, the value as text; a key ``a/b`` is a subfolder) and
  ``metrics/<key>`` (one line per point: ``<timestamp ms> <value> [<step> [<dataset> <digest>]]``).
  ``.trash/`` holds deleted experiments.
* SQLite: the tables ``experiments``, ``runs``, ``metrics`` (NaN stored as ``value=0,
  is_nan=1``; ±Infinity as ±DBL_MAX, read back as ±Infinity here), ``params``, ``tags``
  and ``inputs`` (datasets, counted).

:func:`open_source` returns a :class:`Source`: ``infos()`` lists the runs cheaply (meta
only), ``load(info)`` reads one run's params, tags and points, so one run's points are in
memory at a time. Damage never stops the rest: a torn metrics line, a missing meta.yaml
or an unreadable table becomes a message on the run (``problems``), or ``error`` when the
run cannot be read at all.
"""

from __future__ import annotations

import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from runlake.schemas.errors import ConfigError

__all__ = ["FileStore", "RunInfo", "Source", "SqliteStore", "open_source"]

STATUS_OF_INT = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
"""The file store's integer ``status`` (MLflow's RunStatus enum) as the SQL store's text."""

DBL_MAX = 1.7976931348623157e308
"""The SQL store writes ±Infinity as ±DBL_MAX (SQL has no Infinity)."""
_DBL_MAXES = frozenset((DBL_MAX, -DBL_MAX))
_NAN = float("nan")

_HOW = ("pass an MLflow file store (the mlruns/ folder holding <experiment id>/meta.yaml) "
        "or a SQLite backend (sqlite:///path/to/mlflow.db or the .db path)")


@dataclass
class RunInfo:
    """One MLflow run: its metadata, then (after ``Source.load``) its data."""

    run_uuid: str
    experiment_id: str
    experiment: str
    name: str | None = None
    status: str | None = None  # FINISHED | FAILED | KILLED | RUNNING | SCHEDULED; None: unknown
    start_ms: int | None = None
    end_ms: int | None = None
    deleted: str | None = None  # why it is not imported: "run deleted" / "experiment deleted"
    user: str | None = None
    artifact_uri: str | None = None
    where: str = ""  # the folder or table it came from, for messages
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    rows: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)  # (step, ts ms) -> points
    repeats: list[tuple[int, int, str, float]] = field(default_factory=list)  # a key twice at one (step, ts)
    points: int = 0
    nonfinite: bool = False  # some value is NaN or ±Infinity
    artifacts: int = 0
    datasets: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # unreadable: nothing of it is imported

    def add(self, points: list[tuple[int, int, str, float]]) -> None:
        """Group ``(step, ts_ms, key, value)`` points by step and time (what one
        ``log_metrics`` call wrote); a key seen again at the same step and time is kept
        apart in ``repeats`` (MLflow keeps both)."""
        rows, repeats = self.rows, self.repeats
        for point in points:
            step, ts, key, value = point
            row = rows.get((step, ts))
            if row is None:
                rows[(step, ts)] = {key: value}
            elif key in row:
                repeats.append(point)
            else:
                row[key] = value
        self.points += len(points)

    def sorted_rows(self) -> list[tuple[int, int, dict[str, float]]]:
        """``(step, ts_ms, {key: value})`` in step and time order."""
        out = [(s, t, row) for (s, t), row in self.rows.items()]
        out += [(s, t, {k: v}) for s, t, k, v in self.repeats]
        out.sort(key=lambda r: (r[0], r[1]))
        return out


class Source:
    """An opened MLflow backend. ``notes``: what concerns the whole store (deleted
    experiments in ``.trash``, columns a newer schema added), told on every run."""

    label = ""
    notes: list[str]

    def infos(self) -> list[RunInfo]:
        raise NotImplementedError

    def load(self, info: RunInfo) -> RunInfo:
        raise NotImplementedError


def open_source(source: str | os.PathLike) -> Source:
    """The backend ``source`` names: a path (folder: file store; file: SQLite), a
    ``file:`` URI or a ``sqlite:///`` URI.

    Raises:
        ConfigError: it does not exist, is another kind of URI, or is not an MLflow store.
    """
    text = os.fspath(source)
    scheme = urlparse(text).scheme if "://" in text or text.startswith("file:") else ""
    if scheme == "sqlite":
        rest = text.split("://", 1)[1]
        path = Path(unquote(rest[1:] if rest.startswith("/") else rest))  # sqlite:///rel, ////abs
        if not path.is_file():
            raise ConfigError(f"{path} (from {text}) does not exist: {_HOW}")
        return SqliteStore(path)
    if scheme == "file":
        path = Path(unquote(urlparse(text).path))
    elif scheme and len(scheme) > 1:
        raise ConfigError(f"cannot import from {text}: runlake reads MLflow's local backends only; "
                          f"{_HOW} (for a tracking server, copy its database file)")
    else:
        path = Path(text)
    if path.is_dir():
        return FileStore(path)
    if path.is_file():
        return SqliteStore(path)
    raise ConfigError(f"{path} does not exist: {_HOW}")


# -- the file store ------------------------------------------------------------------------

def _yaml(path: Path) -> dict | None:
    """``meta.yaml`` as a dict; None when absent. Raises ValueError when unreadable."""
    try:
        import yaml
    except ModuleNotFoundError as exc:
        raise ConfigError("reading an MLflow file store needs PyYAML (meta.yaml files): "
                          "pip install pyyaml, or import a SQLite backend") from exc
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


_RUN_PARTS = ("metrics", "params", "tags")


class FileStore(Source):
    """An ``mlruns/`` folder, one experiment folder of it, or one run folder."""

    def __init__(self, path: Path) -> None:
        self.path, self.label, self.notes = path, str(path), []

    def _experiments(self) -> list[tuple[Path, dict | None]]:
        try:
            meta = _yaml(self.path / "meta.yaml")
        except ValueError:
            meta = {}
        if meta is not None:
            return [(self.path, meta)]  # an experiment folder (or a run folder: see infos)
        found = []
        for child in sorted(self.path.iterdir()):
            if child.name == ".trash" and child.is_dir():
                n = sum(1 for c in child.iterdir() if c.is_dir())
                if n:
                    self.notes.append(f"{n} deleted experiment(s) in {child} not imported")
            elif child.is_dir() and not child.name.startswith("."):
                try:
                    meta = _yaml(child / "meta.yaml")
                except ValueError as exc:
                    found.append((child, {"_problem": str(exc)}))
                    continue
                if meta is not None or any(_is_run_dir(c) for c in child.iterdir() if c.is_dir()):
                    found.append((child, meta))
        if not found:
            raise ConfigError(f"no MLflow experiments under {self.path}: {_HOW}")
        return found

    def infos(self) -> list[RunInfo]:
        out = []
        for folder, meta in self._experiments():
            if meta and ("run_id" in meta or "run_uuid" in meta):  # a run folder was given
                parent = _yaml(folder.parent / "meta.yaml") or {}
                out.append(self._info(folder, str(meta.get("experiment_id", folder.parent.name)),
                                      str(parent.get("name", folder.parent.name)), parent))
                continue
            problem = None
            if meta is None:
                problem = f"{folder / 'meta.yaml'} is missing: experiment named by its folder"
                meta = {}
            elif "_problem" in meta:
                problem, meta = meta["_problem"] + ": experiment named by its folder", {}
            exp_id = str(meta.get("experiment_id", folder.name))
            exp_name = str(meta.get("name") or folder.name)
            for child in sorted(folder.iterdir()):
                if child.is_dir() and _is_run_dir(child):
                    info = self._info(child, exp_id, exp_name, meta)
                    if problem:
                        info.problems.append(problem)
                    out.append(info)
        out.sort(key=lambda i: (i.experiment_id, i.start_ms or 0, i.run_uuid))
        return out

    def _info(self, run_dir: Path, exp_id: str, exp_name: str, exp_meta: dict) -> RunInfo:
        info = RunInfo(run_dir.name, exp_id, exp_name, where=str(run_dir))
        if exp_meta.get("lifecycle_stage") == "deleted":
            info.deleted = "experiment deleted in MLflow"
        try:
            meta = _yaml(run_dir / "meta.yaml")
        except ValueError as exc:
            meta = None
            info.problems.append(f"{exc}: status and times unknown, imported without an end")
        else:
            if meta is None:
                info.problems.append(f"{run_dir / 'meta.yaml'} is missing: status and times "
                                     f"unknown, imported without an end")
        if meta:
            info.run_uuid = str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name)
            info.name = meta.get("run_name") or None
            status = meta.get("status")
            info.status = STATUS_OF_INT.get(status) if isinstance(status, int) else (
                str(status) if status else None)
            info.start_ms, info.end_ms = _int(meta.get("start_time")), _int(meta.get("end_time"))
            info.user = meta.get("user_id")
            info.artifact_uri = meta.get("artifact_uri")
            if meta.get("lifecycle_stage") == "deleted":
                info.deleted = "run deleted in MLflow"
        return info

    def load(self, info: RunInfo) -> RunInfo:
        run_dir = Path(info.where)
        info.params = self._texts(run_dir / "params", info)
        info.tags = self._texts(run_dir / "tags", info)
        info.name = info.name or info.tags.get("mlflow.runName")
        metrics = run_dir / "metrics"
        for path in sorted(_files(metrics)):
            points = _metric_lines(path, path.relative_to(metrics).as_posix(), info.problems)
            info.nonfinite = info.nonfinite or not all(math.isfinite(p[3]) for p in points)
            info.add(points)
        info.artifacts = sum(1 for _ in _files(run_dir / "artifacts"))
        info.datasets = sum(1 for c in (run_dir / "inputs").glob("*") if c.is_dir())
        return info

    @staticmethod
    def _texts(folder: Path, info: RunInfo) -> dict[str, str]:
        out = {}
        for path in sorted(_files(folder)):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "replace")
                info.problems.append(f"{path}: not UTF-8, undecodable bytes replaced")
            out[path.relative_to(folder).as_posix()] = text
        return out


def _is_run_dir(path: Path) -> bool:
    return (path / "meta.yaml").is_file() and path.name not in ("models", "datasets", "traces") or any(
        (path / part).is_dir() for part in _RUN_PARTS)


def _files(folder: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        out += [Path(dirpath) / f for f in files]
    return out


def _metric_lines(path: Path, key: str, problems: list[str]) -> list[tuple[int, int, str, float]]:
    """The points of one metrics file; damaged lines are skipped and told in ``problems``."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless the file was cut mid-line
    if tail.strip():
        problems.append(f"{path}: last line cut short ({tail[:60]!r}, no newline): dropped")
    out, bad = [], []
    for no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) not in (2, 3, 5):
                raise ValueError(f"{len(parts)} fields")
            out.append((int(parts[2]) if len(parts) > 2 else 0, int(parts[0]), key, float(parts[1])))
        except ValueError:
            bad.append(no)
    if bad:
        problems.append(f"{path}: {len(bad)} unreadable line(s) skipped (line {bad[0]}"
                        f"{'...' if len(bad) > 1 else ''}; expected '<timestamp> <value> <step>')")
    return out


# -- SQLite ----------------------------------------------------------------------------------

_KNOWN = {
    "experiments": {"experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time",
                    "last_update_time", "workspace"},
    "runs": {"run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri",
             "experiment_id", "deleted_time"},
    "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
    "params": {"key", "value", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
}
"""The columns read (or knowingly left: source_*, workspace ...) of each table read."""


class SqliteStore(Source):
    """An MLflow SQLite backend, opened read-only (never migrated)."""

    def __init__(self, path: Path) -> None:
        self.path, self.label, self.notes = path, str(path), []
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ConfigError(f"{path} is not a SQLite database: {_HOW}")
        self.con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self.columns = {t: {r[1] for r in self.con.execute(f'PRAGMA table_info("{t}")')}
                            for t in _KNOWN if t in tables}
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path} is a damaged SQLite database ({exc}): {_HOW}") from exc
        missing = {"experiments", "runs"} - set(self.columns)
        if missing:
            raise ConfigError(f"{path} has no {' or '.join(sorted(missing))} table: not an MLflow "
                              f"backend? {_HOW}")
        for t, cols in self.columns.items():
            if {"run_uuid", "experiment_id"} & _KNOWN[t] - cols and t in ("runs",):
                raise ConfigError(f"{path}: table runs lacks run_uuid/experiment_id: not an MLflow backend")
            for col in sorted(cols - _KNOWN[t]):
                self.notes.append(f"{t}.{col}: a column this importer does not know (newer MLflow "
                                  f"schema?); its values are not imported")
        for t in ("metrics", "params", "tags"):
            if t not in self.columns:
                self.notes.append(f"{path} has no {t} table: runs imported without {t}")
        self.inputs = "inputs" in tables

    def _col(self, table: str, col: str, default: str = "NULL") -> str:
        return f'"{col}"' if col in self.columns.get(table, ()) else default

    def infos(self) -> list[RunInfo]:
        c = lambda col: self._col("runs", col)  # noqa: E731
        e = lambda col: self._col("experiments", col)  # noqa: E731
        try:
            exps = {str(i): (n, s) for i, n, s in self.con.execute(
                f"SELECT experiment_id, {e('name')}, {e('lifecycle_stage')} FROM experiments")}
            rows = self.con.execute(
                f"SELECT run_uuid, experiment_id, {c('name')}, {c('status')}, {c('start_time')}, "
                f"{c('end_time')}, {c('lifecycle_stage')}, {c('user_id')}, {c('artifact_uri')} "
                f"FROM runs ORDER BY experiment_id, {c('start_time')}, run_uuid").fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: the runs cannot be listed ({exc}): the database is "
                              f"damaged; restore it from a backup") from exc
        out = []
        for uuid, exp_id, name, status, start, end, stage, user, uri in rows:
            exp_name, exp_stage = exps.get(str(exp_id), (None, None))
            info = RunInfo(str(uuid), str(exp_id), exp_name or str(exp_id), name or None, status,
                           _int(start), _int(end), user=user, artifact_uri=uri,
                           where=f"{self.path} (runs.run_uuid {uuid})")
            if stage == "deleted":
                info.deleted = "run deleted in MLflow"
            elif exp_stage == "deleted":
                info.deleted = "experiment deleted in MLflow"
            out.append(info)
        return out

    def load(self, info: RunInfo) -> RunInfo:
        try:
            for table, target in (("params", info.params), ("tags", info.tags)):
                if table in self.columns:
                    target.update(self.con.execute(
                        f'SELECT "key", value FROM {table} WHERE run_uuid = ? ORDER BY "key"',
                        (info.run_uuid,)))
            if "metrics" in self.columns:
                self._points(info)
            if self.inputs:
                info.datasets = self.con.execute(
                    "SELECT count(*) FROM inputs WHERE destination_type = 'RUN' AND destination_id = ?",
                    (info.run_uuid,)).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            info.error = f"{info.where}: unreadable ({exc})"
            return info
        info.name = info.name or info.tags.get("mlflow.runName")
        uri = info.artifact_uri or ""
        local = Path(unquote(urlparse(uri).path)) if uri.startswith(("file:", "/")) else None
        if local is not None and local.is_dir():
            info.artifacts = sum(1 for _ in _files(local))
        return info

    def _points(self, info: RunInfo) -> None:
        step, is_nan = self._col("metrics", "step", "0"), self._col("metrics", "is_nan", "0")
        cursor = self.con.execute(
            f'SELECT {step}, timestamp, "key", value, {is_nan} FROM metrics WHERE run_uuid = ?',
            (info.run_uuid,))
        bad = 0
        while batch := cursor.fetchmany(100_000):
            points = []
            for s, ts, key, value, nan in batch:
                if nan:
                    value, info.nonfinite = _NAN, True
                elif value in _DBL_MAXES:
                    value, info.nonfinite = value * 2, True  # ±Infinity, as logged
                elif value.__class__ is not float:
                    try:
                        value = float(value)
                    except (TypeError, ValueError):
                        bad += 1
                        continue
                points.append((s, ts, key, value))
            info.add(points)
        if bad:
            info.problems.append(f"{info.where}: {bad} metric value(s) not numbers, skipped")
