"""A lake is announced (``_runlake/lake.json``) only once all its tables exist, so a reader
racing the first pass hears "no lake yet", never "a table is missing"."""

from __future__ import annotations

import pytest

from runlake.schemas.errors import StoreError
from runlake.store.lake import LakeBackend, connect
from runlake.store.location import StoreLocation
from runlake.store.spec import TABLES


def test_tables_exist_before_the_lake_is_announced(tmp_path, monkeypatch):
    location = StoreLocation("lake", tmp_path / "runlake-lake", tmp_path)
    backend = LakeBackend(location)
    seen: list[set[str]] = []
    from runlake.store import _lake_layout

    real = _lake_layout.LakeFiles.write_format

    def spy(self):
        seen.append({p.name for p in self.path.iterdir() if (p / "_delta_log").is_dir()})
        return real(self)

    monkeypatch.setattr(_lake_layout.LakeFiles, "write_format", spy)
    backend.prepare()
    assert seen and set(TABLES) <= seen[0], "lake.json was written before every table existed"
    con = connect(location)
    assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(0,)]


def test_a_reader_before_the_announcement_is_told_there_is_no_lake_yet(tmp_path):
    lake = tmp_path / "runlake-lake"
    (lake / "metrics").mkdir(parents=True)  # a first pass under way: tables, no lake.json
    with pytest.raises(StoreError, match="no lake at"):
        connect(StoreLocation("lake", lake, tmp_path))
