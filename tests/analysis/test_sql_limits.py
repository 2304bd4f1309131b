"""The SQL console's limits (time, memory, rows, text) on queries that would otherwise run
for hours or take the machine's memory, and one-line errors for every odd statement."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading

import pytest

from runlake.analysis.sql import DEFAULT_MAX_ROWS, MAX_SQL_CHARS, Limits, run_query
from runlake.cli import main
from runlake.store import read_store
from runlake.store.duck import write_store
from runlake.schemas.errors import ConfigError, QueryError

HOURS = "SELECT count(*) FROM range(10000000000000) t(i) WHERE i % 7 = 3"
BIG_LIST = "SELECT length(list(i)) FROM range(30000000) t(i)"  # ~240 MB that cannot spill
BIG_SORT = "SELECT i FROM range(20000000) t(i) ORDER BY i DESC"  # spills ~160 MB


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A real store with two runs, two keys each."""
    from tests.analysis.conftest import StoreBuilder

    builder = StoreBuilder(tmp_path_factory.mktemp("sql") / "store.duckdb")
    for rid in ("run-a", "run-b"):
        builder.run(rid, config={"lr": 0.1})
        builder.metric(rid, "loss", [1.0, 0.5, 0.25]).metric(rid, "acc", [0.1, 0.5, 0.9])
    return builder.build()


def _sql(*args, env: dict | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sql", *[str(a) for a in args]])
    return code, out.getvalue(), err.getvalue()


def test_timeout_stops_a_query_that_would_run_for_hours(db):
    """The watchdog interrupts a query that would run for hours, with a one-line error."""
    code, out, err = _sql(HOURS, "--db", db, "--timeout", "1")
    assert code == 2 and not out
    assert err.startswith("runlake sql: error: query stopped after 1 s (--timeout")
    assert err.count("\n") == 1
    assert not [t for t in threading.enumerate() if t.name == "runlake-sql-watchdog"]


def test_long_query_prints_no_progress_bar(db):
    """stdout holds only the result: DuckDB's progress bar (drawn on stdout after 2 s) is off."""
    done = subprocess.run([sys.executable, "-m", "runlake.cli", "sql", HOURS, "--db", str(db),
                           "--timeout", "3", "--csv"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "query stopped after 3 s" in done.stderr


def test_result_held_in_python_counts_against_the_memory_cap(db):
    """Rows that fit DuckDB's buffers but not the cap once copied into Python stop too."""
    with pytest.raises(QueryError, match="its result needs more than 64 MB of memory"):
        run_query(db, "SELECT repeat('x', 10000) AS s FROM range(100000)", memory="64MB")


def test_timeout_from_the_environment(db, monkeypatch):
    """$RUNLAKE_SQL_TIMEOUT sets the default; the function argument overrides it."""
    monkeypatch.setenv("RUNLAKE_SQL_TIMEOUT", "1")
    with pytest.raises(QueryError, match="query stopped after 1 s"):
        run_query(db, HOURS)
    with pytest.raises(QueryError, match="query stopped after 0.5 s"):
        run_query(db, HOURS, timeout=0.5)


def test_memory_cap_stops_a_query_beyond_it(db):
    """A query needing more than --memory stops with a one-line error naming the cap."""
    code, out, err = _sql(BIG_LIST, "--db", db, "--memory", "64MB")
    assert code == 2 and not out
    assert err.startswith("runlake sql: error: query stopped: it needs more than 64 MB of "
                          "memory (--memory")
    assert err.count("\n") == 1


def test_spill_is_capped_and_removed(db, tmp_path):
    """Spilling to disk stops at the memory cap, in a temp folder that is removed after."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "RUNLAKE_SQL_MEMORY": "48MB"}
    done = subprocess.run([sys.executable, "-m", "runlake.cli", "sql", BIG_SORT, "--db", str(db)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "needs more than 48 MB of memory (--memory, $RUNLAKE_SQL_MEMORY" in done.stderr
    assert list(tmp.iterdir()) == []


def test_rows_are_capped_by_default(db):
    """Without --limit at most DEFAULT_MAX_ROWS rows are fetched, and the result says so."""
    result = run_query(db, "SELECT i FROM range(1000000) t(i)")
    assert len(result.rows) == DEFAULT_MAX_ROWS and result.truncated
    assert run_query(db, "SELECT i FROM range(10) t(i)", limit=0) == (
        ["i"], [(i,) for i in range(10)], False)
    code, out, err = _sql("SELECT i FROM range(1000000) t(i)", "--db", db, "--csv")
    assert code == 0 and out.count("\n") == DEFAULT_MAX_ROWS + 1
    assert err.startswith(f"runlake sql: stopped at {DEFAULT_MAX_ROWS:,} rows (--limit)")


def test_limits_never_reach_other_connections(db):
    """The console's settings stay on its own DuckDB instance, even for a reader of the
    same file open in this process."""
    with read_store(db) as con:
        before = con.sql("SELECT current_setting('memory_limit')").fetchall()
        run_query(db, "SELECT 1", memory="64MB")
        assert con.sql("SELECT current_setting('memory_limit')").fetchall() == before
        assert con.sql("SELECT current_setting('enable_external_access')").fetchall() == [(True,)]
        con.sql("SET threads = 1")  # not locked for other connections
    with write_store(db, retry_s=0.5):
        pass  # the console let go of the file


@pytest.mark.parametrize("sql", [
    "PIVOT metrics ON key USING sum(value) GROUP BY run_id ORDER BY run_id",
    "WITH p AS (PIVOT metrics ON key USING sum(value) GROUP BY run_id) FROM p ORDER BY run_id",
])
def test_pivot_runs_as_one_query(db, sql):
    """A dynamic PIVOT (expanded by DuckDB into several statements) runs as one query."""
    result = run_query(db, sql)
    assert result.columns == ["run_id", "acc", "loss"]
    assert [r[0] for r in result.rows] == ["run-a", "run-b"]
    assert result.rows[0][2] == pytest.approx(1.75)


ODD = [
    "UPDATE EXTENSIONS", "PRAGMA version", "CALL pragma_version()", "ATTACH '/tmp/o.duckdb'",
    "INSTALL httpfs", "LOAD httpfs", "SET threads = 1", "RESET memory_limit",
    "COPY runs TO '/tmp/runlake-x.csv'", "EXPORT DATABASE '/tmp/runlake-x'", "CHECKPOINT",
    "VACUUM", "DETACH store", "USE memory", "BEGIN", "PREPARE p AS SELECT 1",
    "CREATE TEMP TABLE t (a INT)", "SELECT * FROM read_text('/etc/passwd')", "FROM glob('/*')",
    "SELECT * FROM read_blob('/etc/hostname')", "SELECT * FROM duckdb_extensions()",
    "CREATE TABLE t AS PIVOT metrics ON key USING sum(value)",
    "COPY (PIVOT metrics ON key USING sum(value)) TO '/tmp/runlake-p.csv'",
    "SELECT 1) UNION (SELECT 2", "SELECT 1; DROP TABLE runs", "", "   \n\t  ", ";;",
    "ßüñ 日本", "\x00", "SELECT '\udcff'", "/* open comment", "SELECT ?",
    "SELECT INTERVAL 100000000 YEARS",
    "SELECT " + "+".join(["1"] * 2000), "SELECT '" + "x" * (1 << 20) + "'",
]


@pytest.mark.parametrize("sql", ODD, ids=lambda s: repr(s[:30]))
def test_every_odd_statement_is_one_line_exit_2(db, sql):
    """Refused or failing statements print one line and exit 2; the store is intact."""
    code, out, err = _sql(sql, "--db", db)
    assert code == 2 and not out
    assert err.startswith("runlake sql: error: ") and err.count("\n") == 1, err
    assert len(err) < 600
    assert run_query(db, "SELECT count(*) FROM metrics").rows == [(12,)]


def test_long_text_is_refused_before_planning(db):
    """Text beyond MAX_SQL_CHARS is refused: DuckDB can neither interrupt nor cap planning."""
    with pytest.raises(QueryError, match=f"at most {MAX_SQL_CHARS:,}"):
        run_query(db, "SELECT 1 -- " + "x" * MAX_SQL_CHARS)


@pytest.mark.parametrize("sql", ["SELECT 'ß日本' AS \"ü\"", "\ufeffSELECT 1", "(SELECT 1)",
                                 "EXPLAIN PIVOT metrics ON key USING sum(value)",
                                 "SUMMARIZE metrics", "FROM metrics LIMIT 1", "SHOW TABLES"])
def test_odd_but_valid_queries_run(db, sql):
    """Unicode, a BOM, parentheses, EXPLAIN of a PIVOT, SUMMARIZE, FROM-first, SHOW run."""
    assert run_query(db, sql).rows


@pytest.mark.parametrize("timeout, memory, rows, expected", [
    (None, None, None, Limits(30.0, 2 * 10**9, DEFAULT_MAX_ROWS)),
    ("2m", "512MB", 10, Limits(120.0, 512 * 10**6, 10)),
    ("90s", "1.5GiB", 0, Limits(90.0, int(1.5 * 2**30), None)),
    (0, 0, None, Limits(None, None, DEFAULT_MAX_ROWS)),
    ("none", "off", None, Limits(None, None, DEFAULT_MAX_ROWS)),
    (2.5, 1 << 20, None, Limits(2.5, 1 << 20, DEFAULT_MAX_ROWS)),
])
def test_limits_resolve(timeout, memory, rows, expected):
    """Durations and sizes in their usual spellings; 0/none switch a limit off."""
    assert Limits.resolve(timeout, memory, rows, env={}) == expected


@pytest.mark.parametrize("kwargs, env, message", [
    ({"timeout": "abc"}, {}, "--timeout must be seconds"),
    ({"timeout": -1}, {}, "--timeout must be a positive number"),
    ({"timeout": "inf"}, {}, "--timeout must be seconds"),
    ({"memory": "4"}, {}, "--memory must be a size with a unit"),
    ({"memory": "lots"}, {}, "--memory must be a size"),
    ({"max_rows": -5}, {}, "--limit must be a number of rows"),
    ({}, {"RUNLAKE_SQL_TIMEOUT": "soon"}, r"\$RUNLAKE_SQL_TIMEOUT must be seconds"),
    ({}, {"RUNLAKE_SQL_MEMORY": "-1GB"}, r"\$RUNLAKE_SQL_MEMORY must be a size"),
])
def test_bad_limits_are_one_line_config_errors(kwargs, env, message):
    """A limit that is not a duration or a size says what was expected and what it got."""
    with pytest.raises(ConfigError, match=message):
        Limits.resolve(env=env, **kwargs)


def test_bad_limit_flag_exits_2(db):
    """A bad --timeout is a one-line CLI error, not a traceback."""
    code, _, err = _sql("SELECT 1", "--db", db, "--timeout", "forever")
    assert code == 2 and err.count("\n") == 1 and "--timeout must be seconds" in err
