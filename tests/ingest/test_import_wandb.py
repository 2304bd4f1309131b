"""`runlake import wandb`: runs written by the real wandb (offline mode) arrive exactly; a
second import writes nothing; damaged, truncated and unknown records cost only themselves."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from runlake.cli import main
from runlake.emitter.resume import read_events
from runlake.ingest.import_wandb import import_wandb
from runlake.ingest.wandb_records import BLOCK_LEN, RecordLog
from runlake.schemas.blobs import blob_path
from runlake.schemas.codec import unpack_metrics
from runlake.schemas.events import MetricsBlock
from runlake.store import read_store

pytestmark = pytest.mark.slow  # wandb itself writes the runs: ~6 s on a quiet machine

JOB = Path(__file__).with_name("_wandb_job.py")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two W&B runs written once per module by wandb itself: (their wandb/ folder, ids)."""
    out = tmp_path_factory.mktemp("wandb_job")
    subprocess.run([sys.executable, str(JOB), str(out)], check=True, timeout=120,
                   capture_output=True)
    return out / "wandb", json.loads((out / "expected.json").read_text())


@pytest.fixture
def wandb_dir(written, tmp_path):
    """A private copy of the written wandb/ folder (tests damage theirs)."""
    src, ids = written
    dst = tmp_path / "wandb"
    shutil.copytree(src, dst, symlinks=True)
    return dst, ids


def _run_file(wandb_dir: Path, wandb_id: str) -> Path:
    (path,) = wandb_dir.glob(f"offline-run-*-{wandb_id}/run-{wandb_id}.wandb")
    return path


def _events(root: Path, result) -> list:
    """The imported segment's events, metrics blocks unpacked."""
    (writer_dir,) = [p for p in (root / "my-proj" / result.run_id).iterdir() if p.name != "blobs"]
    out = []
    for ev in read_events(writer_dir):
        out += unpack_metrics(ev) if isinstance(ev, MetricsBlock) else [ev]
    return out


def _rows(root: Path, sql: str) -> list[tuple]:
    with read_store(root / "runlake.duckdb") as con:
        return con.execute(sql).fetchall()


def _chunk(data: bytes, kind: int = 1) -> bytes:
    """One chunk of W&B's block log (crc32 of the type byte then the data)."""
    return struct.pack("<IHB", zlib.crc32(data, zlib.crc32(bytes([kind]))), len(data), kind) + data


def _append_record(path: Path, record: bytes) -> None:
    """Append one small record as a FULL chunk, padding to the next block as W&B does."""
    size = path.stat().st_size
    left = BLOCK_LEN - size % BLOCK_LEN
    with open(path, "ab") as f:
        if left < 7 + len(record):
            f.write(b"\0" * left)
        f.write(_chunk(record))


def test_import_keeps_every_value(wandb_dir, tmp_path):
    """Config, tags, notes, group, history (nested keys, commit=False, NaN/inf), histogram,
    image/audio/table files as blobs, console lines, alert, summary and exit code 1 arrive
    as W&B recorded them."""
    wdir, ids = wandb_dir
    root = tmp_path / "root"
    results = {r.name: r for r in import_wandb(wdir, root=root)}
    first, second = results["first"], results["second"]
    assert (first.status, second.status) == ("imported", "imported")
    assert first.counts["points"] == 14 and first.counts["media"] == 5 and first.counts["histograms"] == 1
    assert any(s.startswith("telemetry records: ") for s in first.skipped) and not first.problems

    runs = _rows(root, "SELECT name, project, status, tags, group_name, config->>'lr', "
                       "config->'opt'->>'name', (config->>'bs')::INT, config->'wandb'->>'id', "
                       "config->'wandb'->>'job_type' FROM runs WHERE name != 'long' ORDER BY name")
    assert runs == [("first", "my-proj", "failed", ["a", "b"], "g1", "0.1", "adam", 32, ids["first"], "train"),
                    ("second", "my-proj", "finished", [], None, None, None, None, ids["second"], None)]
    metrics = _rows(root, f"SELECT key, step, value FROM metrics WHERE run_id = '{first.run_id}' "
                          f"AND key NOT LIKE 'sys/%' ORDER BY step, key")
    expected = [(k, i, v) for i in range(5) for k, v in (("acc.top1", i / 10), ("loss", 1 / (i + 1)))]
    expected.insert(9, ("extra", 4, 3.0))  # commit=False joined W&B's uncommitted step-4 row
    assert metrics[:-2] == expected + [("loss", 5, 0.125)]
    (big, _, inf), (odd, _, nan) = metrics[-2:]
    assert (big, odd) == ("big", "odd") and math.isinf(inf) and math.isnan(nan)
    assert _rows(root, f"SELECT count(*) > 0 FROM metrics WHERE run_id = '{first.run_id}' "
                       f"AND key = 'sys/memory_percent'") == [(True,)]
    logs = _rows(root, f"SELECT logger, message FROM logs WHERE run_id = '{first.run_id}' "
                       f"AND logger LIKE 'console.%' ORDER BY ts")
    assert logs == [("console.stdout", "hello stdout"), ("console.stderr", "err line")]
    assert _rows(root, "SELECT message, severity, alert FROM alerts") == [("slow: loss is flat", "warning", "slow")]

    events = _events(root, first)
    updates = [e for e in events if e.__class__.__name__ == "RunUpdate"]
    assert [u.notes for u in updates if u.notes] == ["some notes"]
    assert [u.config for u in updates if u.config] == [{"bs": 32}]
    (summary,) = [u.summary for u in updates if u.summary]
    assert summary == {"loss": 0.125, "acc.top1": 0.4, "extra": 3, "best": 0.9, "odd": "NaN",
                       "big": "Infinity", "word": "text"}
    (hist,) = [e for e in events if e.__class__.__name__ == "Histogram"]
    assert (hist.key, hist.step, hist.edges, hist.counts) == ("h", 6, [0.0, 0.5, 1.0, 2.0], [1.0, 2.0, 3.0])
    every = [e for e in events if e.__class__.__name__ == "Media"]
    media = {e.key: e for e in every}
    assert sorted((m.key, m.media, m.mime, m.caption, m.step) for m in every) == [
        ("clip", "audio", "audio/x-wav", "tone", 6), ("img", "image", "image/png", "cap", 6),
        ("pair", "image", "image/png", "gray", 6), ("pair", "image", "image/png", "inv", 6),
        ("tbl", "table", "application/json", None, 6)]  # a list of images: one event each
    run_dir = _run_file(wdir, ids["first"]).parent
    for m in every:
        (source,) = (run_dir / "files" / "media").rglob(m.name)
        blob = blob_path(root / "my-proj" / first.run_id, m.sha256).read_bytes()
        assert blob == source.read_bytes() and hashlib.sha256(blob).hexdigest() == m.sha256
    assert json.loads(blob_path(root / "my-proj" / first.run_id, media["tbl"].sha256).read_bytes()) == {
        "columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}
    assert media["img"].meta == {"width": 5, "height": 4, "format": "png"}
    (second_update,) = [e for e in _events(root, second) if e.__class__.__name__ == "RunUpdate" and e.metrics]
    assert second_update.metrics == {"x": {"summary": "min,max"}}  # define_metric
    (second_summary,) = [e.summary for e in _events(root, second) if e.__class__.__name__ == "RunUpdate" and e.summary]
    assert second_summary == {"x.min": 0, "x.max": 2}  # flat, as W&B displays it


def test_second_import_and_a_synced_copy_add_nothing(wandb_dir, tmp_path, capsys):
    """Importing again writes nothing; a synced copy (run-*) of an offline run is the same run."""
    wdir, ids = wandb_dir
    root = tmp_path / "root"
    assert main(["import", "wandb", str(wdir), "--root", str(root)]) == 0
    segments = sorted(root.rglob("*.jsonl.zst"))
    before = [(p, p.stat().st_mtime_ns) for p in segments]
    counts = _rows(root, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM logs)")
    offline = _run_file(wdir, ids["second"]).parent
    shutil.copytree(offline, wdir / offline.name.replace("offline-run-", "run-"))
    capsys.readouterr()
    assert main(["import", "wandb", str(wdir), "--root", str(root)]) == 0
    out = capsys.readouterr()
    assert out.out.count(" exists ") == 3 and "imported once" in out.err
    assert [(p, p.stat().st_mtime_ns) for p in sorted(root.rglob("*.jsonl.zst"))] == before
    assert _rows(root, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM logs)") == counts


def test_corrupt_block_costs_only_that_block(wandb_dir, tmp_path):
    """A CRC mismatch is reported with its offset; the records of the other blocks arrive."""
    wdir, ids = wandb_dir
    path = _run_file(wdir, ids["long"])
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * BLOCK_LEN
    at = BLOCK_LEN + 1000  # inside a chunk of block 1
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    root = tmp_path / "root"
    (result,) = import_wandb(path, root=root)
    assert len(result.problems) == 1 and "CRC mismatch at offset" in result.problems[0]
    assert f"reading resumed at offset {2 * BLOCK_LEN}" in result.problems[0]
    assert result.status == "imported" and 1800 < result.counts["points"] < 2000  # one block of ~120 rows lost
    steps = {s for (s,) in _rows(root, "SELECT step FROM metrics WHERE key = 'y'")}
    assert 0 in steps and 1999 in steps  # the blocks before and after the damage
    assert _rows(root, "SELECT status FROM runs") == [("finished",)]  # the exit record arrived
    warnings = _rows(root, "SELECT message FROM logs WHERE logger = 'runlake.import' AND message LIKE '%CRC%'")
    assert len(warnings) == 1


def test_truncated_file_keeps_the_records_before_the_cut(wandb_dir, tmp_path):
    """A torn end is one problem; every whole record before it is imported; no exit record
    means the run ended killed."""
    wdir, ids = wandb_dir
    path = _run_file(wdir, ids["second"])
    records = list(RecordLog(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    root = tmp_path / "root"
    (result,) = import_wandb(path, root=root)
    assert len(result.problems) == 1 and "torn end at offset" in result.problems[0]
    assert result.counts["points"] == 3  # the history came long before the cut
    assert len(list(RecordLog(path))) < len(records)
    assert _rows(root, "SELECT status, exit_reason LIKE 'no exit record%' FROM runs") == [("killed", True)]


def test_unknown_and_unmapped_records_are_counted_not_fatal(wandb_dir, tmp_path):
    """A record type the importer does not map (preempting) and one this wandb does not know
    (an unknown field number) are skipped with a count; the run imports."""
    from wandb.proto import wandb_internal_pb2 as pb

    wdir, ids = wandb_dir
    path = _run_file(wdir, ids["second"])
    preempting = pb.Record(num=999)
    preempting.preempting.SetInParent()
    _append_record(path, preempting.SerializeToString())
    _append_record(path, pb.Record(num=1000).SerializeToString() + b"\xa8\x1f\x01")  # field 501 = 1
    (result,) = import_wandb(path, root=tmp_path / "root")
    assert result.status == "imported" and result.counts["points"] == 3 and not result.problems
    assert "preempting records: 1" in result.skipped
    assert any(s.startswith("unknown record types") and s.endswith(": 1") for s in result.skipped)


def test_missing_media_file_is_a_problem_line(wandb_dir, tmp_path):
    """A media file gone from files/ is one problem naming it; the other media still arrive."""
    wdir, ids = wandb_dir
    (png,) = (_run_file(wdir, ids["first"]).parent / "files" / "media" / "images").glob("img_*.png")
    png.unlink()
    (result,) = [r for r in import_wandb(wdir, root=tmp_path / "root", ingest=False) if r.name == "first"]
    assert result.counts["media"] == 4
    assert len(result.problems) == 1 and png.name in result.problems[0] and "img at step 6" in result.problems[0]


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_cli_bad_path_is_one_line_exit_2(tmp_path, capsys, what):
    """A missing path or a folder without W&B runs: exit 2, one line naming the path."""
    path = tmp_path / "nothing"
    if what == "empty":
        path.mkdir()
    assert main(["import", "wandb", str(path), "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and ".wandb" in err


def test_without_wandb_the_error_names_the_extra(written, tmp_path):
    """With the wandb package absent, the CLI exits 2 with one line naming the install command."""
    wdir, _ = written
    code = ("import sys; sys.modules['wandb'] = None; from runlake.cli import main; "
            f"sys.exit(main(['import', 'wandb', {str(wdir)!r}, '--root', {str(tmp_path / 'root')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "pip install 'runlake[interop]'" in line and not (tmp_path / "root").exists()
