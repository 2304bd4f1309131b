"""Read-only SQL over the store, for ``runlake sql`` and the dashboard's SQL console.

The guard has three layers, so one mistake in any of them does not open the store or the
machine: the store is opened read-only (no INSERT/UPDATE/DELETE/CREATE can succeed); the
statement must be exactly one SELECT-like statement (SELECT, WITH, FROM, VALUES, DESCRIBE,
SHOW, SUMMARIZE, EXPLAIN); and before it runs, ``enable_external_access`` is switched off
and ``lock_configuration`` on, so no file outside the store can be read or written
(``COPY ... TO``, ``read_csv('/etc/passwd')``, ``ATTACH``, ``INSTALL``/``LOAD``) and the
query cannot switch the guard back off (``SET``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from runlake.ingest.store import read_store
from runlake.schemas.errors import QueryError

__all__ = ["check_query", "run_readonly"]

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
_REFUSED = "the SQL console is read-only: "


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text.split(" LINE 1:")[0]  # drop DuckDB's caret picture


def check_query(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Validate that ``sql`` is one read-only statement; returns it stripped.

    Raises:
        QueryError: empty, several statements, or not a SELECT-like statement.
    """
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise QueryError("empty query: pass one SELECT statement, e.g. "
                         "\"SELECT run_id, status FROM runs\"")
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {_one_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"{_REFUSED}expected one statement, got {len(statements)}; "
                         f"run them one at a time")
    kind = statements[0].type
    if kind not in _ALLOWED:
        name = str(kind).rsplit(".", 1)[-1]
        raise QueryError(f"{_REFUSED}{name} statements are not allowed, only SELECT "
                         f"(and WITH/DESCRIBE/SHOW/SUMMARIZE/EXPLAIN)")
    return text


def run_readonly(
    db: str | Path | None, sql: str, limit: int | None = None, *, root: str | Path | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only query against the store.

    Args:
        db: the store file (default ``<root>/runlake.duckdb``).
        sql: one SELECT-like statement.
        limit: return at most this many rows.
        root: the storage root used when ``db`` is None.

    Returns:
        ``(column names, rows)``.

    Raises:
        QueryError: the query was refused or failed (one-line message saying why).
        StoreError: there is no store (run ``runlake ingest`` first).

    Example:
        >>> cols, rows = run_readonly("runlake-data/runlake.duckdb",
        ...                           "SELECT run_id, status FROM runs")  # doctest: +SKIP
    """
    with read_store(db, root=root) as con:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        text = check_query(con, sql)
        try:
            cur = con.execute(text)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall() if limit is None else cur.fetchmany(limit)
        except duckdb.Error as exc:
            message = _one_line(exc)
            if any(m in message for m in ("read-only", "read only", "external access",
                                          "disabled by configuration", "Permission Error",
                                          "lock_configuration", "locked")):
                raise QueryError(f"{_REFUSED}{message}") from None
            raise QueryError(f"SQL error: {message}") from None
    return columns, rows
