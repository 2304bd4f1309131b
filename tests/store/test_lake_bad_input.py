"""Bad input in a lake: each case is one clear StoreError naming the path and what to
run, and nothing else is lost; a temp commit file a killed writer left is cleaned up."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable, Field

from runlake.schemas.errors import StoreError
from runlake.store.lake import LakeBackend, connect

from . import _lake_util as u


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad") / "root"
    u.write_segments(root, runs=2, steps=100)
    u.ingest_lake(root, chunk_points=200)
    return root


@pytest.fixture
def root(template, tmp_path) -> Path:
    import shutil

    shutil.copytree(template, tmp_path / "root")
    return tmp_path / "root"


def _both(root: Path):
    """The error a reader and ingest's prepare() each raise."""
    with pytest.raises(StoreError) as read:
        connect(u.lake_location(root))
    with pytest.raises(StoreError) as write:
        LakeBackend(u.lake_location(root)).prepare()
    return str(read.value), str(write.value)


def _last_commit(root: Path, table: str) -> Path:
    return sorted((root / "runlake-lake" / table / "_delta_log").glob("*.json"))[-1]


def test_half_written_commit_names_the_file_and_rebuild(root):
    """A truncated `_delta_log/000…N.json` is named, with `runlake ingest --rebuild`."""
    last = _last_commit(root, "metrics")
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    for message in _both(root):
        assert str(last) in message and "runlake ingest --rebuild" in message
        assert "half-written commit" in message


def test_leftover_temp_commit_is_removed_and_changes_nothing(root):
    """A temp commit file (a writer killed before renaming it) is not a commit: prepare()
    removes it once stale, and every row stays."""
    before = u.lake_rows(root)
    tmp = root / "runlake-lake" / "metrics" / "_delta_log" / "_commit_0a1b2c.json.tmp"
    tmp.write_text('{"add": {"path": "part-x.parquet", "si')
    old = time.time() - 3600
    os.utime(tmp, (old, old))
    assert u.lake_rows(root) == before  # readers never look at it
    LakeBackend(u.lake_location(root)).prepare()
    assert not tmp.exists()
    u.ingest_lake(root)
    assert u.lake_rows(root) == before


def test_missing_data_file_names_it_and_rebuild(root):
    """A data file the log references but the disk lacks: named, with the fix."""
    victim = sorted((root / "runlake-lake" / "metrics").glob("*.parquet"))[0]
    victim.unlink()
    with pytest.raises(StoreError) as read:
        connect(u.lake_location(root))
    assert victim.name in str(read.value) and "missing" in str(read.value)
    assert "runlake ingest --rebuild" in str(read.value)


def test_lake_of_a_newer_format_is_refused(root):
    """`_runlake/lake.json` with a newer format: reading and writing say upgrade runlake."""
    info = root / "runlake-lake" / "_runlake" / "lake.json"
    info.write_text(json.dumps({"format": 99}))
    for message in _both(root):
        assert "newer runlake" in message and "upgrade runlake" in message
        assert str(root / "runlake-lake") in message


def test_table_with_unknown_columns_is_refused_for_writing(root):
    """A table a newer runlake wrote (a column this one does not know): prepare() refuses."""
    path = root / "runlake-lake" / "quarantine"
    DeltaTable(str(path)).alter.add_columns([Field("brand_new", "long", nullable=True)])
    with pytest.raises(StoreError) as err:
        LakeBackend(u.lake_location(root)).prepare()
    assert str(path) in str(err.value) and "brand_new" in str(err.value)
    assert "upgrade runlake" in str(err.value)


def test_unknown_table_folder_is_refused(root):
    """A folder in the lake that is no table of this runlake is named, never guessed at."""
    odd = root / "runlake-lake" / "metrics_v2"
    odd.mkdir()
    for message in _both(root):
        assert str(odd) in message and "upgrade runlake" in message


def test_table_made_before_a_column_was_added_gets_it(tmp_path):
    """A table made by an older runlake (a spec column missing) gets the column added by
    prepare(); its old files read as NULL there, new rows carry it."""
    import pyarrow as pa

    from runlake.store._lake_layout import delta_schema

    root = tmp_path / "root"
    u.write_segments(root, runs=1, steps=50)
    lake = root / "runlake-lake"
    old = delta_schema("logs")
    old = old.remove(old.get_field_index("logger"))
    row = {f.name: [None] for f in old}
    row.update(run_id=["old"], rank=[0], ts=[0], level=["INFO"], _app=["runlake-ingest"],
               _chunk=[0])
    DeltaTable.create(str(lake / "logs"), old)
    from deltalake import write_deltalake

    write_deltalake(str(lake / "logs"), pa.table(row, schema=old), mode="append")
    u.ingest_lake(root)
    con = connect(u.lake_location(root))
    assert con.execute("SELECT count(*) FROM logs WHERE logger = ''").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM logs WHERE run_id = 'old'").fetchone()[0] == 1
    assert con.execute("SELECT logger FROM logs WHERE run_id = 'old'").fetchone() == (None,)
