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
* SQLite: :mod:`runlake.ingest.mlflow_sqlite`.

:func:`open_source` returns a :class:`Source`: ``infos()`` lists the runs cheaply (meta
only), ``load(info)`` reads one run's params, tags and points, so one run's points are in
memory at a time. Damage never stops the rest: a torn metrics line, a missing meta.yaml
or an unreadable table becomes a message on the run (``problems``), or ``error`` when the
run cannot be read at all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from operator import itemgetter
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

from runlake.schemas.errors import ConfigError

__all__ = ["FileStore", "HOW", "RunInfo", "STATUS_OF_INT", "Source", "as_int", "files_under", "open_source"]

STATUS_OF_INT = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
"""The file store's integer ``status`` (MLflow's RunStatus enum) as the SQL store's text."""

HOW = ("pass an MLflow file store (the mlruns/ folder holding <experiment id>/meta.yaml) "
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
    rows: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # (step, ts ms, points)
    row_at: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)  # (step, ts ms) -> points
    points: int = 0
    nonfinite: bool = False  # some value is NaN or ±Infinity
    artifacts: int = 0
    datasets: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # unreadable: nothing of it is imported

    def add(self, points: Iterable[tuple[int, int, str, float]]) -> None:
        """Group ``(step, ts_ms, key, value)`` points by step and time (what one
        ``log_metrics`` call wrote, usually consecutive); a key seen again at the same step
        and time becomes a row of its own (MLflow keeps both values)."""
        rows, row_at = self.rows, self.row_at
        at = row = None
        n = 0
        for step, ts, key, value in points:
            n += 1
            if at is None or step != at[0] or ts != at[1]:
                at = (step, ts)
                row = row_at.get(at)
                if row is None:
                    row = row_at[at] = {}
                    rows.append((step, ts, row))
            if key in row:
                rows.append((step, ts, {key: value}))
            else:
                row[key] = value
        self.points += n

    def sorted_rows(self) -> list[tuple[int, int, dict[str, float]]]:
        """``(step, ts_ms, {key: value})`` in step and time order (stable: log order within)."""
        self.rows.sort(key=_STEP_TIME)
        return self.rows

    def forget_points(self) -> None:
        """Drop the points once written: one run's points in memory at a time."""
        self.rows, self.row_at = [], {}


_STEP_TIME = itemgetter(0, 1)


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
            raise ConfigError(f"{path} (from {text}) does not exist: {HOW}")
        from runlake.ingest.mlflow_sqlite import SqliteStore

        return SqliteStore(path)
    if scheme == "file":
        path = Path(unquote(urlparse(text).path))
    elif scheme and len(scheme) > 1:
        raise ConfigError(f"cannot import from {text}: runlake reads MLflow's local backends only; "
                          f"{HOW} (for a tracking server, copy its database file)")
    else:
        path = Path(text)
    if path.is_dir():
        return FileStore(path)
    if path.is_file():
        from runlake.ingest.mlflow_sqlite import SqliteStore  # it builds on this module's RunInfo

        return SqliteStore(path)
    raise ConfigError(f"{path} does not exist: {HOW}")


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


def as_int(value: Any) -> int | None:
    """An integer field (times) as int; None when absent or not a number."""
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
            raise ConfigError(f"no MLflow experiments under {self.path}: {HOW}")
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
            info.start_ms, info.end_ms = as_int(meta.get("start_time")), as_int(meta.get("end_time"))
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
        for path in sorted(files_under(metrics)):
            points = _metric_lines(path, path.relative_to(metrics).as_posix(), info.problems)
            info.nonfinite = info.nonfinite or not all(math.isfinite(p[3]) for p in points)
            info.add(points)
        info.artifacts = sum(1 for _ in files_under(run_dir / "artifacts"))
        info.datasets = sum(1 for c in (run_dir / "inputs").glob("*") if c.is_dir())
        return info

    @staticmethod
    def _texts(folder: Path, info: RunInfo) -> dict[str, str]:
        out = {}
        for path in sorted(files_under(folder)):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "replace")
                info.problems.append(f"{path}: not UTF-8, undecodable bytes replaced")
            out[path.relative_to(folder).as_posix()] = text
        return out


def _is_run_dir(path: Path) -> bool:
    """A run folder: its meta.yaml, or (meta.yaml lost) its metrics/params/tags folders."""
    if path.name in ("models", "datasets", "traces"):  # MLflow 3's other folders of an experiment
        return False
    return (path / "meta.yaml").is_file() or any((path / part).is_dir() for part in _RUN_PARTS)


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (none when it does not exist)."""
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
