"""One way of running queries: full run ids work in every command, and no read path leaves a
half-fetched result on its connection (DuckDB 2 refuses the next ``con.sql`` then)."""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path

import duckdb
import pytest

from runlake.analysis._common import frame, records, rows, scalar
from runlake.cli import main

REPO = Path(__file__).resolve().parents[2]
IDS = ["20240101-000000-aaaaaa", "20240101-000001-bbbbbb", "20240101-000002-cccccc"]


@pytest.fixture
def full_id_store(builder):
    """Three runs with demo-style full ids, metrics, lineage and checkpoints."""
    for seed, rid in enumerate(IDS):
        builder.run(rid, name=f"mlp-s{seed}", config={"lr": 1e-3, "seed": seed})
        builder.metric(rid, "val/acc", [0.5 + 0.1 * seed, 0.6 + 0.1 * seed, 0.7], steps=[9, 19, 29])
        builder.metric(rid, "train/loss", [1.0 / (s + 1) for s in range(30)])
        for step in range(0, 30, 10):
            builder.items(rid, step, [f"img_{i}" for i in range(step, step + 10)], epoch=step // 10)
            builder.checkpoint(rid, step + 9, f"ckpt-{step + 9}.pt")
    return builder.build()


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", [
    ["compare", *IDS, "--metric", "val/acc"],
    ["compare", *IDS, "--metric", "val/acc", "--by", "seed"],
    ["compare", *IDS, "--metric", "val/acc", "--json"],
    ["lineage", "run", IDS[0]],
    ["lineage", "run", IDS[0], "--checkpoint", "19"],
    ["lineage", "run", IDS[0], "--csv"],
    ["lineage", "diff", IDS[0], IDS[1]],
    ["anomalies", IDS[0]],
    ["logs", IDS[1]],
    ["report", *IDS, "--format", "json", "-o", "{tmp}/r.json"],
    ["export", "csv", IDS[2], "-o", "{tmp}/csv"],
], ids=["compare", "compare-by", "compare-json", "lineage-run", "lineage-checkpoint", "lineage-csv",
        "lineage-diff", "anomalies", "logs", "report", "export-csv"])
def test_commands_take_full_run_ids(full_id_store, tmp_path, argv):
    """Every command that resolves RUN accepts exact run ids (DuckDB 2 crashed with
    ResourceInUseException: resolving an exact id left a half-fetched result behind)."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = _cli(*argv, "--db", full_id_store)
    assert code == 0, err
    assert out.strip() and not err


def test_helpers_leave_the_connection_free():
    """After each helper, even on a many-row result, the next relation query runs."""
    con = duckdb.connect()
    many = "SELECT i, i * 2 AS j FROM range(5000) t(i) WHERE i >= ?"
    assert scalar(con, many, [10]) == 10
    assert con.sql("SELECT 1").fetchall() == [(1,)]
    assert rows(con, many, [4998]) == [(4998, 9996), (4999, 9998)]
    assert records(con, "SELECT 1 AS a, 'x' AS b") == [{"a": 1, "b": "x"}]
    assert scalar(con, "SELECT 1 WHERE false") is None
    assert frame(con, "SELECT i FROM range(3) t(i) WHERE i < $n", {"n": 2})["i"].to_list() == [0, 1]
    assert con.sql("SELECT 2").fetchall() == [(2,)]


# The packages that query the store (ingest sits below analysis, so it keeps
# `execute(...).fetchall()`, which also consumes the whole result).
SCANNED = ("analysis", "runlake", "dashboard", "ingest")
# Where a partial fetch is the point, and why it is safe there.
ALLOWED_PARTIAL = {
    "analysis/_common.py": "the query helpers themselves",
    "analysis/sql.py": "the SQL console stops at --limit rows on a connection of its own, closed at once",
    # not the store: stdlib sqlite3 cursors on another tool's database file, each one
    # independent of the next (the DuckDB 2 failure cannot happen there)
    "ingest/mlflow_sqlite.py": "MLflow's SQLite file: fetchmany streams a run's points in batches",
    "ingest/import_trackio.py": "trackio's SQLite file: one-row probes (count, LIMIT 1)",
}
PARTIAL = {"fetchone", "fetchmany", "fetch_df_chunk", "fetch_record_batch"}


def _violations(path: Path) -> list[str]:
    """Partial fetches, and ``execute(...)`` results read any way but ``.fetchall()``."""
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        on_execute = (isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
                      and node.value.func.attr == "execute")
        if on_execute and node.attr != "fetchall":
            found.append(f"{name}:{node.lineno} execute(...).{node.attr}")
        elif not on_execute and node.attr in PARTIAL:
            found.append(f"{name}:{node.lineno} .{node.attr}()")
    return sorted(found)


def test_no_read_path_leaves_a_result_half_fetched():
    """Outside the helpers, no code reads a result partly (fetchone/fetchmany) or keeps an
    ``execute`` result around: that is what made the next ``con.sql`` raise on DuckDB 2.
    New reads use ``analysis._common.frame/rows/records/scalar``."""
    bad = []
    for pkg in SCANNED:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if str(path.relative_to(REPO)) not in ALLOWED_PARTIAL:
                bad += _violations(path)
    assert not bad, "partial or kept query results (use analysis._common helpers):\n" + "\n".join(bad)


def test_the_scan_sees_the_pattern_that_crashed(tmp_path):
    """The scan flags the call shapes behind the crash, and not a full fetch or a write."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "a = con.execute('SELECT 1').fetchone()\n"
        "cur = con.execute('SELECT 1'); b = cur.fetchmany(2)\n"
        "c = con.execute('SELECT 1').description\n"
        "d = con.execute('SELECT 1').fetchall()\n"
        "con.execute('DELETE FROM t')\n", encoding="utf-8")
    assert _violations(sample) == [
        "sample.py:1 execute(...).fetchone", "sample.py:2 .fetchmany()",
        "sample.py:3 execute(...).description"]
