"""The read-only SQL guard against each attack, and RUN resolution / run listing."""

from __future__ import annotations

import pytest

from runlake.analysis.runs import list_runs, resolve_run, resolve_runs
from runlake.analysis.sql import run_readonly
from runlake.ingest import ingest
from runlake.schemas.errors import QueryError, RunNotFoundError
from runlake.store import read_store


@pytest.fixture(scope="module")
def lake(tmp_path_factory, segment_writer):
    """A store with three runs: two share the name 'same', ids share prefixes."""
    root = tmp_path_factory.mktemp("lake")
    for run_id, name in (("abc-111", "same"), ("abc-222", "same"), ("xyz-333", "unique")):
        w = segment_writer(root, "proj", run_id).start(name=name, config={"id": run_id, "opt": {"lr": 0.1}})
        w.metrics(1, {"loss": 2.0, "acc": 0.5, "lr": 1.0}).metrics(2, {"loss": 1.0}).flush()
    ingest(root)
    return root / "runlake.duckdb"


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT * FROM runs) TO '/tmp/runlake-exfil.csv'",
        "ATTACH '/tmp/other.duckdb' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "CREATE TABLE t AS SELECT 1",
        "DELETE FROM metrics",
        "UPDATE runs SET status = 'x'",
        "DROP TABLE runs",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "PRAGMA version",
        "SELECT 1; DELETE FROM runs",
    ],
)
def test_sql_console_refuses_attacks(lake, sql):
    """Writes, file access, extensions, settings and multiple statements are refused."""
    with pytest.raises(QueryError, match="read-only") as err:
        run_readonly(lake, sql)
    assert "\n" not in str(err.value)
    assert run_readonly(lake, "SELECT count(*) FROM metrics")[1] == [(12,)]  # store intact


def test_sql_console_runs_selects_with_limit(lake):
    """SELECT, WITH and DESCRIBE work; limit caps the rows; bad SQL is a one-line QueryError."""
    columns, rows = run_readonly(lake, "WITH m AS (SELECT * FROM metrics) SELECT key FROM m "
                                       "ORDER BY key", limit=2)
    assert columns == ["key"] and len(rows) == 2
    assert run_readonly(lake, "DESCRIBE runs")[1][0][0] == "run_id"
    with pytest.raises(QueryError, match="SQL error: .*nowhere"):
        run_readonly(lake, "SELECT * FROM nowhere")
    with pytest.raises(QueryError, match="empty query"):
        run_readonly(lake, "  ;")


@pytest.mark.parametrize(
    "ref, expected",
    [("abc-111", "abc-111"), ("unique", "xyz-333"), ("xyz", "xyz-333"), ("abc-2", "abc-222")],
)
def test_resolve_run_by_id_name_or_prefix(lake, ref, expected):
    """RUN is a run id, a unique name, or a unique id prefix."""
    with read_store(lake) as con:
        assert resolve_run(con, ref) == expected


@pytest.mark.parametrize(
    "ref, message",
    [("nothing", "no run matches 'nothing'; `runlake runs` lists them"),
     ("same", "2 runs match name 'same': abc-"),
     ("abc", "2 runs match id prefix 'abc'"),
     ("", "empty RUN reference")],
)
def test_resolve_run_errors_list_candidates(lake, ref, message):
    """No match or several matches raise RunNotFoundError saying which runs matched."""
    with read_store(lake) as con, pytest.raises(RunNotFoundError, match=message.replace("(", ".")):
        resolve_run(con, ref)


def test_resolve_runs_and_list_runs(lake):
    """resolve_runs keeps order without duplicates; list_runs filters and shows key metrics."""
    with read_store(lake) as con:
        assert resolve_runs(con, ["unique", "abc-1", "xyz-333"]) == ["xyz-333", "abc-111"]
        runs = list_runs(con, project="proj", status="running")
        assert {r["run_id"] for r in runs} == {"abc-111", "abc-222", "xyz-333"}
        assert runs[0]["metrics"] == {"loss": 1.0, "acc": 0.5}
        assert {r["run_id"]: r["config"] for r in runs}["xyz-333"] == {"id": "xyz-333", "opt": {"lr": 0.1}}
        assert len(list_runs(con, limit=1)) == 1
        assert list_runs(con, status="failed") == []
