"""A frame is loaded once, whatever file it sits in: copied segments and folders are
detected, skipped and reported; genuine frames are never mistaken for copies."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from runlake.ingest import ingest
from runlake.schemas import events as E
from runlake.store.migrations import MIGRATIONS

WRITER = "r0000-a000-test"


def _run(make_writer, frames=4, steps=5, run_id="run-a", project="proj"):
    """A sealed segment of ``frames`` frames, ``steps`` metrics each (points = frames*steps)."""
    w = make_writer(run_id=run_id, project=project).start()
    for f in range(frames):
        for s in range(steps):
            w.metrics(f * steps + s, {"loss": float(f * steps + s)})
        if f == frames - 1:
            w.end()
        w.flush(packed=f % 2 == 0)
    w.seal()
    return w


def _points(query, db, run_id="run-a"):
    return query(db, "SELECT count(*), count(DISTINCT step) FROM metrics WHERE run_id = ?",
                 [run_id])[0]


@pytest.mark.parametrize("later", [False, True], ids=["same pass", "later pass"])
def test_segment_copied_under_another_name_loads_once(seg_root, make_writer, query, later):
    """A copy of a segment (another seq number) loads nothing twice and is reported once."""
    w = _run(make_writer)
    db = seg_root / "runlake.duckdb"
    if later:
        assert ingest(seg_root).points == 20
    shutil.copy(w.dir / "000000.jsonl.zst", w.dir / "000007.jsonl.zst")
    report = ingest(seg_root)
    assert report.points == (0 if later else 20)
    assert report.duplicates == 4  # every frame of the copy
    assert _points(query, db) == (20, 20)
    assert len(report.problems) == 1, report.problems
    assert "000007" in report.problems[0] and "already loaded from proj/run-a/" in (
        report.problems[0])
    assert "4 duplicate frame(s) skipped" in report.summary()
    (reason,) = query(db, "SELECT reason FROM quarantine")[0]
    assert reason.startswith("4 frames")
    assert not ingest(seg_root).problems
    assert _points(query, db) == (20, 20)


def test_run_folder_copied_into_another_project_loads_once(seg_root, make_writer, query):
    """The same run under a second project folder adds no rows."""
    _run(make_writer)
    shutil.copytree(seg_root / "proj", seg_root / "proj-copy")
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.points == 20 and _points(query, db) == (20, 20)
    assert report.duplicates == 4 and "proj-copy" in report.problems[0]
    assert query(db, "SELECT project FROM runs") == [("proj",)]


@pytest.mark.parametrize("level", ["run", "writer"])
def test_folder_copied_under_new_ids_is_not_loaded(seg_root, make_writer, query, level):
    """A run or writer folder copied under a new id: its events name the old id, so none load."""
    w = _run(make_writer)
    if level == "run":
        shutil.copytree(seg_root / "proj" / "run-a", seg_root / "proj" / "run-b")
    else:
        shutil.copytree(w.dir, w.dir.parent / "r0000-a000-copy")
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.points == 20
    assert query(db, "SELECT count(*) FROM metrics") == [(20,)]
    assert query(db, "SELECT count(*) FROM writers") == [(1,)]
    assert len(report.problems) == 1 and "copied or renamed folder" in report.problems[0]
    assert "4 frames" in report.problems[0]
    assert not ingest(seg_root).problems


def test_concatenated_segments_load_each_frame_once(seg_root, make_writer, query):
    """`cat a b > c`: every frame of c was loaded from a or b."""
    w = _run(make_writer, frames=2)
    w.start()
    for s in range(10, 15):
        w.metrics(s, {"loss": 1.0})
    w.end().flush()
    w.seal()
    both = (w.dir / "000000.jsonl.zst").read_bytes() + (w.dir / "000001.jsonl.zst").read_bytes()
    (w.dir / "000002.jsonl.zst").write_bytes(both)
    report = ingest(seg_root)
    assert report.points == 15 and report.duplicates == 3
    assert len(report.problems) == 2  # one run of frames per source segment


def test_copy_of_a_live_segment_then_more_frames_loads_everything_once(seg_root, make_writer,
                                                                       query):
    """A copy of a segment still being written: its frames load once, later frames load."""
    w = make_writer().start()
    for f in range(3):
        w.metrics(f, {"loss": 1.0}).flush()
    shutil.copy(w.path, w.dir / "000009.jsonl.zst")
    first = ingest(seg_root)
    for f in range(3, 6):
        w.metrics(f, {"loss": 1.0}).flush()
    w.end().flush()
    w.seal()
    second = ingest(seg_root)
    assert first.points + second.points == 6
    assert _points(query, seg_root / "runlake.duckdb") == (6, 6)
    assert first.duplicates + second.duplicates == 3


@pytest.mark.parametrize("later", [False, True], ids=["same pass", "later pass"])
def test_interleaved_seqs_across_segments_are_not_duplicates(seg_root, make_writer, query, later):
    """seq is taken before an event is appended, so a straggler can land in the next segment
    with a seq inside the previous one's range: it still loads."""
    w = make_writer()
    env = lambda seq: dict(v=1, run_id="run-a", writer=w.writer, seq=seq, ts=10**18 + seq, rank=0)
    w.pending = [E.RunStart(**env(0), project="proj", name="n"),
                 *[E.Metrics(**env(s), step=s, values={"x": 1.0}) for s in range(1, 5)]]
    w.flush()
    w.pending = [E.Heartbeat(**env(6))]  # the straggler 5 missed this flush
    w.flush()
    w.seal()
    if later:
        assert ingest(seg_root).events == 6
    w.pending = [E.Metrics(**env(5), step=5, values={"x": 1.0})]  # alone: 5 is inside 0..6
    w.flush()
    w.pending = [E.Metrics(**env(7), step=6, values={"x": 1.0}),
                 E.RunEnd(**env(8), status="finished")]
    w.flush()
    w.seal()
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert not report.problems and report.duplicates == 0
    assert query(db, "SELECT count(*), count(DISTINCT step) FROM metrics") == [(6, 6)]


def test_reused_seq_with_other_content_is_not_a_duplicate(seg_root, make_writer, query):
    """Two frames that share a first seq but not their bytes both load (checksum guard)."""
    w = make_writer()
    env = dict(v=1, run_id="run-a", writer=w.writer, seq=1, ts=10**18, rank=0)
    w.pending = [E.Metrics(**env, step=1, values={"x": 1.0})]
    w.flush()
    w.seal()
    w.pending = [E.Metrics(**env, step=2, values={"x": 2.0})]
    w.flush()
    w.seal()
    report = ingest(seg_root)
    assert report.points == 2 and not report.problems


def _old_store(path):
    """A store as runlake made it before migration 2 (migration 1's DDL only)."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "description VARCHAR, applied_at TIMESTAMP)")
    version, description, statements = MIGRATIONS[0]
    assert version == 1
    for stmt in statements:
        con.execute(stmt)
    con.execute("INSERT INTO schema_migrations VALUES (1, ?, now()::TIMESTAMP)", [description])
    return con


def test_store_made_before_migration_2_keeps_ingesting(seg_root, make_writer, query, tmp_path):
    """A pre-change store (ledger without seq range, no ingest_frames) is migrated and
    continues exactly where it stopped; the frames the old code loaded are made known, so a
    copy of the old segment loads nothing twice."""
    w = make_writer().start()
    for f in range(3):
        w.metrics(f, {"loss": 1.0}).flush()
    new = tmp_path / "new.duckdb"
    ingest(seg_root, new)  # what the old code would have committed, row for row
    old = seg_root / "runlake.duckdb"
    con = _old_store(old)
    con.execute(f"ATTACH '{new}' AS n (READ_ONLY)")
    for table in ("metrics", "runs", "writers", "quarantine"):
        con.execute(f"INSERT INTO {table} SELECT * FROM n.{table}")
    cols = "segment, project, run_id, writer, bytes, frames, events, sealed, status, error"
    con.execute(f"INSERT INTO ingest_ledger SELECT {cols}, updated_at FROM n.ingest_ledger")
    con.close()
    for f in range(3, 6):
        w.metrics(f, {"loss": 1.0}).flush()
    w.end().flush()
    w.seal()
    report = ingest(seg_root)
    assert report.points == 3 and not report.problems
    assert query(old, "SELECT max(version) FROM schema_migrations") == [(MIGRATIONS[-1][0],)]
    assert _points(query, old) == (6, 6)
    assert query(old, "SELECT count(*) FROM ingest_frames") == [(7,)]  # 3 old + 4 new frames
    assert query(old, "SELECT seq_lo IS NOT NULL FROM ingest_ledger") == [(True,)]
    shutil.copy(w.dir / "000000.jsonl.zst", w.dir / "000001.jsonl.zst")
    again = ingest(seg_root)
    assert again.duplicates == 7 and again.points == 0 and _points(query, old) == (6, 6)


def test_frames_table_says_where_each_frame_came_from(seg_root, make_writer, query):
    """ingest_frames has one row per loaded frame with its segment and offset."""
    _run(make_writer)
    ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    rows = query(db, "SELECT run_id, writer, segment, count(*), count(DISTINCT seq) "
                     "FROM ingest_frames GROUP BY ALL")
    assert rows == [("run-a", WRITER, f"proj/run-a/{WRITER}/000000.jsonl.zst", 4, 4)]
    assert query(db, "SELECT frames FROM ingest_ledger") == [(4,)]
