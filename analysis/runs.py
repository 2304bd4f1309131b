"""Listing runs and resolving RUN references, shared by every command that takes RUN.

A RUN reference is a run id, a unique run name, or a unique prefix of a run id, tried in
that order. Anything else is a :class:`RunNotFoundError` whose message says what matched
(up to five candidates) and how to list runs.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import duckdb

from runlake.analysis._common import records, rows, scalar
from runlake.schemas.errors import RunNotFoundError

__all__ = ["list_runs", "resolve_run", "resolve_runs", "run_labels"]

_HINT = "`runlake runs` lists them"
_KEY_METRICS = 3


def _describe(rows: list[tuple]) -> str:
    shown = ", ".join(f"{rid} ({name})" if name else rid for rid, name in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return shown + more


def resolve_run(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    """The run id a RUN reference names.

    Args:
        con: a store connection (read-only is fine).
        ref: a run id, a unique run name, or a unique prefix of a run id.

    Returns:
        The run id.

    Raises:
        RunNotFoundError: nothing matches, or several runs do (the message lists up to 5).
    """
    ref = (ref or "").strip()
    if not ref:
        raise RunNotFoundError(f"empty RUN reference: pass a run id, name or id prefix; {_HINT}")
    if scalar(con, "SELECT 1 FROM runs WHERE run_id = ?", [ref]):
        return ref
    for what, where, arg in (
        ("name", "name = ?", ref),
        ("id prefix", "starts_with(run_id, ?)", ref),
    ):
        found = rows(
            con,
            f"SELECT run_id, name FROM runs WHERE {where} "
            f"ORDER BY started_at DESC NULLS LAST, run_id LIMIT 6", [arg],
        )
        if len(found) == 1:
            return found[0][0]
        if found:
            count = scalar(con, f"SELECT count(*) FROM runs WHERE {where}", [arg])
            raise RunNotFoundError(
                f"{count} runs match {what} {ref!r}: {_describe(found)}; pass a longer id "
                f"prefix or the full run id")
    raise RunNotFoundError(f"no run matches {ref!r}; {_HINT}")


def resolve_runs(con: duckdb.DuckDBPyConnection, refs: Iterable[str]) -> list[str]:
    """Resolve several RUN references (order kept, duplicates dropped).

    Raises:
        RunNotFoundError: for the first reference that does not resolve.
    """
    out: list[str] = []
    for ref in refs:
        run_id = resolve_run(con, ref)
        if run_id not in out:
            out.append(run_id)
    return out


def run_labels(con: duckdb.DuckDBPyConnection, run_ids: Iterable[str]) -> dict[str, str]:
    """How to show each of ``run_ids`` to a person: its name, or its id where the name is
    missing or another of these runs has the same name.

    One rule for every place that names runs side by side (``runlake compare``, reports):
    a name is what people recognise, an id is what tells two same-named runs apart and can
    be pasted back as RUN.

    Returns:
        run id -> label, for every id given (an id not in the store labels itself).
    """
    ids = list(dict.fromkeys(run_ids))
    names = dict(rows(con, "SELECT run_id, name FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                      [ids]))
    counts: dict[str, int] = {}
    for rid in ids:
        if names.get(rid):
            counts[names[rid]] = counts.get(names[rid], 0) + 1
    return {rid: names[rid] if names.get(rid) and counts[names[rid]] == 1 else rid for rid in ids}


def list_runs(
    con: duckdb.DuckDBPyConnection,
    project: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first, with progress and their latest loss/accuracy values.

    Args:
        con: a store connection.
        project, status: keep only runs of this project / with this status.
        limit: at most this many runs.

    Returns:
        One dict per run: run_id, project, name, group_name, status, started_at,
        ended_at, last_seen_at, duration_s, last_step, total_steps, progress (0..1 or
        None), eta_s, attempts, world_size, tags, config (a dict), and ``metrics``: up to
        3 keys whose name contains "loss" or "acc" mapped to their value at the last step.
    """
    where, params = [], []
    if project is not None:
        where.append("project = ?")
        params.append(project)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    sql = f"""
        SELECT run_id, project, name, group_name, status, started_at, ended_at, last_seen_at,
               epoch(coalesce(ended_at, last_seen_at)) - epoch(started_at) AS duration_s,
               last_step, total_steps,
               CASE WHEN total_steps > 0 AND last_step IS NOT NULL
                    THEN least(1.0, (last_step + 1) / total_steps) END AS progress,
               eta_s, attempts, world_size, tags, config
        FROM runs {'WHERE ' + ' AND '.join(where) if where else ''}
        ORDER BY started_at DESC NULLS LAST, run_id
        {'LIMIT ' + str(int(limit)) if limit is not None else ''}"""
    runs = records(con, sql, params)
    for run in runs:
        run["metrics"] = {}
        if isinstance(run["config"], str):
            run["config"] = json.loads(run["config"])
    if runs:
        by_id = {r["run_id"]: r for r in runs}
        latest = rows(
            con,
            """
            SELECT run_id, key, arg_max(value, step) AS last
            FROM metrics
            WHERE run_id IN (SELECT unnest(?::VARCHAR[]))
              AND (key ILIKE '%loss%' OR key ILIKE '%acc%') AND NOT starts_with(key, 'sys/')
            GROUP BY run_id, key ORDER BY run_id, (key ILIKE '%loss%') DESC, key""",
            [list(by_id)],
        )
        for run_id, key, last in latest:
            metrics = by_id[run_id]["metrics"]
            if len(metrics) < _KEY_METRICS:
                metrics[key] = last
    return runs
