"""Every reader finds the root's store through locate(): on a lake root the CLI, the SQL
console, analysis, the façade and the dashboard read the lake with nothing configured;
a root whose stores disagree is one clear error everywhere."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("deltalake")

from runlake.cli import main  # noqa: E402
from runlake.schemas.errors import StoreError  # noqa: E402
from runlake.store import locate  # noqa: E402
from runlake.store.location import LAKE_DIR, STORE_ENV  # noqa: E402
from tests.store._lake_util import ingest_duck, ingest_lake, write_segments  # noqa: E402

RUNS, STEPS, KEYS = 2, 60, 3


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    """A root whose only store is a lake, written by a real ingest pass."""
    root = tmp_path_factory.mktemp("lake-root")
    write_segments(root, runs=RUNS, steps=STEPS, keys=KEYS, garbage=False)
    ingest_lake(root)
    assert not (root / "runlake.duckdb").exists()
    return root


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.delenv("RUNLAKE_DB", raising=False)


def test_cli_reads_the_lake_of_a_lake_root(lake_root, capsys):
    """`runlake runs` and `runlake sql` (the console's private instance) read the lake."""
    assert main(["runs", "--root", str(lake_root), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert sorted(r["run_id"] for r in runs) == ["run-00", "run-01"]
    assert main(["sql", "--root", str(lake_root), "--json",
                 "SELECT count(*) AS n FROM metrics"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": RUNS * STEPS * KEYS}]


def test_the_console_guard_still_holds_on_a_lake(lake_root, capsys):
    """The SQL console over a lake still refuses file access (its sandbox is intact)."""
    assert main(["sql", "--root", str(lake_root), "SELECT * FROM read_csv('/etc/passwd')"]) == 2
    assert "error" in capsys.readouterr().err


def test_facade_and_analysis_read_the_lake(lake_root):
    """runlake.connect()/query() and analysis's run_query find the lake from the root."""
    import runlake
    from runlake.analysis.sql import run_query

    con = runlake.connect(root=lake_root)
    try:
        assert con.execute("SELECT count(DISTINCT run_id) FROM metrics").fetchone() == (RUNS,)
    finally:
        con.close()
    assert runlake.query("SELECT count(*) AS n FROM runs", root=lake_root)["n"].to_list() == [RUNS]
    assert run_query(None, "SELECT count(*) FROM logs", root=lake_root).rows[0][0] > 0


def test_dashboard_store_path_is_the_lake(lake_root, monkeypatch):
    """The dashboard's store is the root's lake when --root names a lake root."""
    pytest.importorskip("streamlit")
    from runlake.dashboard.data import store_path

    assert store_path(["--root", str(lake_root)]) == lake_root / LAKE_DIR


def test_a_root_whose_stores_disagree_is_one_line_exit_2(tmp_path, capsys):
    """Both a DuckDB file and a lake, no setting: every command says so and exits 2."""
    write_segments(tmp_path, runs=1, steps=10, keys=1, garbage=False)
    ingest_lake(tmp_path)
    ingest_duck(tmp_path, tmp_path / "runlake.duckdb")
    with pytest.raises(StoreError):
        locate(tmp_path)
    for argv in (["runs"], ["sql", "SELECT 1"], ["logs", "run-00"], ["anomalies"]):
        assert main([*argv, "--root", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert str(tmp_path / "runlake.duckdb") in err and str(tmp_path / LAKE_DIR) in err


def test_the_dashboard_token_moves_with_lake_commits(tmp_path):
    """On a lake the dashboard's cheap signature changes when ingest commits new data and
    when detect replaces anomalies (and not otherwise), so its caches refresh."""
    pytest.importorskip("streamlit")
    from runlake.analysis.anomalies import detect
    from runlake.dashboard import data

    write_segments(tmp_path, runs=1, steps=30, keys=2, garbage=False, prefix="a")
    ingest_lake(tmp_path)
    lake = tmp_path / LAKE_DIR
    first = data.change_token(lake)
    sig = data.file_signature(lake)
    assert data.file_signature(lake) == sig and data.change_token(lake) == first
    write_segments(tmp_path, runs=1, steps=30, keys=2, garbage=False, prefix="b")
    ingest_lake(tmp_path)
    assert data.file_signature(lake) != sig
    second = data.change_token(lake)
    assert second != first
    sig = data.file_signature(lake)
    detect(lake)
    assert data.file_signature(lake) != sig
