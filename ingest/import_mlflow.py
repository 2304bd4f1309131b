"""Importing MLflow runs (a file store ``mlruns/`` or a SQLite backend) into the store.

Why: teams keep years of MLflow runs, and MLflow 3.13+ no longer opens ``mlruns/``
folders by default; once imported they sit beside new runs in the same store, queried the
same way. :mod:`runlake.ingest.mlflow_read` reads both formats directly (MLflow need not
be installed; SQLite is opened read-only, never migrated); this module turns each run into
ordinary events, one sealed segment per run (:mod:`runlake.ingest.foreign`), then runs
the normal ingest.

What each MLflow field becomes:

* experiment name -> project (``my exp/1`` -> ``my-exp-1``; or ``project=``);
  ``mlflow.runName`` (the run's name) -> name; ``mlflow.parentRunId`` -> group (the parent's
  name), so nested runs group under their parent;
* params -> config. MLflow keeps params as text (``str(value)``); a param becomes a number,
  bool, null, list or dict when its text is exactly what Python's ``str`` writes for that
  value (``"3"`` -> 3, ``"0.001"`` -> 0.001, ``"True"`` -> true), so nothing is lost and
  comparisons and plots treat numbers as numbers; anything else (``"1e-4"``, ``"adam"``,
  ``"007"``) stays a string;
* the run's own facts and ``mlflow.*`` system tags -> ``config["_mlflow"]`` (run_id,
  experiment_id, experiment, user, status, artifact_uri, then ``source.name``, ``user``,
  ``parentRunId`` ... without the ``mlflow.`` prefix); ``mlflow.note.content`` -> the run's
  notes (an ``update`` event);
* user tags -> tags, as ``key=value`` (``key`` alone when the value is empty);
* metrics -> metric points with their step and timestamp exactly (milliseconds -> the same
  instant in ns); NaN and ±Infinity kept (the SQL store's ±DBL_MAX, its encoding of
  ±Infinity, is read back as ±Infinity);
* status FINISHED / FAILED / KILLED -> ``run_end`` finished / failed / killed at
  ``end_time``; RUNNING / SCHEDULED -> no ``run_end`` (the run shows ``crashed`` once
  silent; a later import does not add what it logs afterwards: import finished runs).

Not imported, and said so on the run (``runlake.import`` log lines) and in the result:
artifacts (files; their count and location), datasets (inputs), deleted runs and
experiments (``status="skipped"``). Damage (a metrics file cut mid-line, a missing
meta.yaml, an unreadable table, columns of a newer schema) is reported; the rest is
imported.

Idempotence: run id ``foreign_run_id("mlflow", project, run_uuid)``; importing twice
finds the segment and writes nothing.
"""

from __future__ import annotations

import ast
import math
import os
from pathlib import Path
from typing import Any, Iterator

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
from runlake.ingest.mlflow_read import RunInfo, open_source
from runlake.schemas.codec import encode_nonfinite
from runlake.schemas.errors import ConfigError
from runlake.schemas.events import Event, RunEnd, RunStart, RunUpdate
from runlake.schemas.segments import check_name

__all__ = ["import_mlflow", "param_value"]

_END = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
_MS = 1_000_000  # ns per ms
_LONG_LITERAL = 100_000  # longer list/dict params stay text (literal_eval cost)


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def param_value(text: str) -> Any:
    """An MLflow param's text as the value it was logged as, when that is certain.

    Certain means ``str(value) == text``: MLflow stores ``str(value)``, so the conversion
    loses nothing (``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"True"`` -> True, ``"None"`` -> None,
    ``"[1, 2]"`` -> [1, 2]); anything else stays the string.
    """
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    head = text[:1]
    if head.isdigit() or head in "-.":
        for kind in (int, float):
            try:
                value = kind(text)
            except ValueError:
                continue
            if str(value) == text and (kind is int or math.isfinite(value)):
                return value
    elif head in "[{" and len(text) <= _LONG_LITERAL:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(value, (list, dict)) and _jsonable(value) and str(value) == text:
            return value
    return text


def _config(info: RunInfo) -> tuple[dict, list[str], str | None]:
    """(config, tags, notes) of a loaded run."""
    config: dict[str, Any] = {k: param_value(v) for k, v in info.params.items()}
    system = {"run_id": info.run_uuid, "experiment_id": info.experiment_id,
              "experiment": info.experiment, "status": info.status, "user": info.user,
              "artifact_uri": info.artifact_uri}
    tags, notes = [], None
    for key, value in info.tags.items():
        if key == "mlflow.note.content":
            notes = value
        elif key == "mlflow.runName":
            continue  # the run's name
        elif key.startswith("mlflow."):
            system[key[len("mlflow."):]] = value
        else:
            tags.append(f"{key}={value}" if value else key)
    config["_mlflow"] = {k: v for k, v in system.items() if v is not None}
    return config, sorted(tags), notes


def _events(info: RunInfo, result: Imported, project: str, writer: str, group: str | None) -> Iterator[Event]:
    config, tags, notes = _config(info)
    env = Envelope(result.run_id, writer)
    rows = info.sorted_rows()
    first = min((r[1] for r in rows), default=None)
    last = max((r[1] for r in rows), default=None)
    start = info.start_ms if info.start_ms is not None else first if first is not None else (
        info.end_ms or 0)
    end = info.end_ms if info.end_ms is not None else last if last is not None else start
    yield RunStart(*env(), start * _MS, 0, project=project, name=result.name, group=group,
                   config=config, tags=tags, argv=["runlake", "import", "mlflow"])
    if notes is not None:
        yield RunUpdate(*env(), start * _MS, 0, notes=notes)
    encode = encode_nonfinite if info.nonfinite else (lambda values: values)
    yield from metric_events(env, 0, ((s, ts * _MS, encode(values)) for s, ts, values in rows))
    yield from report_logs(env, end * _MS, 0, result)
    status = _END.get(info.status or "")
    if status is not None:
        yield RunEnd(*env(), end * _MS, 0, status=status,
                     exit_reason=f"imported from MLflow (status {info.status})",
                     step=rows[-1][0] if rows else None, events=env.seq + 1)


def _describe(info: RunInfo, result: Imported, source_notes: list[str]) -> None:
    """Fill the result's counts, skipped, problems and notes from a loaded run."""
    counts = {"points": info.points, "params": len(info.params),
              "tags": sum(not k.startswith("mlflow.") for k in info.tags)}
    result.counts = {k: v for k, v in counts.items() if v}
    if info.artifacts:
        result.skipped.append(f"artifacts: {info.artifacts} file(s) in {info.artifact_uri} "
                              f"(files stay where they are)")
    if info.datasets:
        result.skipped.append(f"datasets (inputs): {info.datasets}")
    result.problems.extend(info.problems)
    result.notes.extend(source_notes)
    if info.status not in _END:
        result.notes.append(f"MLflow status {info.status or 'unknown'}: imported as it is now, without "
                            f"an end (shown crashed once silent); what it logs later is not added")


def import_mlflow(
    source: str | os.PathLike,
    *,
    project: str | None = None,
    root: str | os.PathLike | None = None,
    db: str | os.PathLike | None = None,
    ingest: bool = True,
) -> list[Imported]:
    """Import every run of an MLflow file store or SQLite backend as a runlake run.

    Args:
        source: an ``mlruns/`` folder (or one experiment or run folder of it), a
            ``file:`` URI, a ``sqlite:///path.db`` URI or the ``.db`` path.
        project: the runlake project of every run (default: each run's experiment name).
        root: the storage root receiving the segments (default: ``resolve_root``'s).
        db: the store file (default: the root's store).
        ingest: run ingest afterwards so the runs are queryable right away.

    Returns:
        One :class:`Imported` per MLflow run, in store order: ``imported``, ``exists``
        (imported before) or ``skipped`` (deleted in MLflow, or unreadable: ``problems``).

    Raises:
        ConfigError: ``source`` is missing, not an MLflow store, or damaged beyond
            listing its runs; or ``project`` is invalid.

    Example:
        >>> for r in import_mlflow("mlruns"):  # doctest: +SKIP
        ...     print(r.name, r.status, r.counts, r.skipped)
    """
    if project is not None:
        try:
            check_name(project, "project")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    root_path = local_root(root)
    src = open_source(source)
    infos = src.infos()
    names = {i.run_uuid: i.name for i in infos}
    results = []
    for info in infos:
        proj = project or project_name(info.experiment, "mlflow")
        run_id = foreign_run_id("mlflow", proj, info.run_uuid)
        result = Imported(f"{src.label} run {info.run_uuid}", run_id, info.name or info.run_uuid,
                          "imported")
        results.append(result)
        if info.deleted:
            result.status = "skipped"
            result.skipped.append(f"run: {info.deleted} (restore it in MLflow to import it)")
            continue
        writer = foreign_writer(run_id)
        writer_dir = root_path / proj / run_id / writer
        if segment_exists(writer_dir):
            result.status = "exists"
            continue
        src.load(info)
        result.name = info.name or info.run_uuid
        if info.error:
            result.status = "skipped"
            result.problems.append(info.error)
            continue
        _describe(info, result, src.notes)
        parent = info.tags.get("mlflow.parentRunId")
        group = (names.get(parent) or parent) if parent else None
        write_segment(writer_dir, _events(info, result, proj, writer, group))
        info.forget_points()
    if ingest and any(r.status == "imported" for r in results):
        from runlake.ingest import ingest as run_ingest

        run_ingest(root=root_path, db=db)
    return results
