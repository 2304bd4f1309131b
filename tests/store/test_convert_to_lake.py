"""DuckDB file -> lake conversion (`runlake ingest --lake`) loses nothing, and ingest then
continues exactly where the DuckDB file stopped."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import duckdb
import pytest

pytest.importorskip("deltalake")

from ._h3_roots import RUNLAKE, cli, damage, every_table, rows, store_rows, write_run  # noqa: E402

from runlake.analysis.anomalies import detect  # noqa: E402
from runlake.ingest import ingest  # noqa: E402
from runlake.store import StoreLocation, locate, read_store  # noqa: E402
from runlake.store.convert import MARKER  # noqa: E402
from runlake.store.location import SETTING_FILE  # noqa: E402
from runlake.store.migrations import MIGRATIONS  # noqa: E402
from runlake.store.spec import TABLES  # noqa: E402


@pytest.fixture
def duck_root(tmp_path):
    """A root with two runs, a damaged segment and stored anomalies, ingested by today's
    code into the DuckDB file."""
    root = tmp_path / "root"
    root.mkdir()
    write_run(root, "a")
    write_run(root, "b", steps=120)
    damage(root)
    ingest(root, kind="duckdb")
    assert detect(root=root) > 0
    return root


def test_every_row_of_every_table_survives_conversion(duck_root):
    """Each table's multiset of rows in the lake equals the DuckDB file's; the file is kept
    as runlake.duckdb.old and the root's setting says lake."""
    db = duck_root / "runlake.duckdb"
    before = store_rows(db)
    assert not [t for t in ("metrics", "quarantine", "anomalies", "ingest_frames",
                                   "logs", "data_items", "checkpoints", "samples", "alerts") if not before[t]]
    report = ingest(duck_root, kind="lake")
    assert report.points == 0 and report.frames == 0  # nothing read again
    assert any("converted" in n for n in report.notes)
    lake = duck_root / "runlake-lake"
    assert json.loads((duck_root / SETTING_FILE).read_text()) == {"store": "lake"}
    assert not db.exists() and (duck_root / "runlake.duckdb.old").is_file()
    assert locate(duck_root) == StoreLocation("lake", lake, duck_root)
    after = store_rows(locate(duck_root))
    for t in TABLES:
        assert after[t] == before[t], t
    marker = json.loads((lake / MARKER).read_text())
    assert marker["rows"]["metrics"] == sum(before["metrics"].values())


def test_ingest_continues_where_the_file_stopped(duck_root, tmp_path):
    """After conversion new segments (a resumed run, a new run) load once: the lake holds
    exactly what one DuckDB store ingesting everything holds."""
    ingest(duck_root, kind="lake")
    run_b = next(r for (r,) in _q(duck_root, "SELECT run_id FROM runs WHERE name = 'b'"))
    write_run(duck_root, "b", steps=30, start=120, run_id=run_b, resume=True)
    write_run(duck_root, "c", steps=40)
    report = ingest(duck_root)
    assert report.rows["metrics"] == 3 * 70  # only the new points
    assert ingest(duck_root).frames == 0
    fresh = tmp_path / "fresh.duckdb"
    ingest(duck_root, db=fresh)
    lake, whole = store_rows(locate(duck_root)), store_rows(fresh)
    for t in ("metrics", "data_items", "datasets", "checkpoints", "samples", "logs", "alerts",
              "ingest_frames", "runs", "writers"):
        assert lake[t] == whole[t], t
    assert _q(duck_root, "SELECT count(*) FROM (SELECT DISTINCT run_id, writer, seq "
                         "FROM ingest_frames)") == _q(duck_root,
                                                      "SELECT count(*) FROM ingest_frames")


def _q(root, sql):
    with read_store(locate(root)) as con:
        return con.execute(sql).fetchall()


def _v01_store(source, target):
    """A store with the v0.1 schema (frozen migration 1 only), holding ``source``'s rows
    of the columns v0.1 had: a store as v0.1 wrote it (no frame keys, no seq range)."""
    con = duckdb.connect(str(target))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "description VARCHAR, applied_at TIMESTAMP)")
    first = MIGRATIONS[0]
    for stmt in first.statements:
        con.execute(stmt)
    con.execute("INSERT INTO schema_migrations VALUES (1, ?, now()::TIMESTAMP)",
                [first.description])
    con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'").fetchall()]
    for t in tables:
        cols = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
            "current_database() AND table_name = ?", [t]).fetchall()]
        names = ", ".join(cols)
        con.execute(f"INSERT INTO {t} ({names}) SELECT {names} FROM src.{t}")
    con.close()
    return tables


def test_a_v01_store_converts_and_frame_keys_are_made_known(duck_root):
    """A v0.1-schema store converts: its rows equal (seq_lo/seq_hi, which v0.1 lacks, NULL;
    no ingest_frames); afterwards a copy of a loaded segment loads nothing (its frames are
    made known from the ledger) and a new run loads once."""
    db = duck_root / "runlake.duckdb"
    old = duck_root / "today.duckdb"
    db.rename(old)
    assert "ingest_frames" not in _v01_store(old, db)
    seq = {"seq_lo", "seq_hi"}
    with read_store(old) as con:
        before = every_table(con)
        before_ledger = rows(con, "ingest_ledger", drop=seq)
    old.unlink()
    assert ingest(duck_root, kind="lake").points == 0
    with read_store(locate(duck_root)) as con:
        after = every_table(con)
        assert rows(con, "ingest_ledger", drop=seq) == before_ledger
        assert con.execute("SELECT count(*) FROM ingest_ledger WHERE seq_lo IS NOT NULL"
                           ).fetchone() == (0,)
    for t in TABLES:
        if t not in ("ingest_ledger", "ingest_frames"):
            assert after[t] == before[t], t
    assert not after["ingest_frames"]
    sealed = sorted((duck_root / "proj").glob("*/*/*.jsonl.zst"))[0]
    shutil.copyfile(sealed, sealed.with_name("00000099.jsonl.zst"))
    write_run(duck_root, "c", steps=40)
    report = ingest(duck_root)
    assert report.rows["metrics"] == 3 * 40 and report.duplicates > 0
    assert ingest(duck_root).frames == 0


def test_a_store_written_by_a_newer_runlake_is_refused(duck_root):
    """A DuckDB file with a schema version beyond this runlake's: one clear error, the
    root unchanged."""
    db = duck_root / "runlake.duckdb"
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_migrations VALUES (99, 'future', now()::TIMESTAMP)")
    con.close()
    proc = cli("ingest", "--root", duck_root, "--lake", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "newer runlake" in proc.stderr and str(db) in proc.stderr
    assert db.exists() and not (duck_root / "runlake-lake").exists()
    assert not (duck_root / SETTING_FILE).exists()


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.2, 2.5])
def test_sigkill_during_conversion_loses_nothing(duck_root, delay):
    """`runlake ingest --lake` killed at any moment leaves the DuckDB store (or a complete
    lake) and the next `ingest --lake` finishes with every row equal."""
    db = duck_root / "runlake.duckdb"
    before = store_rows(db)
    proc = subprocess.Popen([*RUNLAKE, "ingest", "--root", str(duck_root), "--lake"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lake = duck_root / "runlake-lake"
    if not (lake / MARKER).exists():  # killed before the lake took its place
        assert db.exists() and store_rows(db) == before
        assert not lake.exists() and not (duck_root / SETTING_FILE).exists()
    cli("ingest", "--root", duck_root, "--lake")
    after = store_rows(locate(duck_root))
    for t in TABLES:
        assert after[t] == before[t], t
    assert not (duck_root / ".runlake-lake.converting").exists()


def test_conversion_killed_before_its_last_steps_is_finished(duck_root):
    """A lake converted from the file, with the setting not yet written and the file not yet
    renamed (a kill between the steps): `ingest --lake` finishes; plain readers are told."""
    db = duck_root / "runlake.duckdb"
    before = store_rows(db)
    ingest(duck_root, kind="lake")
    (duck_root / SETTING_FILE).unlink()
    (duck_root / "runlake.duckdb.old").rename(db)  # rename keeps size and mtime
    told = cli("runs", "--root", duck_root, check=False)
    assert told.returncode == 2 and str(db) in told.stderr and "runlake-lake" in told.stderr
    report = ingest(duck_root, kind="lake")
    assert report.frames == 0 and any("finished converting" in n for n in report.notes)
    assert not db.exists()
    after = store_rows(locate(duck_root))
    for t in TABLES:
        assert after[t] == before[t], t


def test_a_lake_and_an_unrelated_duckdb_file_disagree(duck_root, tmp_path):
    """A lake and a DuckDB file that was not converted into it: every command, `ingest
    --lake` included, fails with one line naming both paths and what to run."""
    ingest(duck_root, kind="lake")
    (duck_root / SETTING_FILE).unlink()
    other = duck_root / "runlake.duckdb"
    ingest(duck_root, db=other)  # a second, separate store
    for args in (["runs"], ["ingest"], ["ingest", "--lake"]):
        proc = cli(*args, "--root", duck_root, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert str(other) in proc.stderr and "runlake-lake" in proc.stderr, proc.stderr
    assert other.exists() and (duck_root / "runlake-lake").exists()
