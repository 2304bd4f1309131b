"""Ingest from an ``s3://`` root (a real moto S3 server): the same rows as a local ingest of
the same segments, exactly once, and bad input refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from runlake.ingest.loader import run_pass
from runlake.ingest.sources import ObjectSource
from runlake.schemas.objects import ObjectStore
from runlake.store.lake import LakeBackend
from runlake.store.location import StoreLocation, locate

from . import _ingest_util as s
from ._ingest_util import u
from ._server import MotoServer, free_port


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """Segments written once by the emitter's framing, and a DuckDB-file ingest of them."""
    return u.reference(tmp_path_factory)


def _pass(root: str, chunk_points: int = 100_000):
    return run_pass(root, LakeBackend(locate(root)), chunk_points=chunk_points)


@pytest.mark.slow
def test_cli_ingest_of_an_s3_root_equals_a_local_ingest_and_again_adds_nothing(
        template, s3_root, s3_env):
    """`runlake ingest --root s3://...` (a real CLI process) fills the lake at
    <root>/runlake-lake with every table's rows exactly as a DuckDB-file ingest; a second
    pass adds nothing; `runlake runs` and `runlake sql` read the s3 lake unchanged."""
    s.upload(template[0], s3_root)
    first = s.cli(s3_env, "ingest", "--root", s3_root)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "6,000 metric points" in first.stdout
    lake = f"{s3_root}/runlake-lake"
    assert s.lake_rows(lake) == template[1]
    again = s.cli(s3_env, "ingest", "--root", s3_root)
    assert again.returncode == 0 and "0 events" in again.stdout, again.stdout + again.stderr
    assert s.lake_rows(lake) == template[1]
    runs = s.cli(s3_env, "runs", "--root", s3_root, "--csv")
    assert runs.returncode == 0, runs.stderr
    assert sorted(line.split(",")[0] for line in runs.stdout.splitlines()[1:]) == \
        ["run-00", "run-01", "run-02"]
    sql = s.cli(s3_env, "sql", "--root", s3_root, "--csv", "SELECT count(*) AS n FROM metrics")
    assert sql.returncode == 0 and sql.stdout.splitlines()[1] == "6000", sql.stdout + sql.stderr


def test_store_of_an_s3_root_is_its_lake_and_duckdb_needs_a_local_path(s3_root, tmp_path,
                                                                       monkeypatch):
    assert locate(s3_root) == StoreLocation("lake", f"{s3_root}/runlake-lake", s3_root)
    assert not locate(s3_root).exists()
    with pytest.raises(Exception, match="--db LOCAL_PATH"):
        locate(s3_root, kind="duckdb")
    monkeypatch.setenv("RUNLAKE_STORE", "duckdb")
    with pytest.raises(Exception, match="RUNLAKE_STORE=duckdb.*object storage"):
        locate(s3_root)
    db = tmp_path / "local.duckdb"
    assert locate(s3_root, db, "duckdb") == StoreLocation("duckdb", db, s3_root)
    assert locate(None, "s3://b/lake/") == StoreLocation("lake", "s3://b/lake", None)


@pytest.mark.slow
def test_torn_upload_and_odd_keys_are_never_read_and_lose_nothing(template, s3_root,
                                                                  s3_server):
    """An incomplete multipart upload is no object (not ingested); a segment name at the
    wrong depth, with an empty key part or as an `.open` object is refused once, by name
    (the lake's own objects are never listed); other names are ignored;
    every real segment loads exactly as locally."""
    s.upload(template[0], s3_root)
    store = ObjectStore(s3_root)
    client = s3_server.client()
    torn = store.key("proj/run-torn/w0/000000.jsonl.zst")
    up = client.create_multipart_upload(Bucket=store.bucket, Key=torn)
    client.upload_part(Bucket=store.bucket, Key=torn, UploadId=up["UploadId"], PartNumber=1,
                       Body=(template[0] / "proj/run-01/r0000-a000-test/000000.jsonl.zst"
                             ).read_bytes())
    store.put("proj/0.jsonl.zst", b"x")                       # a segment name, wrong depth
    store.put("proj/run-x/w0/000001.jsonl.zst.open", b"x")    # objects are never open
    store.put("proj/run-01/r0000-a000-test/notes.txt", b"x")  # not a segment: ignored
    client.put_object(Bucket=store.bucket, Body=b"x",         # an empty key part ('a//b'):
                      Key=store.key("proj/run-01") + "//000009.jsonl.zst")  # not followed
    report = _pass(s3_root)
    assert report.refused == 3
    text = "\n".join(report.problems)
    assert "run-01//000009.jsonl.zst has an empty or '.' part" in text
    assert "proj/0.jsonl.zst is named like a segment" in text
    assert "000001.jsonl.zst.open is an open segment" in text
    got = s.lake_rows(f"{s3_root}/runlake-lake")
    for table in s.EVENT_TABLES + ("runs", "writers"):
        assert got[table] == template[1][table], table
    assert _pass(s3_root).refused == 0  # reported once


@pytest.mark.slow
def test_object_deleted_between_listing_and_reading(template, s3_root, monkeypatch):
    """A segment deleted after the listing: one clear problem naming it, every other
    segment loaded; the next pass is quiet; uploaded again, it loads exactly once."""
    s.upload(template[0], s3_root)
    victim = "proj/run-01/r0000-a000-test/000001.jsonl.zst"
    listed = ObjectSource.discover

    def discover_then_delete(self, owns=None):
        found = listed(self, owns)
        ObjectStore(s3_root).delete(victim)
        return found

    monkeypatch.setattr(ObjectSource, "discover", discover_then_delete)
    report = _pass(s3_root)
    monkeypatch.setattr(ObjectSource, "discover", listed)
    gone = [p for p in report.problems if victim in p]
    assert len(gone) == 1 and "no such object" in gone[0] and "deleted after" in gone[0]
    got = s.lake_rows(f"{s3_root}/runlake-lake", s.EVENT_TABLES)
    assert 0 < sum(got["metrics"].values()) < sum(template[1]["metrics"].values())
    assert not got["metrics"] - template[1]["metrics"]
    quiet = _pass(s3_root)
    assert quiet.events == 0 and not quiet.problems
    s.upload(template[0], s3_root, only=lambda rel: rel == victim)
    _pass(s3_root)
    got = s.lake_rows(f"{s3_root}/runlake-lake", s.EVENT_TABLES)
    for table in s.EVENT_TABLES:
        assert got[table] == template[1][table], table


def test_missing_bucket_and_unreachable_endpoint_are_one_line_exit_2(s3_server, s3_env):
    missing = s.cli(s3_env, "ingest", "--root", "s3://no-such-bucket-b11/runs")
    s.one_line_error(missing, "no-such-bucket-b11", "does not exist")
    port = free_port()  # nothing listens there
    down = s.cli({**s3_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
                 "ingest", "--root", "s3://bucket/runs", timeout=120)
    s.one_line_error(down, f"127.0.0.1:{port}", "unreachable")


@pytest.mark.slow
def test_refused_credentials_are_one_line_exit_2(tmp_path):
    with MotoServer(check_credentials=True) as server:
        bucket = server.new_bucket()
        wrong = {**server.env, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
                 "AWS_SECRET_ACCESS_KEY": "wrong"}
        proc = s.cli(wrong, "ingest", "--root", f"s3://{bucket}/runs")
        s.one_line_error(proc, "credentials were refused")


@pytest.mark.slow
def test_emitter_uploads_then_ingest_loads_every_point_once(s3_root, s3_env, tmp_path):
    """Two training processes (ranks of one run) upload through the emitter's uploader
    (`runlake.init(root=s3://...)`); `runlake ingest --root s3://...` loads every point
    they logged exactly once, and the run is finished."""
    from . import _emitter_util as e

    n = 1_500
    procs = [e.start({"root": s3_root, "run_id": "up-run", "points": n, "flush_every": 500},
                     e.child_env(s3_env, tmp_path / f"spool{r}", RANK=str(r), WORLD_SIZE="2"))
             for r in range(2)]
    for p in procs:
        assert e.finish(p)[0]["dropped"] == {}
    proc = s.cli(s3_env, "ingest", "--root", s3_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{2 * n * 2:,} metric points" in proc.stdout, proc.stdout
    got = s.lake_rows(f"{s3_root}/runlake-lake", ("metrics", "runs"))
    assert len(got["metrics"]) == sum(got["metrics"].values()) == 2 * n * 2  # each once
    (run,) = got["runs"]
    assert "finished" in run
