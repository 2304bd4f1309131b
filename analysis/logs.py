"""Log lines of runs: the one query behind ``runlake logs`` and the dashboard's Logs view.

Both used to query the ``logs`` table themselves and answered the same question two ways
(the CLI: level at least, case-sensitive; the dashboard: level in a list, case-insensitive).
Now both call :func:`query_logs`, with one meaning:

* ``level`` is a **minimum**: a line is kept when its level number (Python logging's
  ``levelno``, stored with every line) is at least the minimum's. Names are
  case-insensitive (``warning``, ``WARN``, ``Warning``); the standard ones are Python
  logging's (``DEBUG`` 10, ``INFO`` 20, ``WARNING``/``WARN`` 30, ``ERROR`` 40,
  ``CRITICAL``/``FATAL`` 50, ``NOTSET`` 0). A custom level a run logged (``TRACE`` 5,
  ``NOTICE`` 25 after ``logging.addLevelName``) can be named too: its number is the one
  stored with its lines. A number (``25`` or ``"25"``) is taken as it is. A line stored
  without a number is ranked by its name (standard names), else 0.
* ``grep`` is a **case-insensitive** substring of the message or the logger's name.
* Lines come oldest first (``newest_first`` reverses); ``limit`` keeps the newest N.
"""

from __future__ import annotations

import logging
from typing import Iterable

import polars as pl

from runlake.analysis._common import frame, rows, run_ids_list
from runlake.schemas.errors import ConfigError
from runlake.store.order import in_ingest_order

__all__ = ["LEVEL_NAMES", "LEVELS", "LOG_COLUMNS", "level_number", "query_logs"]

LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The standard levels, lowest first, as pickers offer them."""
LEVELS: dict[str, int] = {
    name: getattr(logging, name)
    for name in ("NOTSET", *LEVEL_NAMES, "WARN", "FATAL")
}
"""Every standard level name (upper case) and its number, from Python's logging module."""
LOG_COLUMNS = ("ts", "run_id", "rank", "step", "level", "levelno", "logger", "message")
"""The columns of :func:`query_logs` (``cursor`` first when asked for)."""

_BY_NAME = " ".join(f"WHEN '{name}' THEN {n}" for name, n in LEVELS.items())
_LEVELNO = f"coalesce(levelno, CASE upper(level) {_BY_NAME} END, 0)"
"""A line's level number: the stored one, else its standard name's, else 0."""


def _standard_help() -> str:
    """'DEBUG, INFO, WARNING (WARN), ...': the standard names and their aliases."""
    alias = {LEVELS[a]: a for a in LEVELS if a not in LEVEL_NAMES and a != "NOTSET"}
    return ", ".join(f"{n} ({alias[LEVELS[n]]})" if LEVELS[n] in alias else n for n in LEVEL_NAMES)


def level_number(con, level: int | str) -> int:
    """The level number a minimum ``level`` stands for (see the module docstring).

    Args:
        con: an open store connection (custom level names are looked up in ``logs``).
        level: a level name in any case, a custom level name a run logged, or a number.

    Returns:
        The number; lines at or above it pass.

    Raises:
        ConfigError: an unknown name; the message lists the standard levels and the custom
            ones found in the store.
    """
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if not isinstance(level, str):
        raise ConfigError(f"a log level is a name or a number, got {level!r}")
    name = level.strip().upper()
    if name.lstrip("-").isdigit():
        return int(name)
    if name in LEVELS:
        return LEVELS[name]
    found = rows(con, "SELECT min(levelno) FROM logs WHERE upper(level) = ? AND levelno IS NOT NULL",
                 [name])
    if found and found[0][0] is not None:
        return int(found[0][0])
    custom = [r[0] for r in rows(
        con, "SELECT DISTINCT upper(level) AS l FROM logs WHERE upper(level) NOT IN "
             "(SELECT unnest(?::VARCHAR[])) AND levelno IS NOT NULL ORDER BY l LIMIT 20",
        [list(LEVELS)])]
    also = f"; custom levels in this store: {', '.join(custom)}" if custom else ""
    raise ConfigError(f"unknown log level {level!r}: expected {_standard_help()}, or a level "
                      f"number{also}")


def query_logs(
    con,
    run_ids: str | Iterable[str] | None = None,
    *,
    level: int | str | None = None,
    grep: str | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    cursor: bool = False,
    after: int | None = None,
) -> pl.DataFrame:
    """Log lines of these runs, filtered by a minimum level and a case-insensitive text.

    Args:
        con: an open store connection.
        run_ids: one run id, several, or None (every run).
        level: minimum level (any case; a custom level name or a number works too); None:
            every line.
        grep: keep lines whose message or logger name contains this text, ignoring case.
        limit: keep only the newest N lines (None: all).
        newest_first: order newest first (default oldest first).
        cursor: add a leading ``cursor`` column, increasing in ingest order, to pass back as
            ``after`` (``runlake logs --follow``), on either store
            (:func:`runlake.store.in_ingest_order`).
        after: only lines ingested after this cursor.

    Returns:
        A DataFrame with :data:`LOG_COLUMNS` (and ``cursor`` first when asked for).

    Raises:
        ConfigError: an unknown level, or a negative limit.

    Example:
        >>> query_logs(con, "run-1", level="warn", grep="NaN")  # doctest: +SKIP
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative integer, got {limit!r}")
    clauses, params = [], []
    ids = run_ids_list(run_ids)
    if ids is not None:
        clauses.append("run_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(ids)
    if level is not None:
        clauses.append(f"{_LEVELNO} >= ?")
        params.append(level_number(con, level))
    if grep:
        clauses.append("(contains(lower(message), lower(?)) OR contains(lower(logger), lower(?)))")
        params += [grep, grep]
    if after is not None:
        clauses.append("ingest_order > ?")
        params.append(int(after))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    columns = (["ingest_order AS cursor"] if cursor else []) + list(LOG_COLUMNS)
    order = ["ts", "rank", "step"] + (["cursor"] if cursor else [])
    up = ", ".join(f"{c} NULLS FIRST" for c in order)
    down = ", ".join(f"{c} DESC NULLS LAST" for c in order)
    source = in_ingest_order(con, "logs") if cursor or after is not None else "logs"
    sql = f"SELECT {', '.join(columns)} FROM {source} {where}"
    if limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY {down} LIMIT {limit})"
    sql += f" ORDER BY {down if newest_first else up}"
    return frame(con, sql, params)
