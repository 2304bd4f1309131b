"""`runlake import trackio`: a project written by the real trackio (in a subprocess, its
folders in tmp_path, offline) lands in the store as trackio's own reader returns it:
config, metric steps and timestamps, NaN/±Inf, histograms, media blobs, system metrics,
alerts; a second import adds nothing; older and newer schemas and damaged rows are
reported and the rest imported; the database is never written."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from runlake.cli import main
from runlake.ingest.import_trackio import import_trackio
from runlake.schemas.blobs import blob_path
from runlake.schemas.codec import decode_lines
from runlake.schemas.segments import iter_frames
from runlake.store import read_store

WRITER = Path(__file__).with_name("_trackio_writer.py")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """What _trackio_writer.py wrote and read back through trackio's SQLiteStorage."""
    home = tmp_path_factory.mktemp("trackio")
    env = {**os.environ, "HOME": str(home), "HF_HOME": str(home / "hf"), "TRACKIO_DIR": str(home / "trackio"),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("TRACKIO_SPACE_ID", None)  # never a Space: nothing leaves the machine
    env.pop("TRACKIO_SERVER_URL", None)
    subprocess.run([sys.executable, str(WRITER), str(home / "out.json")], env=env, check=True,
                   capture_output=True, timeout=240)
    out = json.loads((home / "out.json").read_text())
    out["db"] = Path(out["db"])
    assert out["db"].parent == home / "trackio"
    return out


def _rows(root, sql, params=()):
    with read_store(root=root) as con:
        return con.execute(sql, list(params)).fetchall()


def _us(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1e6)


def _same(v):
    return repr(v) if isinstance(v, float) and not math.isfinite(v) else v


def _segment_events(root: Path, run_dir_glob: str) -> list:
    (seg,) = root.glob(f"{run_dir_glob}/*/000000.jsonl.zst")
    events = []
    for _span, content in iter_frames(seg.read_bytes(), sealed=True):
        events += decode_lines(content)[0]
    return events


def _run(root, trackio_id) -> tuple:
    (row,) = _rows(root, "SELECT run_id, project, name, group_name, status, config FROM runs "
                         "WHERE json_extract_string(config, '$._trackio.run_id') = ?", [trackio_id])
    return row


@pytest.mark.slow
def test_import_equals_what_trackio_reads_back(project, tmp_path):
    db = project["db"]
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    results = import_trackio(db, root=tmp_path)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # opened read-only
    assert [(r.name, r.status) for r in results] == [("run-a", "imported"), ("run-b", "imported")]
    for trackio_id, want in project["runs"].items():
        run_id, proj, name, group, status, config = _run(tmp_path, trackio_id)
        assert (proj, name, status) == ("ported-proj", want["name"], "finished")
        assert group == want["config"]["_Group"]
        config = json.loads(config)
        assert {k: v for k, v in config.items() if k != "_trackio"} == {
            k: v for k, v in want["config"].items() if not k.startswith("_")}
        assert config["_trackio"]["created"] == want["config"]["_Created"]
        expected = sorted((log["step"], _us(log["timestamp"]), k, v) for log in want["logs"]
                          for k, v in log.items() if k not in ("step", "timestamp")
                          and (isinstance(v, (int, float)) or v in ("nan", "inf", "-inf")))
        got = sorted((s, t, k, _same(v)) for s, t, k, v in _rows(
            tmp_path, "SELECT step, epoch_us(ts), key, value FROM metrics WHERE run_id = ? "
                      "AND key NOT LIKE 'sys/%'", [run_id]))
        assert got == [(s, t, k, float(v) if isinstance(v, int) else v) for s, t, k, v in expected]

    run_a = _run(tmp_path, next(i for i, r in project["runs"].items() if r["name"] == "run-a"))[0]
    events = _segment_events(tmp_path, f"ported-proj/{run_a}")
    logs = {(log["step"], k): v for log in project["runs"][next(iter(project["runs"]))]["logs"]
            for k, v in log.items()}
    (hist,) = [e for e in events if e.__class__.__name__ == "Histogram"]
    assert (hist.edges, hist.counts) == (logs[(hist.step, "weights")]["bins"],
                                         [float(c) for c in logs[(hist.step, "weights")]["values"]])
    assert _rows(tmp_path, "SELECT key, step, edges, counts FROM histograms WHERE run_id = ?", [run_a]) == [
        ("weights", hist.step, hist.edges, hist.counts)]
    media = {e.key: e for e in events if e.__class__.__name__ == "Media"}
    assert sorted(_rows(tmp_path, "SELECT key, sha256, blob FROM media WHERE run_id = ?", [run_a])) == sorted(
        (k, m.sha256, f"ported-proj/{run_a}/blobs/{m.sha256[:2]}/{m.sha256}") for k, m in media.items())
    assert {k: m.media for k, m in media.items()} == {"sample": "image", "clip": "audio", "preds": "table",
                                                       "readme": "text"}
    for key in ("sample", "clip"):
        original = db.parent / "media" / logs[(media[key].step, key)]["file_path"]
        assert blob_path(tmp_path / "ported-proj" / run_a, media[key].sha256).read_bytes() == original.read_bytes()
    assert (media["sample"].meta["width"], media["sample"].meta["height"], media["sample"].caption) == (6, 4, "ramp")
    assert media["clip"].mime == "audio/wav" and media["clip"].meta["sample_rate"] == 8000
    table = json.loads(blob_path(tmp_path / "ported-proj" / run_a, media["preds"].sha256).read_bytes())
    assert table == {"columns": ["id", "text"], "data": [[1, "x"], [2, "y"]]}
    assert sorted(_rows(tmp_path, "SELECT key, value FROM metrics WHERE run_id = ? AND key LIKE 'sys/%'",
                        [run_a])) == [("sys/cpu/percent", 12.5), ("sys/gpu/0/util", 50.0)]
    assert _rows(tmp_path, "SELECT severity, message FROM alerts WHERE run_id = ?", [run_a]) == [
        ("critical", "loss spike: loss went up")]
    assert any("label" in m and "not numbers" in m for (m,) in _rows(
        tmp_path, "SELECT message FROM logs WHERE run_id = ? AND logger = 'runlake.import'", [run_a]))

    counts = _rows(tmp_path, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM runs), "
                             "(SELECT count(*) FROM alerts)")
    assert {r.status for r in import_trackio(db, root=tmp_path)} == {"exists"}
    assert _rows(tmp_path, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM runs), "
                           "(SELECT count(*) FROM alerts)") == counts


def _copy(project, tmp_path) -> Path:
    dst = tmp_path / "trackio"
    shutil.copytree(project["db"].parent, dst, ignore=shutil.ignore_patterns("*.lock"))
    return dst / project["db"].name


@pytest.mark.slow
def test_a_database_from_before_run_ids_imports_by_run_name(project, tmp_path):
    db = _copy(project, tmp_path)
    con = sqlite3.connect(db)
    for table in ("metrics", "configs", "system_metrics", "alerts"):  # trackio < 0.24 had no run_id
        cols = ", ".join(r[1] for r in con.execute(f"PRAGMA table_info({table})") if r[1] != "run_id")
        con.execute(f"CREATE TABLE old_{table} AS SELECT {cols} FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE old_{table} RENAME TO {table}")
    con.commit()
    con.close()
    results = import_trackio(db, root=tmp_path / "root", project="old")
    assert [(r.name, r.status) for r in results] == [("run-a", "imported"), ("run-b", "imported")]
    assert _rows(tmp_path / "root", "SELECT count(*) FROM metrics WHERE key = 'loss'")[0][0] == 22


@pytest.mark.slow
def test_damage_and_a_newer_schema_are_reported_and_the_rest_imported(project, tmp_path, capsys):
    db = _copy(project, tmp_path)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE run_reports (run_id TEXT, body TEXT)")  # a newer trackio's table
    con.execute("INSERT INTO run_reports VALUES ('x', 'y')")
    con.execute("ALTER TABLE metrics ADD COLUMN quality REAL")
    con.execute("UPDATE metrics SET metrics = '{\"loss\": 1.0' WHERE step = 3 AND run_name = 'run-a'")
    con.commit()
    con.close()
    (media,) = (db.parent / "media").rglob("*.wav")
    media.unlink()
    rc = main(["import", "trackio", str(db), "--root", str(tmp_path / "root")])
    err = capsys.readouterr().err
    assert rc == 0
    assert "table run_reports: not known to this importer" in err and "metrics.quality" in err
    assert "unreadable" in err and str(media) in err
    root = tmp_path / "root"
    assert _rows(root, "SELECT count(*) FROM metrics WHERE key = 'loss'")[0][0] == 21  # the torn row only
    assert _rows(root, "SELECT count(*) FROM runs")[0][0] == 2


def test_bad_sources_fail_in_one_line(tmp_path, capsys):
    (tmp_path / "junk.db").write_bytes(b"SQLite format 3\x00" + os.urandom(2048))
    (tmp_path / "text.db").write_text("hello")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    for source, says in ((tmp_path / "nothere.db", "does not exist"), (tmp_path, "is a folder"),
                         (tmp_path / "junk.db", "damaged"), (tmp_path / "text.db", "not a SQLite database"),
                         (tmp_path / "other.db", "not a trackio project")):
        rc = main(["import", "trackio", str(source), "--root", str(tmp_path / "root")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and says in err and str(source) in err, err
