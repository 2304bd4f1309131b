"""`runlake export parquet|csv`: the selected runs' rows of any table, read back equal."""

from __future__ import annotations

import duckdb
import pytest

from runlake.cli import main


@pytest.fixture
def two_runs(tmp_path, store_rows):
    import runlake

    root = tmp_path / "root"
    ids = []
    for name in ("alpha", "beta"):
        run = runlake.init("p", name, root=root, console=False, system_interval=0)
        for s in range(10):
            run.log({"loss": s * 0.25, "acc": 1 - s * 0.05}, step=s)
        run.log_data([f"{name}-{i}" for i in range(3)], split="train", step=0)
        run.finish()
        ids.append(run.id)
    store_rows(root, "SELECT 1")
    return root, ids


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_one_run_matches_the_store(two_runs, tmp_path, fmt):
    """The exported file holds exactly the run's rows, equal to the store's."""
    root, (alpha, beta) = two_runs
    out = tmp_path / "out"
    assert main(["export", fmt, "alpha", "--table", "metrics", "--table", "data_items", "-o", str(out),
                 "--root", str(root)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"data_items.{fmt}", f"metrics.{fmt}"]
    reader = "read_parquet" if fmt == "parquet" else "read_csv_auto"
    con = duckdb.connect()
    got = con.execute(f"SELECT run_id, rank, step, key, value FROM {reader}(?) ORDER BY step, key",
                      [str(out / f"metrics.{fmt}")]).fetchall()
    store = duckdb.connect(str(root / "runlake.duckdb"), read_only=True)
    want = store.execute("SELECT run_id, rank, step, key, value FROM metrics WHERE run_id = ? ORDER BY step, key",
                         [alpha]).fetchall()
    store.close()
    assert got == want and len(got) == 20
    items = con.execute(f"SELECT item_id FROM {reader}(?) ORDER BY item_id", [str(out / f"data_items.{fmt}")]).fetchall()
    assert items == [("alpha-0",), ("alpha-1",), ("alpha-2",)]


def test_export_all_tables_for_several_runs(two_runs, tmp_path):
    """Without --table every per-run table is written; both runs' rows are in them."""
    root, ids = two_runs
    out = tmp_path / "all"
    assert main(["export", "parquet", *ids, "-o", str(out), "--root", str(root)]) == 0
    con = duckdb.connect()
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(out / "runs.parquet")]).fetchone() == (2,)
    assert con.execute("SELECT count(DISTINCT run_id) FROM read_parquet(?)", [str(out / "metrics.parquet")]).fetchone() == (2,)
    assert (out / "metric_summary.parquet").exists() and (out / "checkpoints.parquet").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["export", "parquet", "nope", "-o", "X"], "no run matches 'nope'"),
        (["export", "csv", "alpha", "--table", "ingest_ledger; DROP TABLE runs", "-o", "X"], "cannot export table"),
    ],
)
def test_bad_arguments_give_one_line_errors(two_runs, tmp_path, capsys, args, message):
    """Unknown runs or tables exit with code 2 and say what is expected."""
    root, _ = two_runs
    args = [a if a != "X" else str(tmp_path / "x") for a in args]
    assert main([*args, "--root", str(root)]) == 2
    assert message in capsys.readouterr().err
