"""The lake at an ``s3://`` URL (a real moto S3 server): ingest SIGKILLed at the lake's
kill points then run again loses and doubles nothing; a reader held through an ingest and
a compaction (with vacuum) keeps its rows; `runlake compact` works on the bucket."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import runlake
from runlake.ingest.loader import run_pass
from runlake.store.lake import LakeBackend, compact
from runlake.store.location import locate

from . import _ingest_util as s
from ._ingest_util import u

_TTL = "2"  # the ingest lease of a killed process is taken over after 2 s, not 30


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    return u.reference(tmp_path_factory)


@pytest.fixture
def short_lease(s3_env, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("RUNLAKE_SHARD_LEASE_S", _TTL)
    return {**s3_env, "RUNLAKE_SHARD_LEASE_S": _TTL}


def _pass(root: str, chunk_points: int):
    return run_pass(root, LakeBackend(locate(root)), chunk_points=chunk_points)


@pytest.mark.slow
@pytest.mark.parametrize("point", ("after:metrics@1", "before:_commits@1", "after:_commits@1"))
def test_ingest_killed_at_a_commit_step_then_run_again_loads_each_row_once(
        template, s3_root, short_lease, point):
    """`runlake ingest --root s3://...` SIGKILLed at a step of its chunk's commit: readers
    see no half chunk, and the next ingest (taking over the dead one's lease) leaves
    every table exactly as a DuckDB-file ingest of the same segments."""
    s.upload(template[0], s3_root)
    killed = s.cli(short_lease, "ingest", "--root", s3_root, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    lake = f"{s3_root}/runlake-lake"
    if point != "after:metrics@1":  # lake.json exists only once a first pass got this far
        seen = s.lake_rows(lake, s.EVENT_TABLES)
        for table in s.EVENT_TABLES:
            assert not seen[table] - template[1][table], table
    again = s.cli(short_lease, "ingest", "--root", s3_root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert s.lake_rows(lake) == template[1]


@pytest.mark.slow
def test_reader_held_through_ingest_and_compaction_keeps_its_rows(template, s3_root,
                                                                  short_lease):
    """A connection opened on the s3 lake answers from its snapshot while more chunks are
    committed and the lake is compacted and vacuumed (its lease keeps its files); a new
    connection sees everything, exactly once."""
    s.upload(template[0], s3_root, only=lambda rel: "/run-02/" not in rel)
    _pass(s3_root, chunk_points=2000)
    lake = f"{s3_root}/runlake-lake"
    held = runlake.connect(root=s3_root)  # the notebook entry point, on the bucket
    before = {t: u.rows(held, t) for t in s.EVENT_TABLES}
    assert sum(before["metrics"].values()) == 4000
    s.upload(template[0], s3_root, only=lambda rel: "/run-02/" in rel)
    _pass(s3_root, chunk_points=2000)
    done = compact(locate(s3_root), grace_s=0)
    assert done["metrics"]["rewritten"] >= 2 and done["metrics"]["files_after"] == 1
    assert {t: u.rows(held, t) for t in s.EVENT_TABLES} == before
    held.close()
    assert s.lake_rows(lake) == template[1]
    proc = s.cli(short_lease, "compact", "--root", s3_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert s.lake_rows(lake) == template[1]
