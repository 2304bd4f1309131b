"""`runlake import mlflow`: runs written by the real MLflow client (file store and SQLite
backend) land in the store exactly as MLflow's own client reads them back; a second import
adds nothing; damaged stores are reported run by run and the rest imported; the source is
never written."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from runlake.cli import main
from runlake.ingest.import_mlflow import import_mlflow, param_value
from runlake.schemas.codec import decode_lines
from runlake.schemas.errors import ConfigError
from runlake.schemas.segments import iter_frames
from runlake.store import read_store

T0 = 1_700_000_000_000  # ms
DBL_MAX = 1.7976931348623157e308
PARAMS = {"lr": 0.001, "layers": 3, "opt": "adam", "flag": True, "none": None, "sizes": [1, 2],
          "sci": "1e-4", "zip": "007", "neg": -2.5}


def _write(client: MlflowClient) -> dict[str, str]:
    """The same runs in any backend; returns {name: MLflow run id}."""
    exp = client.create_experiment("my exp/1")
    other = client.create_experiment("other")
    ids = {}

    def run(name, exp_id=exp, start=T0, tags=None):
        r = client.create_run(exp_id, start_time=start, run_name=name, tags=tags or {})
        ids[name] = r.info.run_id
        return r.info.run_id

    rid = run("first", tags={"team": "a", "stage": "", "mlflow.note.content": "hello notes"})
    client.log_batch(rid, params=[Param(k, str(v)) for k, v in PARAMS.items()])
    metrics = [Metric("loss", 1.0 / (s + 1), T0 + 10 * s, s) for s in range(50)]
    metrics += [Metric("val/loss", v, T0 + 10 * s + 1, s) for s, v in
                enumerate([0.5, float("nan"), float("inf"), float("-inf"), 0.25])]
    metrics += [Metric("loss", 0.123, T0 + 999, 49), Metric("loss", 0.124, T0 + 999, 49)]  # same step+time
    metrics += [Metric("deep/a/b", 7.0, T0 + 5, 0)]
    client.log_batch(rid, metrics=metrics)
    client.set_terminated(rid, "FINISHED", end_time=T0 + 5000)
    rid = run("bad", start=T0 + 10_000)
    client.log_batch(rid, metrics=[Metric("x", 2.0, T0 + 10_001, 3)])
    client.set_terminated(rid, "FAILED", end_time=T0 + 10_500)
    client.set_terminated(run("stopped", start=T0 + 20_000), "KILLED", end_time=T0 + 20_100)
    run("still", start=T0 + 30_000)  # RUNNING
    gone = run("gone", start=T0 + 40_000)
    client.delete_run(gone)
    parent = run("parent", exp_id=other, start=T0 + 50_000)
    child = run("child", exp_id=other, start=T0 + 50_001, tags={"mlflow.parentRunId": parent})
    client.log_batch(child, metrics=[Metric("c", 1.5, T0 + 50_002, 1)])
    for r in (parent, child):
        client.set_terminated(r, "FINISHED", end_time=T0 + 60_000)
    return ids


@pytest.fixture(scope="module")
def _file_store(tmp_path_factory):
    """(uri, {name: MLflow run id}) of a file store written by MLflow itself."""
    saved = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.13+ refuses file stores without it
    try:
        uri = (tmp_path_factory.mktemp("mlflow") / "mlruns").as_uri()
        yield uri, _write(MlflowClient(tracking_uri=uri))
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = saved


@pytest.fixture(scope="module")
def _sqlite_store(tmp_path_factory):
    """(uri, {name: MLflow run id}) of a SQLite backend written (and migrated) by MLflow."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    return uri, _write(MlflowClient(tracking_uri=uri))


def _rows(root, sql, params=()):
    with read_store(root=root) as con:
        return con.execute(sql, list(params)).fetchall()


def _run_of(root, mlflow_id) -> tuple:
    (row,) = _rows(root, "SELECT run_id, project, name, group_name, status, epoch_ms(started_at), "
                         "epoch_ms(ended_at), config, tags FROM runs "
                         "WHERE json_extract_string(config, '$._mlflow.run_id') = ?", [mlflow_id])
    return row


def _same(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def _segment_events(root, project, run_id):
    (seg,) = (Path(root) / project / run_id).glob("*/000000.jsonl.zst")
    events = []
    for _span, content in iter_frames(seg.read_bytes(), sealed=True):
        events += decode_lines(content)[0]
    return events


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if p.is_file():
            h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", ["file", pytest.param("sqlite", marks=pytest.mark.slow)])
def test_import_equals_what_mlflow_reads_back(request, kind, tmp_path):
    uri, ids = request.getfixturevalue(f"_{kind}_store")
    source = Path(uri.removeprefix("file://").removeprefix("sqlite:///"))
    before = _digest(source)
    client = MlflowClient(tracking_uri=uri)
    results = import_mlflow(uri, root=tmp_path)
    assert _digest(source) == before  # read-only: never migrated or touched
    status = {r.name: r.status for r in results}
    assert status == {"first": "imported", "bad": "imported", "stopped": "imported", "still": "imported",
                      "gone": "skipped", "parent": "imported", "child": "imported"}
    for name, mlflow_id in ids.items():
        if name == "gone":
            assert not _rows(tmp_path, "SELECT 1 FROM runs WHERE name = 'gone'")
            continue
        info = client.get_run(mlflow_id)
        run_id, project, rname, group, st, started, ended, config, tags = _run_of(tmp_path, mlflow_id)
        assert rname == info.info.run_name == name
        assert project == ("other" if name in ("parent", "child") else "my-exp-1")
        assert started == info.info.start_time
        assert st == {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed",
                      "RUNNING": "crashed"}[info.info.status]
        assert ended == (info.info.end_time if info.info.status != "RUNNING" else None)
        config = json.loads(config)
        assert config["_mlflow"]["status"] == info.info.status
        assert {k: v for k, v in config.items() if k != "_mlflow"} == {
            k: param_value(v) for k, v in info.data.params.items()}
        user_tags = {k: v for k, v in info.data.tags.items() if not k.startswith("mlflow.")}
        assert sorted(tags) == sorted(f"{k}={v}" if v else k for k, v in user_tags.items())
        assert group == ("parent" if name == "child" else None)
        for key in info.data.metrics:
            want = sorted((m.step, m.timestamp * 1000, _same(m.value if abs(m.value) != DBL_MAX
                                                              else math.copysign(math.inf, m.value)))
                          for m in client.get_metric_history(mlflow_id, key))
            got = sorted((s, t, _same(v)) for s, t, v in _rows(
                tmp_path, "SELECT step, epoch_us(ts), value FROM metrics WHERE run_id = ? AND key = ?",
                [run_id, key]))
            assert got == want, (name, key)
        n = _rows(tmp_path, "SELECT count(*) FROM metrics WHERE run_id = ?", [run_id])[0][0]
        assert n == sum(len(client.get_metric_history(mlflow_id, k)) for k in info.data.metrics), name
    first = _run_of(tmp_path, ids["first"])
    assert json.loads(first[7])["sizes"] == [1, 2] and json.loads(first[7])["sci"] == "1e-4"
    notes = [e.notes for e in _segment_events(tmp_path, "my-exp-1", first[0]) if e.__class__.__name__ == "RunUpdate"]
    assert notes == ["hello notes"]
    logs = _rows(tmp_path, "SELECT message FROM logs WHERE logger = 'runlake.import' AND run_id = ?",
                 [_run_of(tmp_path, ids["still"])[0]])
    assert any("RUNNING" in m for (m,) in logs)

    counts = _rows(tmp_path, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM runs), "
                             "(SELECT count(*) FROM logs)")
    again = import_mlflow(uri, root=tmp_path)
    assert {r.status for r in again} == {"exists", "skipped"}
    assert _rows(tmp_path, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM runs), "
                           "(SELECT count(*) FROM logs)") == counts


def test_params_become_values_only_when_their_text_is_exactly_python_str():
    for value in (3, -2, 0.001, -2.5, 1e-05, True, False, None, [1, 2], {"a": [1, "x"]}, 12345678901234567890):
        assert param_value(str(value)) == value and type(param_value(str(value))) is type(value)
    for text in ("1e-4", "007", "adam", "nan", "inf", "1_000", " 3", "(1, 2)", "{1, 2}", "[nan]", "3.0e2", ""):
        assert param_value(text) == text


@pytest.fixture
def file_store(_file_store, tmp_path):
    """A private copy of the file store, to damage."""
    dst = tmp_path / "mlruns"
    shutil.copytree(Path(_file_store[0].removeprefix("file://")), dst)
    return dst, _file_store[1]


def _run_dir(store: Path, mlflow_id: str) -> Path:
    (d,) = store.glob(f"*/{mlflow_id}")
    return d


def test_damaged_file_store_reports_each_problem_and_imports_the_rest(file_store, tmp_path, capsys):
    store, ids = file_store
    loss = _run_dir(store, ids["first"]) / "metrics" / "loss"
    data = loss.read_bytes()
    loss.write_bytes(data[:-7])  # cut mid-line: the last point is torn
    torn = data[:-7].rsplit(b"\n", 1)[0].count(b"\n") + 1  # whole lines left
    (_run_dir(store, ids["bad"]) / "meta.yaml").unlink()
    shutil.rmtree(_run_dir(store, ids["stopped"]) / "params")
    (_run_dir(store, ids["child"]) / "meta.yaml").write_text("run_id: [unclosed\n")
    (store / ".trash" / "123").mkdir(parents=True, exist_ok=True)  # a deleted experiment
    root = tmp_path / "root"
    rc = main(["import", "mlflow", str(store), "--root", str(root)])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"{loss}: last line cut short" in err
    assert "meta.yaml is missing: status and times unknown" in err and "not valid YAML" in err
    first = _run_of(root, ids["first"])[0]
    assert _rows(root, "SELECT count(*) FROM metrics WHERE run_id = ? AND key = 'loss'", [first])[0][0] == torn
    logs = [m for (m,) in _rows(root, "SELECT message FROM logs WHERE run_id = ? AND logger = 'runlake.import'",
                                [first])]
    assert any("last line cut short" in m for m in logs)
    # the run without meta.yaml: found by its folder, its metric kept, no end
    (bad,) = _rows(root, "SELECT r.status, m.value FROM runs r JOIN metrics m USING (run_id) WHERE m.key = 'x'")
    assert bad == ("crashed", 2.0)
    assert _run_of(root, ids["stopped"])[4] == "killed"  # no params folder: still imported
    assert len(_rows(root, "SELECT * FROM runs")) == 6
    assert "1 deleted experiment(s) in" in err and ".trash not imported" in err


def test_a_metrics_file_with_garbage_lines_keeps_the_good_ones(file_store, tmp_path):
    store, ids = file_store
    x = _run_dir(store, ids["bad"]) / "metrics" / "x"
    x.write_bytes(x.read_bytes() + b"not a line\n1700000099999 oops 4\n1700000099999 5.5 5\n")
    (r,) = [r for r in import_mlflow(store, root=tmp_path) if r.name == "bad"]
    assert any("2 unreadable line(s) skipped" in p for p in r.problems)
    assert sorted(_rows(tmp_path, "SELECT step, value FROM metrics WHERE key = 'x'")) == [(3, 2.0), (5, 5.5)]


@pytest.mark.slow
def test_sqlite_newer_schema_and_damage(_sqlite_store, tmp_path, capsys):
    src = Path(_sqlite_store[0].removeprefix("sqlite:///"))
    db = tmp_path / "copy.db"
    shutil.copy(src, db)
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE metrics ADD COLUMN model_id TEXT")  # a newer MLflow's column
    con.commit()
    con.close()
    (r, *_) = import_mlflow(f"sqlite:///{db}", root=tmp_path / "a")
    assert any("metrics.model_id: a column this importer does not know" in n for n in r.notes)
    client = MlflowClient(tracking_uri=_sqlite_store[0])
    first = _sqlite_store[1]["first"]
    points = sum(len(client.get_metric_history(first, k)) for k in client.get_run(first).data.metrics)
    assert r.name == "first" and r.status == "imported" and r.counts["points"] == points

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    rc = main(["import", "mlflow", str(junk), "--root", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(junk) in err and "Traceback" not in err
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(ConfigError, match="not a SQLite database"):
        import_mlflow(tmp_path / "notes.db")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(ConfigError, match="has no experiments or runs table"):
        import_mlflow(tmp_path / "other.db")


def test_cli_errors_are_one_line(tmp_path, capsys):
    for source in (str(tmp_path / "nothere"), "http://localhost:5000", f"sqlite:///{tmp_path}/no.db"):
        rc = main(["import", "mlflow", source, "--root", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "runlake import: error:" in err, err
    assert main(["import", "mlflow", str(tmp_path), "--project", "../up", "--root", str(tmp_path)]) == 2
    assert "invalid project '../up'" in capsys.readouterr().err
    (tmp_path / "p.db").write_text("x")
    for tool, source in (("mlflow", tmp_path), ("trackio", tmp_path / "p.db")):
        # importers write local files: an s3:// root is refused, not folded into a folder 's3:'
        assert main(["import", tool, str(source), "--root", "s3://bucket/runs"]) == 2
        assert "cannot import into s3://bucket/runs" in capsys.readouterr().err
    assert not (Path.cwd() / "s3:").exists()
    (tmp_path / "empty").mkdir()
    assert main(["import", "mlflow", str(tmp_path / "empty")]) == 2
    assert "no MLflow experiments under" in capsys.readouterr().err
