"""What the read commands print and write: run names instead of bare ids, JSON (not Python
reprs) in CSV cells and Parquet exports, `lineage --checkpoint` applied to every section,
augmentation keys with any character, and what `anomalies --refresh` says it found."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import polars as pl
import pytest

from runlake.analysis import lineage
from runlake.analysis.report import build_report
from runlake.analysis.runs import run_labels
from runlake.cli import main

A, B, C = "20240101-000000-aaaaaa", "20240101-000001-bbbbbb", "20240101-000002-cccccc"


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def store(builder):
    """A is "baseline"; B and C are both named "sweep" (names repeat)."""
    for rid, name, seed in ((A, "baseline", 0), (B, "sweep", 1), (C, "sweep", 2)):
        builder.run(rid, name=name, config={"opt": {"lr": 1e-3}, "seed": seed, "layers": [2, 4]})
        builder.metric(rid, "val/acc", [0.5, 0.6 + seed / 100], steps=[9, 19])
        for epoch, step in enumerate((0, 10, 20)):
            builder.items(rid, step, [f"img_{i}" for i in range(5 * epoch, 5 * epoch + 10)],
                          epoch=epoch, augment={'it"s': epoch, "a'b": True, "x.y": [1, 2]})
        builder.checkpoint(rid, 9, "ckpt-9.pt")
        builder.checkpoint(rid, 19, "ckpt-19.pt")
        builder.dataset(rid, "toy", 20, split="train")
    return builder.build()


def test_run_labels_are_names_with_ids_where_names_repeat(store, reader):
    """A unique name labels its run; runs sharing a name are labelled by id."""
    with reader(store) as con:
        assert run_labels(con, [A, B, C]) == {A: "baseline", B: B, C: C}
        assert run_labels(con, [A, B]) == {A: "baseline", B: "sweep"}


def test_compare_shows_names(store):
    """The compare table, config diff and best line name runs; same-named runs keep ids."""
    code, out, err = _cli("compare", A, B, "--metric", "val/acc", "--by", "seed", "--db", store)
    assert code == 0, err
    table = out.split("# config differences")[0]
    assert "baseline" in table and "sweep" in table and A not in table and B not in table
    diff_header = out.split("# config differences\n")[1].splitlines()[0].split()
    assert diff_header == ["key", "baseline", "sweep"]
    assert "best: sweep (" + B + ")" in out
    code, out, _ = _cli("compare", A, B, C, "--metric", "val/acc", "--db", store)
    assert "baseline" in out and B in out and C in out


def test_compare_machine_formats_keep_ids_beside_names(store):
    """--json and --csv keep run_id (for scripts) and add the run label."""
    _, out, _ = _cli("compare", A, B, "--metric", "val/acc", "--json", "--db", store)
    table = json.loads(out)["table"]
    assert {(r["run"], r["run_id"]) for r in table} == {("baseline", A), ("sweep", B)}
    _, out, _ = _cli("compare", A, B, "--metric", "val/acc", "--csv", "--db", store)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["run"], r["run_id"]) for r in rows} == {("baseline", A), ("sweep", B)}


def test_report_labels_runs(store, tmp_path):
    """The report labels runs by name, by id where names repeat: two runs named "sweep"
    each keep their own curve (one label for both had merged them into one)."""
    from runlake.analysis.report import write_report

    report = build_report(store, [A, B, C], metrics=["val/acc"])
    assert [r["label"] for r in report["runs"]] == ["baseline", B, C]
    html = write_report(report, tmp_path / "r.html").read_text(encoding="utf-8")
    titles = re.findall(r'<polyline class="curve"[^>]*><title>([^<]*)</title>', html)
    assert sorted(set(titles)) == sorted(["baseline", B, C])


@pytest.mark.parametrize("argv", [["runs", "--csv"], ["sql", "SELECT run_id, tags, config, "
                                  "{'k': [1, 2]} AS s, [1, 2] AS l FROM runs", "--csv"]])
def test_csv_cells_are_json(store, argv):
    """Lists and dicts in CSV cells are JSON a reader can parse, not Python reprs."""
    code, out, err = _cli(*argv, "--db", store)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows
    for row in rows:
        assert json.loads(row["config"])["opt"] == {"lr": 1e-3}
        if "s" in row:
            assert json.loads(row["s"]) == {"k": [1, 2]} and json.loads(row["l"]) == [1, 2]
        else:
            assert list(json.loads(row["metrics"])) == ["val/acc"]


def test_parquet_export_writes_json_columns_as_text(store, tmp_path):
    """config and augment come back from Parquet as JSON strings, not binary."""
    code, _, err = _cli("export", "parquet", A, "-o", tmp_path / "out", "--db", store)
    assert code == 0, err
    runs = pl.read_parquet(tmp_path / "out" / "runs.parquet")
    assert runs["config"].dtype == pl.String
    assert json.loads(runs["config"][0]) == {"opt": {"lr": 1e-3}, "seed": 0, "layers": [2, 4]}
    items = pl.read_parquet(tmp_path / "out" / "data_items.parquet")
    assert items["augment"].dtype == pl.String
    assert json.loads(items["augment"][0])['it"s'] == 0


def test_checkpoint_restricts_coverage_and_leakage(store, reader):
    """At checkpoint 9 only epoch 0 had been drawn: coverage shows epoch 0 alone."""
    with reader(store) as con:
        cov = lineage.coverage(con, A, checkpoint_step=9)
        assert cov["epoch"].to_list() == [0] and cov["distinct_items"].to_list() == [10]
        assert lineage.coverage(con, A)["epoch"].to_list() == [0, 1, 2]
    code, out, err = _cli("lineage", "run", A, "--checkpoint", "9", "--db", store)
    assert code == 0, err
    section = out.split("# coverage per epoch and split")[1].split("# train/eval")[0]
    epochs = [line.split()[0] for line in section.splitlines()[3:] if line.strip()]
    assert epochs == ["0"]


def test_checkpoint_that_does_not_exist_is_one_line(store):
    """An unknown checkpoint step is exit 2 and names the steps that exist."""
    code, _, err = _cli("lineage", "run", A, "--checkpoint", "5", "--db", store)
    assert code == 2 and "[9, 19]" in err and "Traceback" not in err


def test_augment_keys_with_quotes_dots_and_apostrophes(store, reader):
    """Every augmentation key is counted as written (a quote broke the JSON path query)."""
    with reader(store) as con:
        found = lineage.augmentation_breakdown(con, A)
    assert set(found["param"].to_list()) == {'it"s', "a'b", "x.y"}
    quoted = found.filter(pl.col("param") == 'it"s')
    assert dict(zip(quoted["value"].to_list(), quoted["draws"].to_list())) == {"0": 10, "1": 10, "2": 10}


def test_anomalies_refresh_says_what_it_found(store):
    """After --refresh an empty result says the detectors ran, not to run them."""
    code, out, err = _cli("anomalies", "--refresh", "--severity", "critical", A, "--db", store)
    assert code == 0, err
    assert "--refresh to run" not in out
    assert "ran just now" in out or "[CRITICAL]" in out
    code, out, _ = _cli("anomalies", "--severity", "critical", A, "--db", store)
    assert "ran just now" not in out
