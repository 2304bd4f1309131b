"""Ingest takes only regular files that really lie inside the root; everything else in a
segment's or folder's place is reported once, and none of its bytes reach the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runlake.ingest import ingest
from runlake.ingest.discover import UnsafeEntry, discover, open_segment
from runlake.ingest.lock import IngestLock
from runlake.ingest.loader import run_pass
from runlake.store import locate, open_backend
from runlake.schemas.errors import RootError

SECRET = b"TOP-SECRET-runlake-hygiene-" * 40
WRITER = "r0000-a000-test"


def _store_text(db: Path, query) -> str:
    """Every text cell of the ledger and quarantine tables, joined."""
    rows = query(db, "SELECT * FROM quarantine") + query(db, "SELECT * FROM ingest_ledger")
    return " ".join(str(cell) for row in rows for cell in row)


def _good_run(make_writer, run_id="run-a", project="proj"):
    w = make_writer(run_id=run_id, project=project).start()
    w.metrics(0, {"loss": 1.0}).metrics(1, {"loss": 0.5}).end().flush()
    w.seal()
    return w


def _outside_run(tmp_path, segment_writer, project="proj", run_id="run-out"):
    """A real run written outside the root (what a link would pull in)."""
    outside = tmp_path / "outside"
    w = segment_writer(outside, project, run_id)
    w.start().metrics(0, {"stolen": 1.0}).end().flush()
    w.seal()
    return outside


def test_linked_segment_leaks_no_bytes_of_its_target(seg_root, make_writer, query, tmp_path):
    """A segment that is a link to a secret file is reported; no byte of the target is stored."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    w = _good_run(make_writer)
    (w.dir / "000005.jsonl.zst").symlink_to(secret)
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.points == 2 and report.refused == 1
    assert len(report.problems) == 1 and "symbolic link" in report.problems[0]
    text = _store_text(db, query)
    assert "symbolic link" in text
    assert SECRET[:16].decode() not in text and SECRET[:16].hex() not in text
    assert SECRET[:16] not in db.read_bytes()
    assert query(db, "SELECT status FROM ingest_ledger WHERE segment LIKE '%000005%'") == [
        ("skipped",)]
    again = ingest(seg_root)
    assert not again.problems and query(db, "SELECT count(*) FROM quarantine") == [(1,)]


def test_linked_segment_of_another_root_is_not_loaded(seg_root, make_writer, query, tmp_path,
                                                      segment_writer):
    """A link to a real segment elsewhere loads none of its rows."""
    outside = _outside_run(tmp_path, segment_writer, run_id="run-a")
    w = _good_run(make_writer)
    target = outside / "proj" / "run-a" / WRITER / "000000.jsonl.zst"
    (w.dir / "000003.jsonl.zst").symlink_to(target)
    report = ingest(seg_root)
    assert report.points == 2 and report.refused == 1
    assert query(seg_root / "runlake.duckdb",
                 "SELECT count(*) FROM metrics WHERE key = 'stolen'") == [(0,)]


_DEV_ZERO = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression fails, not swaps
from runlake.ingest import ingest
report = ingest(sys.argv[1])
print(report.points, report.refused, report.problems)
"""


def test_link_to_dev_zero_is_refused(seg_root, make_writer):
    """A segment linked to /dev/zero is reported, not read (it gave a MemoryError)."""
    w = _good_run(make_writer)
    (w.dir / "000001.jsonl.zst").symlink_to("/dev/zero")
    proc = subprocess.run([sys.executable, "-c", _DEV_ZERO, str(seg_root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    points, refused, problems = proc.stdout.split(" ", 2)
    assert (points, refused) == ("2", "1") and "/dev/zero" in problems


@pytest.mark.parametrize("name", ["000001.jsonl.zst", "000002.jsonl.zst.open"])
def test_fifo_named_like_a_segment_does_not_hang_ingest(seg_root, make_writer, name):
    """A FIFO named like a segment is reported; ingest finishes (it blocked forever)."""
    w = _good_run(make_writer)
    os.mkfifo(w.dir / name)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from runlake.ingest import ingest; "
         "r = ingest(sys.argv[1]); print(r.points, r.refused, r.problems)", str(seg_root)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("2 1 ") and "FIFO" in proc.stdout


def test_folder_named_like_a_segment_is_reported_once(seg_root, make_writer, query):
    """A directory named like a segment is reported once; the real segments load."""
    w = _good_run(make_writer)
    (w.dir / "000009.jsonl.zst").mkdir()
    report = ingest(seg_root)
    assert report.points == 2 and len(report.problems) == 1 and "a folder" in report.problems[0]
    assert not ingest(seg_root).problems


def test_sealed_empty_segment_gets_one_message(seg_root, make_writer, query):
    """A sealed zero-length segment is reported once (it passed silently as done)."""
    w = _good_run(make_writer)
    (w.dir / "000004.jsonl.zst").write_bytes(b"")
    report = ingest(seg_root)
    assert report.points == 2
    assert len(report.problems) == 1 and "sealed segment is empty" in report.problems[0]
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT status FROM ingest_ledger WHERE segment LIKE '%000004%'") == [
        ("damaged",)]
    assert not ingest(seg_root).problems


def test_open_empty_segment_is_no_problem_until_sealed_empty(seg_root, make_writer):
    """An empty open segment waits for bytes; sealed still empty, it is reported then."""
    w = _good_run(make_writer)
    open_path = w.dir / "000001.jsonl.zst.open"
    open_path.write_bytes(b"")
    assert not ingest(seg_root).problems
    open_path.rename(w.dir / "000001.jsonl.zst")
    assert "sealed segment is empty" in ingest(seg_root).problems[0]


@pytest.mark.parametrize("level", ["project", "run", "writer"])
def test_linked_folders_are_not_followed_and_reported_once(seg_root, make_writer, query, tmp_path,
                                                           segment_writer, level):
    """A project/run/writer folder that is a link is reported once and not read."""
    outside = _outside_run(tmp_path, segment_writer, project="ext", run_id="run-x")
    _good_run(make_writer)
    target = {"project": outside / "ext", "run": outside / "ext" / "run-x",
              "writer": outside / "ext" / "run-x" / WRITER}[level]
    link = {"project": seg_root / "linked",
            "run": seg_root / "proj" / "run-linked",
            "writer": seg_root / "proj" / "run-a" / "r0000-a001-linked"}[level]
    link.symlink_to(target, target_is_directory=True)
    report = ingest(seg_root)
    assert report.points == 2 and report.refused == 1
    assert "symbolic link" in report.problems[0] and str(link.relative_to(seg_root)) in (
        report.problems[0])
    assert query(seg_root / "runlake.duckdb",
                 "SELECT count(*) FROM metrics WHERE key = 'stolen'") == [(0,)]
    assert not ingest(seg_root).problems


def test_segment_swapped_for_a_link_after_discovery_is_refused(seg_root, make_writer, tmp_path):
    """open_segment refuses an entry replaced by a link or FIFO between listing and reading."""
    w = _good_run(make_writer)
    (seg, ), _ = discover(seg_root)
    fd, sealed, size = open_segment(seg_root, seg)
    os.close(fd)
    assert sealed and size == seg.size
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    seg.path.unlink()
    seg.path.symlink_to(secret)
    with pytest.raises(UnsafeEntry, match="symbolic link"):
        open_segment(seg_root, seg)
    seg.path.unlink()
    os.mkfifo(seg.path)
    with pytest.raises(UnsafeEntry, match="FIFO"):
        open_segment(seg_root, seg)
    (w.dir.parent / WRITER).rename(w.dir.parent / "moved")
    (w.dir.parent / WRITER).symlink_to(w.dir.parent / "moved", target_is_directory=True)
    with pytest.raises(UnsafeEntry, match="no longer a folder"):
        open_segment(seg_root, seg)


def test_link_replaced_by_a_real_segment_is_read(seg_root, make_writer, query, tmp_path):
    """A path reported as a link is read once it is a regular file."""
    w = _good_run(make_writer)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    late = make_writer(run_id="run-late").start()
    late.metrics(0, {"late": 1.0}).end().flush()
    real = late.seal().read_bytes()
    late.dir.joinpath("000000.jsonl.zst").unlink()
    link = late.dir / "000000.jsonl.zst"
    link.symlink_to(secret)
    assert ingest(seg_root).refused == 1
    link.unlink()
    link.write_bytes(real)
    report = ingest(seg_root)
    assert report.points == 1 and not report.problems
    assert query(seg_root / "runlake.duckdb",
                 "SELECT status, error FROM ingest_ledger WHERE run_id = 'run-late'") == [
        ("done", None)]


def test_small_read_windows_load_the_same_rows(seg_root, make_writer, make_frame, fingerprint,
                                               tmp_path):
    """Reading a segment in small windows (frames larger than a window, damage between
    frames) loads exactly what one big read loads."""
    w = make_writer().start()
    for step in range(300):
        w.metrics(step, {f"k{k}": step * 0.5 + k for k in range(20)})
        if step % 37 == 36:
            w.flush()
            if step == 110:
                w.raw(b"garbage between frames" * 5)
    w.end().flush()
    w.seal()
    loaded = []
    for window in (1 << 20, 512, 4096):
        db = tmp_path / f"w{window}.duckdb"
        report = run_pass(seg_root, open_backend(locate(seg_root, db)), read_window=window)
        assert report.points == 6000 and report.problems, report.problems
        assert all("not a zstd frame" in p for p in report.problems), report.problems
        print_ = fingerprint(db)
        loaded.append({t: print_[t] for t in ("metrics", "runs", "writers")})
    assert loaded[0] == loaded[1] == loaded[2]


def test_huge_file_of_garbage_is_one_problem_in_bounded_memory(seg_root, make_writer, tmp_path):
    """A regular file of zeros named like a segment, read in small windows: one problem."""
    w = _good_run(make_writer)
    with open(w.dir / "000001.jsonl.zst", "wb") as f:
        f.truncate(300_000)  # sparse zeros, 70+ windows of 4 KiB
    report = run_pass(seg_root, open_backend(locate(seg_root, tmp_path / "s.duckdb")),
                      read_window=4096)
    assert report.points == 2 and len(report.problems) == 1, report.problems[:3]
    assert "300000 bytes that are not a zstd frame" in report.problems[0]


def test_linked_lock_file_is_refused_and_its_target_unchanged(seg_root, make_writer, tmp_path):
    """A .ingest.lock that is a link is refused clearly; the file it points to is untouched."""
    _good_run(make_writer)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (seg_root / ".ingest.lock").symlink_to(victim)
    with pytest.raises(RootError, match="symbolic link"):
        ingest(seg_root)
    assert victim.read_bytes() == b"precious"
    proc = subprocess.run([sys.executable, "-m", "runlake.cli", "ingest", "--root", str(seg_root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "symbolic link" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["hardlink", "fifo", "folder"])
def test_lock_that_is_not_a_plain_file_is_refused(seg_root, tmp_path, kind):
    """A hard-linked, FIFO or folder .ingest.lock is refused instead of used."""
    path = seg_root / ".ingest.lock"
    if kind == "hardlink":
        victim = tmp_path / "victim.txt"
        victim.write_bytes(b"precious")
        os.link(victim, path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(RootError, match="refusing to use the ingest lock"):
        with IngestLock(seg_root, wait_s=0.1):
            pass
    if kind == "hardlink":
        assert victim.read_bytes() == b"precious"
