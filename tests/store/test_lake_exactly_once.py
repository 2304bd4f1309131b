"""Exactly once on the lake: ingest SIGKILLed at every step of a chunk commit (and during
recovery and compaction), or at random moments, then one clean pass: every row is there
exactly once, the same multiset a DuckDB-file ingest of the same segments holds."""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from . import _lake_util as u

TABLE_STEPS = ("metrics", "logs", "alerts", "quarantine", "ingest_frames", "runs", "writers",
               "ingest_ledger", "_commits")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict]:
    """Segments written once, and what a DuckDB-file ingest of them holds."""
    return u.reference(tmp_path_factory)


@pytest.fixture
def root(template, tmp_path) -> Path:
    shutil.copytree(template[0], tmp_path / "root")
    return tmp_path / "root"


def _subset(lake: dict[str, Counter], ref: dict[str, Counter]) -> None:
    """What a reader sees after a crash: no row twice, none that the reference lacks."""
    for table in ("metrics", "logs", "alerts", "ingest_frames"):
        assert not (lake[table] - ref[table]), f"{table}: rows not in the reference"


def _killed(proc) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


@pytest.mark.parametrize("when", ("before", "after"))
@pytest.mark.parametrize("table", TABLE_STEPS)
def test_kill_at_each_commit_step_then_clean_pass_loads_each_row_once(root, template, when,
                                                                      table):
    """A kill before/after any table's append of chunk 2 (or of `_commits`) loses nothing
    and duplicates nothing once a clean pass ran; meanwhile readers see no half chunk."""
    nth = 1 if table in ("alerts", "quarantine") else 2
    _killed(u.ingest_subprocess(root, kill_at=f"{when}:{table}@{nth}"))
    _subset(u.lake_rows(root), template[1])
    u.ingest_lake(root)
    assert u.lake_rows(root) == template[1]


def test_kill_during_recovery_then_clean_pass(root, template):
    """Recovery (deleting a dead chunk's appends) killed half way is simply done again."""
    _killed(u.ingest_subprocess(root, kill_at="after:ingest_frames@3"))
    _killed(u.ingest_subprocess(root, kill_at="recover:metrics"))
    _subset(u.lake_rows(root), template[1])
    u.ingest_lake(root)
    assert u.lake_rows(root) == template[1]


@pytest.mark.parametrize("point", ("compact:metrics", "vacuum:metrics", "compact:ingest_ledger",
                                   "compact:_commits"))
def test_kill_during_compaction_loses_nothing(root, template, point):
    """Compaction killed after rewriting a table (or while vacuuming) leaves the same rows;
    the next pass compacts again."""
    _killed(u.ingest_subprocess(root, kill_at=point, chunk_points=100))
    assert u.lake_rows(root) == template[1]
    u.ingest_lake(root)
    assert u.lake_rows(root) == template[1]
    metrics = root / "runlake-lake" / "metrics"
    from runlake.store._lake_layout import open_table

    assert len(open_table(metrics).file_uris()) < 10  # compacted (60 chunk files before)


def test_kill_after_the_chunk_ending_a_sealed_segment(root, template):
    """Killed right after the chunk that ended exactly at a sealed segment's last frame
    (its ledger row still `live`, the `done` row not yet committed): the clean pass marks
    it done, as a pass that was never killed does."""
    _killed(u.ingest_subprocess(root, kill_at="after:_commits@3", chunk_points=100))
    u.ingest_lake(root)
    assert u.lake_rows(root) == template[1]


def test_sigkill_at_random_moments_then_clean_pass(root, template):
    """Real ingest subprocesses SIGKILLed at random moments, then one clean pass."""
    rng = random.Random(10)
    meta = root / "runlake-lake" / "_runlake" / "lake.json"
    for _ in range(4):
        proc = u.start_ingest(root, chunk_points=100)
        # kill inside the pass, not in the child's imports (seconds on a loaded machine):
        # once the lake is there, at a random moment of the next 3 s
        u.wait_for(lambda: meta.exists() or proc.poll() is not None, timeout=120)
        time.sleep(rng.uniform(0.0, 3.0))
        proc.kill()
        proc.wait(timeout=30)
        _subset(u.lake_rows(root), template[1])
    u.ingest_lake(root)
    assert u.lake_rows(root) == template[1]


def test_second_pass_changes_nothing(root, template):
    """Double ingest: a second pass over the same segments adds no row."""
    u.ingest_lake(root)
    report = u.ingest_lake(root)
    assert report.events == 0
    assert u.lake_rows(root) == template[1]
