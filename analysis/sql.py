"""Read-only SQL over the store, for ``runlake sql`` and the dashboard's SQL console.

The guard has three layers, so one mistake in any of them does not open the store or the
machine: the store is attached read-only (no INSERT/UPDATE/DELETE/CREATE can succeed); the
statement must be exactly one SELECT-like statement (SELECT, WITH, FROM, VALUES, DESCRIBE,
SHOW, SUMMARIZE, EXPLAIN, PIVOT); and before it runs, ``enable_external_access`` is switched
off and ``lock_configuration`` on, so no file outside the store can be read or written
(``COPY ... TO``, ``read_csv('/etc/passwd')``, ``ATTACH``, ``INSTALL``/``LOAD``) and the
query cannot switch the guard back off (``SET``).

Limits, because a console query holds the store and ingest cannot commit while it runs:

* **time**: a watchdog thread calls ``con.interrupt()`` after ``timeout`` seconds (default
  30, ``--timeout``, ``$RUNLAKE_SQL_TIMEOUT``);
* **memory**: DuckDB's ``memory_limit`` (default 2GB, ``--memory``, ``$RUNLAKE_SQL_MEMORY``),
  with spilling to disk capped at the same size in a private temp folder removed afterwards;
* **rows**: the result streams and at most ``limit`` rows are fetched (default 100,000),
  their Python copy counted against the memory cap too;
* **text**: at most :data:`MAX_SQL_CHARS` characters, because DuckDB's planner neither
  checks for interrupts nor counts its memory (9,000 ``UNION ALL`` branches took 2.2 GB
  and 29 s before the first interrupt was seen).

Each query gets a DuckDB instance of its own (``:memory:`` with the store attached), so
these settings never reach other connections of the process (the dashboard serves many
sessions from one process). Every refusal or failure is a one-line :class:`QueryError`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import duckdb

from runlake.schemas.errors import ConfigError, QueryError
from runlake.schemas.objects import is_url
from runlake.store import attach_read_only, locate

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_MEMORY",
    "DEFAULT_TIMEOUT_S",
    "MAX_SQL_CHARS",
    "MEMORY_ENV",
    "TIMEOUT_ENV",
    "Limits",
    "QueryResult",
    "check_query",
    "run_query",
    "run_readonly",
]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY = "2GB"
DEFAULT_MAX_ROWS = 100_000
MAX_SQL_CHARS = 65_536
TIMEOUT_ENV = "RUNLAKE_SQL_TIMEOUT"
MEMORY_ENV = "RUNLAKE_SQL_MEMORY"

_ALLOWED = {"SELECT", "EXPLAIN"}
_REFUSED = "the SQL console is read-only: "
_MESSAGE_CHARS = 300
_BATCH = 10_000
_VARYING = ("VARCHAR", "BLOB", "JSON", "BIT", "ENUM", "[", "STRUCT", "MAP", "UNION", "BIGNUM",
            "VARINT")
_UNITS = {"": None, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h)?\s*$", re.IGNORECASE)
_NONE = {"0", "none", "off", "unlimited"}


class QueryResult(NamedTuple):
    """Column names, the rows fetched, and whether more rows were left unfetched."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


@dataclass(frozen=True, slots=True)
class Limits:
    """What one console query may use; None means no limit.

    Build it with :meth:`resolve`, which applies the precedence argument > environment >
    default and turns bad values into a one-line :class:`ConfigError`.
    """

    timeout_s: float | None
    memory_bytes: int | None
    max_rows: int | None

    @classmethod
    def resolve(cls, timeout: float | str | None = None, memory: int | str | None = None,
                max_rows: int | None = None, env: Mapping[str, str] | None = None) -> "Limits":
        """Limits from arguments, else ``$RUNLAKE_SQL_TIMEOUT``/``$RUNLAKE_SQL_MEMORY``, else
        the defaults. ``0``/``"none"`` switch a limit off; ``max_rows=0`` fetches every row.

        Example:
            >>> Limits.resolve("2m", "512MB", 10, env={})
            Limits(timeout_s=120.0, memory_bytes=512000000, max_rows=10)
        """
        env = os.environ if env is None else env

        def pick(value, name: str, default, flag: str) -> tuple[Any, str]:
            if value is not None:
                return value, flag
            return (env[name], f"${name}") if env.get(name) else (default, flag)

        max_rows = DEFAULT_MAX_ROWS if max_rows is None else max_rows
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise ConfigError(f"--limit must be a number of rows (0 for all), got {max_rows!r}")
        return cls(_duration(*pick(timeout, TIMEOUT_ENV, DEFAULT_TIMEOUT_S, "--timeout")),
                   _size(*pick(memory, MEMORY_ENV, DEFAULT_MEMORY, "--memory")),
                   max_rows or None)


def _duration(value: float | str, where: str) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if text in _NONE:
            return None
        found = _DURATION.match(text)
        if found is None:
            raise ConfigError(f"{where} must be seconds (30, 90s, 2m, 1h; 0 for no limit), "
                              f"got {value!r}")
        unit = {"m": 60, "min": 60, "h": 3600}.get((found[2] or "s").lower(), 1)
        seconds = float(found[1]) * unit
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{where} must be a positive number of seconds (0 for no limit), "
                          f"got {value!r}")
    return seconds or None


def _size(value: int | str, where: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{where} must be a size (0 for no cap), got {value!r}")
        return value or None
    text = str(value).strip().lower()
    if text in _NONE:
        return None
    found = _SIZE.match(text)
    factor = _UNITS.get(found[2].lower()) if found else None
    if factor is None:
        raise ConfigError(f"{where} must be a size with a unit (512MB, 2GB, 1.5GiB; 0 for no "
                          f"cap), got {value!r}")
    return int(float(found[1]) * factor) or None


def _human_size(n: int) -> str:
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} B"


def _one_line(text: object) -> str:
    text = " ".join(str(text).split())
    text = text.split(" LINE 1:")[0]  # drop DuckDB's caret picture
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS - 1] + "…"


def _kind(statement: duckdb.Statement) -> str:
    """The statement's type name; DuckDB knows types its Python enum lacks (``UPDATE
    EXTENSIONS`` is type 29), which are named by their first word instead."""
    try:
        return statement.type.name
    except ValueError:
        words = statement.query.split()
        return words[0].upper() if words else "UNKNOWN"


def check_query(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Validate that ``sql`` is one read-only statement; returns it stripped.

    A dynamic ``PIVOT`` (``PIVOT metrics ON key USING sum(value)``) is one statement to the
    user but DuckDB expands it into several (first the distinct ``ON`` values, then the
    query): it is allowed when the text is a query expression, proven by parsing it as a
    subquery, ``SELECT * FROM (<sql>)``, which no COPY, CREATE or other statement survives.

    Raises:
        QueryError: empty, too long, several statements, or not a SELECT-like statement.
    """
    text = str(sql).strip().rstrip(";").strip()
    if not text:
        raise QueryError("empty query: pass one SELECT statement, e.g. "
                         "\"SELECT run_id, status FROM runs\"")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # e.g. argv bytes that are not UTF-8 (surrogateescape)
        raise QueryError(f"query is not valid UTF-8 text at character {exc.start + 1}; "
                         f"retype or re-encode it") from None
    if len(text) > MAX_SQL_CHARS:
        raise QueryError(f"query is {len(text):,} characters; the console takes at most "
                         f"{MAX_SQL_CHARS:,} (DuckDB cannot interrupt or cap the planning of "
                         f"longer ones)")
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {_one_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"{_REFUSED}expected one statement, got {len(statements)}; "
                         f"run them one at a time")
    kind = _kind(statements[0])
    word = text.split(None, 1)[0].upper()
    word = word if word.isalpha() else kind  # e.g. a leading comment
    if kind == "MULTI":
        if _is_query_expression(con, text):
            return text
        raise QueryError(f"{_REFUSED}this {word} statement expands into several statements "
                         f"and is not a query; only a query (such as PIVOT) may do that")
    if kind not in _ALLOWED:
        label = word if kind == word else f"{word} (a {kind} statement)"
        hint = "; call table functions as SELECT * FROM f(...)" if word == "CALL" else ""
        raise QueryError(f"{_REFUSED}{label} is not allowed, only one SELECT "
                         f"(or WITH/FROM/VALUES/DESCRIBE/SHOW/SUMMARIZE/EXPLAIN/PIVOT){hint}")
    return text


_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALYZE)?\s+", re.IGNORECASE)


def _is_query_expression(con: duckdb.DuckDBPyConnection, text: str) -> bool:
    """Whether ``text`` (after an optional ``EXPLAIN [ANALYZE]``) parses as a subquery."""
    text = _EXPLAIN.sub("", text, count=1)
    try:
        return len(con.extract_statements(f"SELECT * FROM (\n{text}\n)")) == 1
    except duckdb.Error:
        return False


class _Watchdog:
    """Interrupts ``con`` after ``timeout_s`` unless stopped first; knows whether it fired."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float | None) -> None:
        self.fired = False
        self._con = con
        self._done = threading.Event()
        self._guard = threading.Lock()
        self._thread = None
        if timeout_s is not None:
            self._thread = threading.Thread(target=self._run, args=(timeout_s,), daemon=True,
                                            name="runlake-sql-watchdog")
            self._thread.start()

    def _run(self, timeout_s: float) -> None:
        if not self._done.wait(timeout_s):
            with self._guard:
                if not self._done.is_set():
                    self.fired = True
                    self._con.interrupt()

    def stop(self) -> None:
        with self._guard:  # after this, the connection is never interrupted
            self._done.set()
        if self._thread is not None:
            self._thread.join()


@contextmanager
def _console(db: str | Path, limits: Limits) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private DuckDB instance with the store attached read-only and the guard on."""
    spill = tempfile.mkdtemp(prefix="runlake-sql-")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")  # it would print into the output
        con.execute(f"SET temp_directory = '{spill.replace(chr(39), chr(39) * 2)}'")
        if limits.memory_bytes is not None:
            con.execute(f"SET memory_limit = '{limits.memory_bytes}B'")
            con.execute(f"SET max_temp_directory_size = '{limits.memory_bytes}B'")
        path = Path(db)
        alias = path.stem if path.stem.isidentifier() and path.stem not in (
            "memory", "system", "temp", "main") else "store"
        attach_read_only(con, db if is_url(db) else path, alias)  # a lake's s3:// URL
        con.execute(f'USE "{alias}"')
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _failure(exc: duckdb.Error, limits: Limits, watchdog: _Watchdog) -> QueryError:
    message = _one_line(exc)
    if watchdog.fired and limits.timeout_s is not None:
        return QueryError(
            f"query stopped after {limits.timeout_s:g} s (--timeout, ${TIMEOUT_ENV}); narrow "
            f"it (WHERE, LIMIT) or allow more time, e.g. --timeout {4 * limits.timeout_s:g} "
            f"(0 for no limit)")
    if isinstance(exc, duckdb.OutOfMemoryException) and limits.memory_bytes is not None:
        more = _human_size(4 * limits.memory_bytes).replace(" ", "")
        return QueryError(
            f"query stopped: it needs more than {_human_size(limits.memory_bytes)} of memory "
            f"(--memory, ${MEMORY_ENV}; spilling to disk is capped at the same size); narrow "
            f"it or allow more, e.g. --memory {more} (0 for no cap)")
    if any(m in message for m in ("read-only", "read only", "external access",
                                  "disabled by configuration", "Permission Error",
                                  "lock_configuration", "locked")):
        return QueryError(f"{_REFUSED}{message}")
    return QueryError(f"SQL error: {message}")


def run_query(
    db: str | Path | None,
    sql: str,
    *,
    limit: int | None = None,
    timeout: float | str | None = None,
    memory: int | str | None = None,
    root: str | Path | None = None,
) -> QueryResult:
    """Run one read-only query against the store, within time, memory and row limits.

    Args:
        db: the store file (default ``<root>/runlake.duckdb``).
        sql: one SELECT-like statement.
        limit: fetch at most this many rows (default 100,000; 0 for all).
        timeout: seconds, or ``"2m"``; 0 for none (default ``$RUNLAKE_SQL_TIMEOUT`` or 30).
        memory: bytes, or ``"512MB"``; 0 for DuckDB's own default (``$RUNLAKE_SQL_MEMORY``
            or 2GB).
        root: the storage root used when ``db`` is None.

    Returns:
        ``QueryResult(columns, rows, truncated)``.

    Raises:
        QueryError: the query was refused, failed or hit a limit (one line saying why).
        ConfigError: a limit is not a valid value.
        StoreError: there is no store (run ``runlake ingest`` first).
        StoreBusyError: a writer held the store past the retry window.

    Example:
        >>> run_query(None, "SELECT run_id, status FROM runs", timeout=10)  # doctest: +SKIP
    """
    limits = Limits.resolve(timeout, memory, limit)
    path = locate(root, db).path
    with _console(path, limits) as con:
        text = check_query(con, sql)
        watchdog = _Watchdog(con, limits.timeout_s)
        try:
            cur = con.execute(text)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = _fetch(cur, limits)
        except duckdb.Error as exc:
            raise _failure(exc, limits, watchdog) from None
        except (ArithmeticError, ValueError) as exc:  # e.g. INTERVAL 1e8 YEARS as timedelta
            raise QueryError(f"a value of the result has no Python equivalent ({_one_line(exc)});"
                             f" cast that column to VARCHAR, e.g. col::VARCHAR") from None
        finally:
            watchdog.stop()
    truncated = limits.max_rows is not None and len(rows) > limits.max_rows
    return QueryResult(columns, rows[:limits.max_rows] if truncated else rows, truncated)


def _size_of(value: Any) -> int:
    """Roughly the bytes a fetched value holds (text and blobs by length, containers summed)."""
    if isinstance(value, (str, bytes)):
        return 40 + len(value)
    if isinstance(value, (list, tuple)):
        return 56 + sum(_size_of(v) for v in value)
    if isinstance(value, dict):
        return 64 + sum(_size_of(k) + _size_of(v) for k, v in value.items())
    return 32


def _fetch(cur: duckdb.DuckDBPyConnection, limits: Limits) -> list[tuple[Any, ...]]:
    """Up to ``max_rows + 1`` rows, in batches. Their Python copy counts against the memory
    cap too (DuckDB's limit covers only DuckDB's own buffers): 32 bytes a fixed-size value,
    text, blobs and nested values by what they hold."""
    wanted = None if limits.max_rows is None else limits.max_rows + 1
    types = [str(d[1]) for d in cur.description or ()]
    varying = [i for i, t in enumerate(types) if any(m in t for m in _VARYING)]
    per_row = 8 * len(types) + 32 * (len(types) - len(varying))
    rows: list[tuple[Any, ...]] = []
    held = 0
    while wanted is None or len(rows) < wanted:
        batch = cur.fetchmany(_BATCH if wanted is None else min(_BATCH, wanted - len(rows)))
        if not batch:
            break
        rows += batch
        if limits.memory_bytes is not None:
            held += per_row * len(batch) + sum(_size_of(row[i]) for row in batch for i in varying)
            if held > limits.memory_bytes:
                raise QueryError(
                    f"query stopped: its result needs more than "
                    f"{_human_size(limits.memory_bytes)} of memory (--memory, ${MEMORY_ENV}); "
                    f"fetch fewer rows (--limit, LIMIT) or columns, or allow more")
    return rows


def run_readonly(
    db: str | Path | None, sql: str, limit: int | None = None, *, root: str | Path | None = None,
    timeout: float | str | None = None, memory: int | str | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``(columns, rows)`` of :func:`run_query` (same arguments, limits and errors)."""
    result = run_query(db, sql, limit=limit, timeout=timeout, memory=memory, root=root)
    return result.columns, result.rows
