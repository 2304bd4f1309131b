"""Histograms, media and run updates: emitted by a real run, ingested into the DuckDB file and
the lake, read back equal; updates merged into runs; exactly once; blobs skipped by discovery."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import runlake
from runlake.ingest import ingest
from runlake.schemas import events as E
from runlake.schemas.blobs import blob_path, verify_blob
from runlake.schemas.errors import RunlakeWarning
from runlake.store import read_store

QUIET = dict(console=False, system_interval=0, capture_logging=False)
_READ = {
    "histograms": "SELECT key, step, epoch, edges, counts, min, max, num, sum, sum_squares "
                  "FROM histograms ORDER BY key, step",
    "media": "SELECT key, step, media, sha256, bytes, mime, caption, name, blob, meta "
             "FROM media ORDER BY key, step",
    "updates": "SELECT step, config, summary, tags, notes, metrics FROM updates ORDER BY ts",
    "runs": "SELECT run_id, config, summary, tags FROM runs",
}


def _emit(root, **kw):
    run = runlake.init(project="p", name="n", root=root, config={"lr": 0.1, "bs": 8},
                       tags=["start"], **QUIET, **kw)
    run.log({"loss": 1.0}, step=1, epoch=0)
    run.log_histogram("grad/w", np.arange(10.0), bins=4)
    run.log_histogram("<b>key</b>", edges=[0, 1, 3], counts=[2, 0.5], step=5)
    img = run.log_media("img", np.zeros((4, 5, 3), np.uint8), caption="<i>c</i>")
    run.log_media("tab", {"columns": ["a"], "data": [[1]]}, step=2)
    run.update(config={"lr": 0.2, "wd": 0.01}, summary={"best": 1}, tags=["t1"],
               metrics={"val/*": {"goal": "maximize"}})
    run.update(summary={"best": 2, "last": 3}, notes="n")
    return run, img


def _read(db=None, root=None) -> dict:
    with read_store(db, root=root) as con:
        return {name: con.execute(sql).fetchall() for name, sql in _READ.items()}


def test_three_kinds_into_duckdb_and_lake_read_back_equal(tmp_path):
    """The same segments give the same rows in both backends; lists are DOUBLE[]; blob is the
    relative path of a blob that verifies; runs hold the merged config/summary/tags."""
    root = tmp_path / "root"
    run, img = _emit(root)
    run.finish(summary={"last": 9})
    shutil.copytree(root, tmp_path / "lake_root")
    ingest(root=root, kind="duckdb")
    ingest(root=tmp_path / "lake_root", kind="lake")
    duck, lake = _read(root=root), _read(root=tmp_path / "lake_root")
    assert duck == lake
    (h1, h2) = sorted(duck["histograms"], key=lambda r: r[0] != "grad/w")
    assert h1 == ("grad/w", 1, 0, [0.0, 2.25, 4.5, 6.75, 9.0], [3.0, 2.0, 2.0, 3.0], 0.0, 9.0,
                  10.0, 45.0, 285.0)
    assert h2[:5] == ("<b>key</b>", 5, 0, [0.0, 1.0, 3.0], [2.0, 0.5])
    media = {r[0]: r for r in duck["media"]}
    assert media["img"][2:8] == ("image", img, media["img"][4], "image/png", "<i>c</i>", None)
    assert media["img"][8] == f"p/{run.id}/blobs/{img[:2]}/{img}"
    assert verify_blob(root / media["img"][8], img)
    assert json.loads(media["img"][9]) == {"width": 5, "height": 4, "channels": 3}
    assert media["tab"][1:3] == (2, "table")
    u1, u2 = duck["updates"]
    assert json.loads(u1[1]) == {"lr": 0.2, "wd": 0.01} and u1[3] == ["t1"]
    assert json.loads(u1[5]) == {"val/*": {"goal": "maximize"}} and u1[4] is None
    assert u2[1] is None and u2[3] is None and u2[4] == "n"
    ((run_id, config, summary, tags),) = duck["runs"]
    assert json.loads(config) == {"lr": 0.2, "bs": 8, "wd": 0.01}
    assert json.loads(summary) == {"best": 2, "last": 9}  # run_end.summary merged last
    assert tags == ["t1"]


def test_updates_merge_across_passes_and_reingest_adds_nothing(tmp_path):
    """A pass per flush: the merged run survives (reloaded from the store); a pass with
    nothing new and a fresh duplicate pass add no row."""
    root = tmp_path / "root"
    run, _ = _emit(root)
    run.flush()
    ingest(root=root)
    run.update(config={"bs": 16}, summary={"best": 5})
    run.flush()
    ingest(root=root)
    run.finish(summary={"final": True})
    ingest(root=root)
    first = _read(root=root)
    ingest(root=root)
    assert _read(root=root) == first
    ((_, config, summary, tags),) = first["runs"]
    assert json.loads(config) == {"lr": 0.2, "bs": 16, "wd": 0.01}
    assert json.loads(summary) == {"best": 5, "last": 3, "final": True}
    assert tags == ["t1"] and len(first["updates"]) == 3 and len(first["media"]) == 2


def test_a_resumed_run_start_keeps_earlier_updates(tmp_path, make_writer):
    """A later attempt's run_start replaces the config; stored updates are merged again."""
    w0 = make_writer(run_id="r1", project="p")
    w0.start(config={"lr": 1, "a": 1}).add(E.RunUpdate, config={"lr": 2}, tags=["u"])
    w0.end().flush()
    w0.seal()
    ingest(root=w0.root)
    w1 = make_writer(run_id="r1", project="p", attempt=1)
    w1.start(config={"lr": 1, "b": 2}, tags=["resumed"]).flush()
    ingest(root=w0.root)
    ((_, config, _, tags),) = _read(root=w0.root)["runs"]
    assert json.loads(config) == {"lr": 2, "b": 2} and tags == ["u"]


def test_bad_events_are_quarantined_the_rest_loaded(tmp_path, make_writer):
    """Mismatched or descending histogram edges and a sha256 that is no blob name: one
    problem each naming the key, not loaded; good events beside them are."""
    w = make_writer(run_id="r1", project="p")
    w.start()
    w.add(E.Histogram, key="short", edges=[0.0, 1.0], counts=[1.0, 2.0])
    w.add(E.Histogram, key="desc", edges=[2.0, 1.0], counts=[1.0])
    w.add(E.Histogram, key="ok", edges=[0.0, 1.0], counts=[1.0])
    w.add(E.Media, key="evil", media="image", sha256="../../etc/passwd", bytes=1,
          mime="image/png")
    w.end().flush()
    w.seal()
    report = ingest(root=w.root)
    text = "\n".join(report.problems)
    assert "'short': 2 edges for 2 counts" in text and "'desc': edges not finite" in text
    assert "'evil': sha256 '../../etc/passwd' is not a blob name" in text
    rows = _read(root=w.root)
    assert [r[0] for r in rows["histograms"]] == ["ok"] and rows["media"] == []


def test_deleted_blob_still_loads_its_row_and_blobs_are_not_writers(tmp_path):
    """A blob deleted before ingest: the row is loaded, verify_blob says False. The blobs
    folder gives no writer, no quarantine row and no problem."""
    root = tmp_path / "root"
    run = runlake.init(project="p", name="n", root=root, **QUIET)
    sha = run.log_media("img", b"\x89PNG\r\n\x1a\nfake", step=0)
    run.finish()
    blob_path(run.dir, sha).unlink()
    report = ingest(root=root)
    assert report.problems == []
    with read_store(root=root) as con:
        (blob,) = con.execute("SELECT blob FROM media").fetchone()
        writers = con.execute("SELECT writer FROM writers").fetchall()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert not verify_blob(root / blob, sha)
    assert writers == [(run.writer,)] and quarantined == 0


def test_nonfinite_histogram_values_are_dropped_not_loaded(tmp_path):
    """NaN/Inf never reach the store: the emitter left them out and counted them."""
    root = tmp_path / "root"
    run = runlake.init(project="p", name="n", root=root, **QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunlakeWarning)
        run.log_histogram("h", [1.0, float("nan"), 2.0, float("-inf")], bins=2)
    run.finish()
    ingest(root=root)
    with read_store(root=root) as con:
        (row,) = con.execute("SELECT counts, num FROM histograms").fetchall()
        dropped = con.execute("SELECT dropped FROM runs").fetchone()[0]
    assert row == ([1.0, 1.0], 2.0) and dropped == 2


def test_a_linked_blobs_folder_is_no_refused_writer(tmp_path):
    """Blobs moved to another disk behind a link: discovery skips `blobs` by name, so the
    link is not reported as a refused writer folder; the media row loads."""
    root = tmp_path / "root"
    run = runlake.init(project="p", name="n", root=root, **QUIET)
    sha = run.log_media("img", b"bytes", step=0)
    run.finish()
    elsewhere = tmp_path / "other-disk"
    shutil.move(run.dir / "blobs", elsewhere)
    (run.dir / "blobs").symlink_to(elsewhere, target_is_directory=True)
    report = ingest(root=root)
    assert report.problems == []
    with read_store(root=root) as con:
        assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
        (blob,) = con.execute("SELECT blob FROM media").fetchone()
    assert verify_blob(root / blob, sha)  # readers follow the link
