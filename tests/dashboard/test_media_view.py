"""The Media view (``?view=media``) and its queries (``runlake.analysis.media``).

One store (``media_store.build``): two runs with images at three steps, an audio clip with
scores (``meta.scores`` and a ``samples`` row), a table and a text blob carrying markup, an
image under a hostile key with a hostile caption, 30 histogram steps; a damaged blob, a
blob linked out of the root and a ``blob`` column rewritten to climb out of it. The app runs
in Streamlit's AppTest, and once in a real server loaded by headless Chromium.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import media_store  # noqa: E402
from markdown_fields import markdown_fields  # noqa: E402
from media_store import (  # noqa: E402
    HOSTILE_CAPTION, HOSTILE_CELL, HOSTILE_KEY, HOSTILE_TEXT, KEYS, SECRET)
from runlake.analysis import media as queries
from runlake.analysis.markup import escape_markdown
from runlake.store import read_store

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
# What would be live markup if it reached Markdown unescaped.
FRAGMENTS = ("![i](", "<img", "<script", "[l](javascript", "**bold", "**k**", "$x$", "<b>")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media") / "root"
    root.mkdir()
    return media_store.build(root)


@pytest.fixture
def media_app(media, monkeypatch):
    """``media_app(**query_params)`` → the Media view over the media store, run."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RUNLAKE_DB", str(media["db"]))

    def make(**params: str):
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update({"view": "media", "refresh": "off", **params})
        at.run()
        assert not at.exception, at.exception
        return at

    return make


def _markdown_fields(at) -> list[tuple[str, str]]:
    """The Markdown-rendered fields (markdown_fields.py), the view's subheaders among them."""
    fields = markdown_fields(at)
    assert any(kind == "subheader" for kind, _ in fields)
    return fields


def _runs(media) -> str:
    return ",".join(media["ids"][n] for n in ("gen-a", "gen-b"))


def _texts(at) -> list[str]:
    return [str(e.value) for e in at.text]


def test_every_kind_renders(media, media_app):
    """Images, audio, video, a table, text and a histogram heatmap of both runs are drawn."""
    at = media_app(runs=_runs(media),
                   keys=",".join(KEYS[k] for k in ("image", "audio", "table", "text", "hist",
                                                   "video")))
    assert len(at.get("image")) == 2  # one per run at the last step
    assert len(at.get("video")) == 1
    assert len(at.get("audio")) == 2
    assert all(a.proto.url.endswith(".wav") for a in at.get("audio"))
    tables = [d.value for d in at.dataframe]
    assert any(list(t.columns) == ["input", "pred", "score"] and t["score"][0] == 0.9
               for t in tables)
    assert [c.value for c in at.code] == [HOSTILE_TEXT, HOSTILE_TEXT]
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2 and all('"rect"' in c.proto.spec for c in charts)
    assert "step 20 · pattern at step 20" in _texts(at)
    assert not at.error


def test_files_and_svg_are_offered_for_download_not_drawn(media, media_app):
    """A file (logged twice at one step) and an SVG image get download buttons, no image;
    the file name offered is stripped of path and markup characters."""
    at = media_app(runs=_runs(media), keys=f"{KEYS['file']},{KEYS['svg']}")
    assert not at.get("image") and not at.error
    buttons = at.get("download_button")
    assert len(buttons) == 3, [b.proto for b in buttons]
    labels = [re.sub(r"\\(.)", r"\1", b.proto.label) for b in buttons]
    assert sum("Download w_1_.bin (" in label for label in labels) == 2, labels


def test_scores_shown_beside_the_clip(media, media_app):
    """An audio clip shows its meta scores and the samples row's scores as plain text."""
    at = media_app(runs=_runs(media), keys=KEYS["audio"])
    texts = _texts(at)
    assert "scores: mos 3.5, pesq 2.25" in texts and "scores: mos 4.5, pesq 2.25" in texts


def test_hostile_text_stays_text(media, media_app):
    """A markup key, caption, table cell and text blob never reach Markdown unescaped."""
    at = media_app(runs=_runs(media), keys=",".join([HOSTILE_KEY, KEYS["table"], KEYS["text"]]))
    fields = _markdown_fields(at)
    live = [(kind, text) for kind, text in fields
            if any(f in re.sub(r"\\[!-/:-@\[-`{-~]", "\x00", text) for f in FRAGMENTS)]
    assert not live, live
    assert escape_markdown(HOSTILE_KEY) in [s.value for s in at.subheader]
    assert f"step 3 · {HOSTILE_CAPTION}" in _texts(at)  # shown, as text
    assert any(HOSTILE_CELL in t["input"].to_list() for t in (d.value for d in at.dataframe))
    assert len(at.get("image")) == 2


@pytest.mark.parametrize(("key", "message"), [
    ("damaged", "blob damaged"),
    ("escape", "refused: the blob path"),
    ("link", "leads outside the root"),
])
def test_bad_blob_shows_a_message_and_no_bytes(media, media_app, key, message):
    """A damaged blob, a crafted path out of the root and a link out of it: a message, no image."""
    at = media_app(runs=_runs(media), keys=KEYS[key])
    assert len(at.get("image")) == 0
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and message.replace(" ", "") in errors[0].replace("\\", "").replace(" ", "")


def test_step_from_url_and_slider(media, media_app):
    """``?step=`` picks the nearest logged step (a tie: the lower); the slider writes it back."""
    at = media_app(runs=_runs(media), keys=KEYS["image"], step="14")
    assert "step 10 · pattern at step 10" in _texts(at)
    at = media_app(runs=_runs(media), keys=KEYS["image"], step="5")
    assert "step 0 · pattern at step 0" in _texts(at)
    at.select_slider[0].set_value(20).run()
    assert at.query_params["step"] == "20"
    assert "step 20 · pattern at step 20" in _texts(at)


def test_malformed_step_is_dropped_with_a_notice(media, media_app):
    """``?step=inf`` is dropped from the URL with a notice; the last step is shown."""
    at = media_app(runs=_runs(media), keys=KEYS["image"], step="inf")
    assert any("step" in str(w.value) and "ignored" in str(w.value) for w in at.warning)
    assert "step" not in at.query_params
    assert "step 20 · pattern at step 20" in _texts(at)


def test_runs_without_media(media, media_app):
    """Runs that logged no media get a line saying how to log some."""
    at = media_app(runs=media["ids"]["plain"])
    assert any("log_media" in str(i.value) for i in at.info)
    assert not at.get("image")


def test_no_selection_shows_the_newest_runs_with_media(media, media_app):
    """With no run selected, the runs that logged media are shown (not the plain one)."""
    at = media_app(keys=KEYS["image"])
    assert len(at.get("image")) == 2
    assert any("newest run" in str(c.value) for c in at.caption)


@pytest.mark.parametrize("blob", [
    "/etc/passwd", "../x/blobs/{p}/{s}", "media/r/blobs/{p}/../{p}/{s}", "media\\r\\blobs\\{p}\\{s}",
    "media/r/blobs/00/{s}", "media/r/blobs/{p}/" + "0" * 64, "", "media//r/blobs/{p}/{s}",
])
def test_read_blob_refuses_paths_that_are_not_the_items_blob(tmp_path, blob):
    """Only ``<...>/blobs/<sha[:2]>/<sha>`` under the root, without ``.``/``..``, is read."""
    data = b"payload"
    sha = hashlib.sha256(data).hexdigest()
    found = queries.read_blob(tmp_path, blob.format(p=sha[:2], s=sha), sha, len(data))
    assert found.data is None and found.problem.startswith("refused")


def test_read_blob_checks_size_cap_and_checksum(tmp_path):
    """The right bytes are read; a changed file, a wrong size or an oversize file are not."""
    from runlake.schemas.blobs import blob_relpath, write_blob

    data = b"x" * 100
    sha = write_blob(tmp_path / "p" / "r", data)
    rel = blob_relpath("p", "r", sha)
    assert queries.read_blob(tmp_path, rel, sha, 100).data == data
    assert "damaged" in queries.read_blob(tmp_path, rel, sha, 99).problem
    assert "too big" in queries.read_blob(tmp_path, rel, sha, 100, max_bytes=50).problem
    (tmp_path / rel).write_bytes(b"y" * 100)
    assert "damaged" in queries.read_blob(tmp_path, rel, sha, 100).problem
    (tmp_path / rel).unlink()
    assert "missing" in queries.read_blob(tmp_path, rel, sha, 100).problem


def test_histogram_series_is_bounded_and_evenly_spaced(media):
    """At most max_steps rows per run, first and last step kept; cells span to the next step."""
    ids = [media["ids"][n] for n in ("gen-a", "gen-b")]
    with read_store(media["db"]) as con:
        series = queries.histogram_series(con, ids, KEYS["hist"], max_steps=10)
    for run_id in ids:
        steps = series.filter(series["run_id"] == run_id)["step"].to_list()
        assert len(steps) == 10 and steps[0] == 0 and steps[-1] == media_store.HIST_STEPS - 1
        assert steps == sorted(set(steps))
    cells = queries.heatmap_cells(series)
    first = cells.filter((cells["run_id"] == ids[0]) & (cells["step"] == 0))
    assert first["count"].sum() == 500 and set(first["x1"].to_list()) == {float(steps[1])}
    assert (cells["hi"] > cells["lo"]).all() and (cells["count"] > 0).all()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_media_view_in_headless_chromium(media, ui, tmp_path):
    """The real server's Media view draws images in a browser: an <img>, a non-blank page."""
    from PIL import Image, ImageStat

    port = ui.free_port()
    proc = ui.start_ui(media["db"], port)
    try:
        url = (f"http://127.0.0.1:{port}/?view=media&runs={_runs(media)}"
               f"&keys={KEYS['image']},{KEYS['hist']}&refresh=off")
        dom = ui.load_dom(url, "Media")
        assert ">Media</span>" in dom, dom[-2000:]
        assert re.search(r"<img[^>]+src=\"[^\"]*/media/", dom), "no media image on the page"
        for bad in ("Traceback", "stException"):
            assert bad not in dom
        assert SECRET.decode() not in dom
        shot = tmp_path / "media.png"
        deadline = time.monotonic() + 60
        while True:
            ui.chromium(f"--screenshot={shot}", url)
            variance = ImageStat.Stat(Image.open(shot).convert("L")).var[0]
            if variance > 50 or time.monotonic() > deadline:
                break
        assert variance > 50, f"screenshot {shot} is blank (pixel variance {variance:.1f})"
    finally:
        ui.stop(proc)


@pytest.mark.parametrize(("db", "root", "expected"), [
    ("/data/runs/runlake.duckdb", None, "/data/runs"),
    ("/data/runs/runlake-lake", None, "/data/runs"),
    ("s3://bucket/runs/runlake-lake", None, "s3://bucket/runs"),
    ("/elsewhere/x.duckdb", "/data/runs", "/data/runs"),
])
def test_blob_root(db, root, expected):
    """Blob paths are relative to --root, else to the folder holding the store."""
    assert queries.blob_root(db, root) == expected


def test_object_storage_blobs_are_not_read():
    """A blob of an s3:// root gets a message (the view reads local roots only)."""
    sha = "0" * 64
    found = queries.read_blob("s3://bucket/runs", f"p/r/blobs/00/{sha}", sha)
    assert found.data is None and "object storage" in found.problem
