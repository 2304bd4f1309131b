"""Reading an MLflow SQLite backend read-only (``mode=ro``: never migrated, never written).

The tables read: ``experiments``, ``runs``, ``metrics`` (NaN stored as ``value=0,
is_nan=1``; ±Infinity as ±DBL_MAX, read back here as ±Infinity), ``params``, ``tags``, and
``inputs`` (datasets, counted). Columns of a newer schema are named in the source's notes;
a column an older schema lacks (``metrics.step``, ``is_nan``) takes MLflow's default. A
run whose rows cannot be read (a damaged page) gets ``error`` and the others are read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from runlake.ingest.mlflow_read import HOW, RunInfo, Source, as_int, files_under
from runlake.schemas.errors import ConfigError

__all__ = ["DBL_MAX", "SqliteStore"]

DBL_MAX = 1.7976931348623157e308
"""The SQL store writes ±Infinity as ±DBL_MAX (SQL has no Infinity)."""
_DBL_MAXES = frozenset((DBL_MAX, -DBL_MAX))
_NAN = float("nan")
_INF = float("inf")

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
                raise ConfigError(f"{path} is not a SQLite database: {HOW}")
        self.con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self.columns = {t: {r[1] for r in self.con.execute(f'PRAGMA table_info("{t}")')}
                            for t in _KNOWN if t in tables}
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path} is a damaged SQLite database ({exc}): {HOW}") from exc
        missing = {"experiments", "runs"} - set(self.columns)
        if missing:
            raise ConfigError(f"{path} has no {' or '.join(sorted(missing))} table: not an MLflow "
                              f"backend? {HOW}")
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
                           as_int(start), as_int(end), user=user, artifact_uri=uri,
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
            info.artifacts = sum(1 for _ in files_under(local))
        return info

    def _points(self, info: RunInfo) -> None:
        """The run's points in two scans of its rows: the plain floats straight into
        ``info.add`` (no per-point Python check), then the few that need one (NaN, ±DBL_MAX,
        a value SQLite does not hold as a float)."""
        step, is_nan = self._col("metrics", "step", "0"), self._col("metrics", "is_nan", "0")
        special = f"{is_nan} OR typeof(value) != 'real' OR value IN ({DBL_MAX!r}, {-DBL_MAX!r})"
        sql = f'SELECT {step}, timestamp, "key", value{{}} FROM metrics WHERE run_uuid = ? AND {{}}'
        cursor = self.con.execute(sql.format("", f"NOT ({special})"), (info.run_uuid,))
        while batch := cursor.fetchmany(100_000):
            info.add(batch)
        bad, odd = 0, []
        for s, ts, key, value, nan in self.con.execute(sql.format(f", {is_nan}", f"({special})"),
                                                       (info.run_uuid,)):
            if nan:
                value = _NAN
            elif value in _DBL_MAXES:
                value *= 2  # ±Infinity, as logged
            else:
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    bad += 1
                    continue
            odd.append((s, ts, key, value))
        info.nonfinite = any(v != v or v in (_INF, -_INF) for *_, v in odd)
        info.add(odd)
        if bad:
            info.problems.append(f"{info.where}: {bad} metric value(s) not numbers, skipped")
