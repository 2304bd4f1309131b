"""Store access for the dashboard: short-lived read-only connections, a change token, caches.

Why this module exists: a DuckDB reader that stays open blocks the ingest writer, so the
dashboard never keeps a connection. Every fetch opens the store read-only
(``runlake.store.read_store``), runs one analysis call, and closes it.

Guarantees:

* **Cheap idle ticks.** :func:`change_token` first compares the store file's ``stat``
  signature (the main file and its WAL) with the last one seen; only when the files changed
  does it open the store and read the ingest ledger (``max(updated_at)``, ``sum(bytes)``)
  plus the row counts of the tables that change without the ledger (runs, anomalies). When
  nothing is new a tick costs two ``stat`` calls.
* **Results cached by token.** Every cached fetch takes the token as an argument, so
  ``st.cache_data`` serves repeated renders from memory and recomputes exactly when new
  data was ingested.
* **Views call analysis.** The only SQL here is view-specific listing (metric keys, log
  lines, the schema): the computation lives in ``runlake.analysis``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import polars as pl
import streamlit as st

from runlake.analysis._common import frame, rows
from runlake.analysis.logs import query_logs
from runlake.dashboard.selection import SUMMARY_NAMES
from runlake.schemas.metric_keys import is_system_key
from runlake.store import locate, read_store, signature

__all__ = [
    "MISSING_STORE",
    "SUMMARIES",
    "change_token",
    "config_table",
    "fetch",
    "file_signature",
    "log_lines",
    "metric_keys",
    "metric_summaries",
    "run_index",
    "run_rows",
    "runs_view_data",
    "schema_columns",
    "script_args",
    "store_path",
]

MISSING_STORE = ("missing",)
"""The token of a store file that does not exist (yet)."""

_TOKEN_SQL = """
SELECT (SELECT max(updated_at) FROM ingest_ledger),
       (SELECT sum(bytes) FROM ingest_ledger),
       (SELECT count(*) FROM ingest_ledger),
       (SELECT count(*) FROM runs),
       (SELECT max(last_seen_at) FROM runs),
       (SELECT count(*) FROM anomalies)
"""

def script_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The app's own arguments (after ``--`` on the ``streamlit run`` line): ``--db``,
    ``--root`` and ``--allow-remote``; anything else is ignored."""
    from runlake.dashboard.exposure import ALLOW_REMOTE

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    parser.add_argument("--root")
    parser.add_argument(ALLOW_REMOTE, action="store_true", dest="allow_remote")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


def store_path(argv: list[str] | None = None) -> Path:
    """The store file from ``--db`` (script arguments), ``$RUNLAKE_DB`` or the default."""
    args = script_args(argv)
    if args.db:
        return Path(args.db)
    if os.environ.get("RUNLAKE_DB"):
        return Path(os.environ["RUNLAKE_DB"])
    return locate(args.root).path


_lock = threading.Lock()
_last: dict[str, tuple[tuple, tuple]] = {}  # db -> (file signature, data token)


def file_signature(db: str | Path) -> tuple:
    """``(size, mtime_ns)`` of what every commit touches (:func:`runlake.store.signature`:
    a DuckDB file and its write-ahead log, or a lake's commit logs); a few stats, so an
    unchanged signature means no new data at almost no cost."""
    return signature(db)


def change_token(db: str | Path) -> tuple:
    """A value that changes exactly when new data reached the store.

    Args:
        db: the store file.

    Returns:
        :data:`MISSING_STORE` when the file does not exist, else a tuple built from the
        ingest ledger and table counts. Costs two ``stat`` calls when the files did not
        change since the previous call (from any session of this process).

    Raises:
        StoreError: the file exists but is not a readable store.
        StoreBusyError: the ingest writer held the file past the retry window.
    """
    db = str(db)
    sig = file_signature(db)
    if sig[0] is None:
        return MISSING_STORE
    with _lock:
        seen = _last.get(db)
        if seen is not None and seen[0] == sig:
            return seen[1]
    with read_store(db) as con:
        token = tuple(rows(con, _TOKEN_SQL)[0])
    with _lock:
        _last[db] = (sig, token)
    return token


@st.cache_data(show_spinner=False, max_entries=256)
def _cached_call(db: str, token: tuple, module: str, name: str, args: tuple, kwargs: tuple):
    import importlib

    fn = getattr(importlib.import_module(module), name)
    with read_store(db) as con:
        return fn(con, *args, **dict(kwargs))


def fetch(fn: Callable[..., Any], db: str | Path, token: tuple, *args: Any, **kwargs: Any) -> Any:
    """Call an analysis function ``fn(con, *args, **kwargs)`` on a fresh read-only
    connection, cached by ``(db, token, fn, args, kwargs)``.

    Args:
        fn: a module-level function taking a DuckDB connection first.
        db: the store file.
        token: from :func:`change_token`; a new token recomputes.
        args, kwargs: hashable arguments (lists are turned into tuples).

    Returns:
        Whatever ``fn`` returns (a copy, from the cache).
    """
    args = tuple(_hashable(a) for a in args)
    items = tuple(sorted((k, _hashable(v)) for k, v in kwargs.items()))
    return _cached_call(str(db), token, fn.__module__, fn.__name__, args, items)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _query(db: str, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
    with read_store(db) as con:
        return frame(con, sql, params)


@st.cache_data(show_spinner=False, max_entries=8)
def run_index(db: str, token: tuple) -> pl.DataFrame:
    """run_id, project, name, status, last_step of every run, newest first: what run
    pickers and labels need, without the metric summaries of ``list_runs``."""
    return _query(
        db,
        "SELECT run_id, project, name, status, last_step FROM runs "
        "ORDER BY started_at DESC NULLS LAST, run_id",
    )


@st.cache_data(show_spinner=False, max_entries=64)
def metric_keys(db: str, token: tuple, run_ids: tuple[str, ...]) -> list[str]:
    """Metric keys logged by these runs (all runs when empty), sorted, ``sys/`` last."""
    where, params = "", []
    if run_ids:
        where = f"WHERE run_id IN ({', '.join('?' * len(run_ids))})"
        params = list(run_ids)
    found = _query(db, f"SELECT DISTINCT key FROM metrics {where}", params)
    keys = found["key"].to_list() if found.height else []
    return sorted(keys, key=lambda k: (is_system_key(k), k))


@st.cache_data(show_spinner=False, max_entries=64)
def log_lines(
    db: str,
    token: tuple,
    run_ids: tuple[str, ...],
    level: str | None,
    text: str,
    limit: int = 2000,
) -> pl.DataFrame:
    """The newest ``limit`` log lines of these runs (all runs when empty), newest first.

    The query is :func:`runlake.analysis.logs.query_logs`, the one ``runlake logs`` runs:
    ``level`` is a minimum (any case; None or "" = every line), ``text`` a case-insensitive
    substring of the message or logger name.
    """
    with read_store(db) as con:
        found = query_logs(con, list(run_ids) or None, level=level or None, grep=text or None,
                           limit=int(limit), newest_first=True)
    return found.drop("levelno")


@st.cache_data(show_spinner=False, max_entries=8)
def schema_columns(db: str, token: tuple) -> pl.DataFrame:
    """Tables, views and their columns, from ``information_schema``."""
    return _query(
        db,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name <> 'schema_migrations' "
        "ORDER BY table_name, ordinal_position",
    )


# --- the Runs and Hyperparameters views' plumbing -----------------------------------------

SUMMARIES = SUMMARY_NAMES
"""Per-run summaries of a metric key (``selection.SUMMARY_NAMES``)."""

_RUN_ROWS_SQL = """
SELECT run_id, project, name, group_name, status, started_at, ended_at, last_seen_at,
       epoch(coalesce(ended_at, last_seen_at)) - epoch(started_at) AS duration_s,
       last_step, total_steps, eta_s, heartbeat_s, attempts, tags
FROM runs ORDER BY started_at DESC NULLS LAST, run_id
"""


@st.cache_data(show_spinner=False, max_entries=8)
def run_rows(db: str, token: tuple) -> pl.DataFrame:
    """Every run's own columns (no metric aggregation: 10,000 runs read in milliseconds),
    newest first; the Runs view's table starts from it."""
    return _query(db, _RUN_ROWS_SQL)


@st.cache_data(show_spinner=False, max_entries=64)
def metric_summaries(db: str, token: tuple, keys: tuple[str, ...],
                     run_ids: tuple[str, ...] | None = None) -> pl.DataFrame:
    """``run_id``, ``key``, last, min, max of these keys for every run (or only
    ``run_ids``), from the store's ``metric_summary`` view (one definition of the
    summaries for SQL users and the views).

    Every run: one scan of every point (seconds on 200M points). Given runs: one
    placeholder per id, which DuckDB pushes into the scan's zone maps (the store is sorted
    by run id), so 500 runs of 10,000 read a twentieth of it.
    """
    if not keys or run_ids == ():
        return pl.DataFrame(schema={"run_id": pl.String, "key": pl.String,
                                    **{s: pl.Float64 for s in SUMMARIES}})
    where, params = "key IN (SELECT unnest(?::VARCHAR[]))", [list(keys)]
    if run_ids is not None:
        where += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
        params += list(run_ids)
    return _query(db, f"SELECT run_id, key, {', '.join(SUMMARIES)} FROM metric_summary "
                      f"WHERE {where}", params)


@st.cache_resource(show_spinner=False, max_entries=4)
def config_table(db: str, token: tuple) -> tuple[dict[str, dict], pl.DataFrame]:
    """Every run's flattened config (``analysis.compare.run_configs``), as a mapping and as
    a frame (``run_id`` plus a typed ``cfg:<key>`` column per key, ``runs_table.config_frame``).

    Held once per token and shared, not copied per rerun (``st.cache_data`` would unpickle
    10,000 dicts on every draw: half a second): callers must not modify either.
    """
    return runs_view_data(db, token)[1:3]


@st.cache_resource(show_spinner=False, max_entries=4)
def runs_view_data(db: str, token: tuple, key_runs: int = 100
                   ) -> tuple[pl.DataFrame, dict[str, dict], pl.DataFrame, list[str]]:
    """What the Runs view's first draw reads, over ONE read-only connection (opening a
    2.7 GB store costs 0.1 s or more each time): :func:`run_rows`, the configs of
    :func:`config_table`, and the metric keys of the ``key_runs`` newest runs (a
    ``DISTINCT key`` over every point costs seconds at 200M points). Shared, not copied.
    """
    from runlake.analysis.compare import run_configs
    from runlake.dashboard.runs_table import config_frame

    with read_store(db) as con:
        runs = frame(con, _RUN_ROWS_SQL)
        configs = run_configs(con, None)
        newest = runs["run_id"].head(key_runs).to_list()
        found = frame(con, f"SELECT DISTINCT key FROM metrics WHERE run_id IN "
                           f"({', '.join('?' * len(newest)) or 'NULL'})", newest)
    keys = sorted(found["key"].to_list() if found.height else [],
                  key=lambda k: (is_system_key(k), k))
    names = sorted({k for c in configs.values() for k in c if k != "group"})
    return runs, configs, config_frame(configs, list(configs), names), keys
