"""run.log_histogram / run.log_media / run.update: the events and blobs they write, bad input."""

from __future__ import annotations

import io
import math
import os
import wave
import warnings

import msgspec
import numpy as np
import pytest
import torch
from PIL import Image

import runlake
from runlake.emitter.encode_media import sniff
from runlake.schemas.blobs import MEDIA_MAX_BYTES_ENV, blob_path, verify_blob
from runlake.schemas.errors import EventValueError, RunlakeWarning
from runlake.schemas.events import Media


@pytest.fixture
def make(root, quiet):
    def make(strict=True, **kw):
        return runlake.init(project="p", name="n", root=root, strict=strict, **quiet, **kw)
    return make


def _events(rl, run, kind):
    run.finish()
    return rl.of_kind(rl.read_run(run.dir), kind)


def test_histogram_of_a_tensor_with_nonfinite_values(make, rl):
    """Values are flattened, NaN/Inf left out and counted, statistics exact, step = run.step."""
    run = make()
    run.log({"loss": 1.0}, step=7)
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    x[0, 0], x[1, 1] = float("nan"), float("inf")
    with pytest.warns(RunlakeWarning, match="2 NaN/Inf"):
        run.log_histogram("grad/w", x, bins=5)
    assert run.dropped["nonfinite_histogram"] == 2
    (h,) = _events(rl, run, "histogram")
    finite = [v for v in range(12) if v not in (0, 5)]
    assert h.key == "grad/w" and h.step == 7 and len(h.edges) == 6 and sum(h.counts) == 10
    assert (h.min, h.max, h.num, h.sum) == (1.0, 11.0, 10.0, float(sum(finite)))
    assert h.sum_squares == float(sum(v * v for v in finite))
    assert h.edges == np.histogram(finite, bins=5)[1].tolist()


def test_histogram_given_buckets_and_stats(make, rl):
    """edges=/counts= are stored as given (fractional counts), stats= override."""
    run = make()
    run.log_histogram("h", edges=np.array([0.0, 0.5, 2.0]), counts=[1.5, 2], step=3,
                      stats={"min": 0.1, "num": 3.5})
    (h,) = _events(rl, run, "histogram")
    assert (h.edges, h.counts, h.step, h.min, h.num, h.max) == (
        [0.0, 0.5, 2.0], [1.5, 2.0], 3, 0.1, 3.5, None)


@pytest.mark.parametrize("kw, match", [
    (dict(edges=[0, 1, 2], counts=[1]), "3 edges for 1 counts"),
    (dict(edges=[0, 2, 1], counts=[1, 1]), "ascending"),
    (dict(edges=[0, float("nan")], counts=[1]), "finite"),
    (dict(edges=[0, 1], counts=[-1]), ">= 0"),
    (dict(values=[float("nan")]), "no finite value"),
    (dict(values=[1.0], edges=[0, 1], counts=[1]), "not both"),
    (dict(values=["a"]), "must be numbers"),
    (dict(values=[1.0], bins=0), "bins must be"),
])
def test_bad_histograms(make, rl, kw, match):
    """Strict: one clear EventValueError; strict=False: the event dropped and counted."""
    run = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunlakeWarning)
        with pytest.raises(EventValueError, match=match):
            run.log_histogram("h", **kw)
    lax = make(strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunlakeWarning)
        lax.log_histogram("h", **kw)
    assert lax.dropped.get("bad_event") == 1
    assert _events(rl, lax, "histogram") == []


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("data, expect", [
    (np.arange(12, dtype=np.uint8).reshape(3, 4), np.arange(12, dtype=np.uint8).reshape(3, 4)),
    (np.full((2, 3, 3), 0.5), np.full((2, 3, 3), 128, np.uint8)),  # float [0, 1] scaled
    (torch.zeros(3, 2, 5, dtype=torch.uint8) + torch.tensor([1, 2, 3]).view(3, 1, 1).byte(),
     np.broadcast_to(np.array([1, 2, 3], np.uint8), (2, 5, 3))),  # CHW detected
    (np.ones((2, 2, 4), bool), np.full((2, 2, 4), 255, np.uint8)),  # RGBA
    (np.zeros((1, 1, 1), np.uint8), np.zeros((1, 1), np.uint8)),  # 1 channel, last dim 1: HWC
    (np.arange(12, dtype=np.uint8).reshape(3, 2, 2),  # first 3, last 2: CHW
     np.arange(12, dtype=np.uint8).reshape(3, 2, 2).transpose(1, 2, 0)),
    (np.zeros((4, 5, 2), np.uint8), np.zeros((5, 2, 4), np.uint8)),  # first 4, last 2: CHW
    (np.zeros((5, 4, 2), np.uint8), np.zeros((5, 4, 2), np.uint8)),  # gray+alpha HWC
])
def test_images_are_png_that_pillow_reads_back(make, rl, data, expect):
    """Gray/RGB/RGBA, uint8 / bool / float, HW / HWC / CHW: Pillow decodes the same pixels."""
    run = make()
    sha = run.log_media("samples/img", data, caption="<b>bold</b> & co")
    (m,) = _events(rl, run, "media")
    png = blob_path(run.dir, sha).read_bytes()
    assert (m.media, m.mime, m.sha256, m.bytes) == ("image", "image/png", sha, len(png))
    assert m.caption == "<b>bold</b> & co"  # markup stored as text
    assert np.array_equal(_pixels(png), expect)
    assert (m.meta["height"], m.meta["width"]) == expect.shape[:2]
    assert verify_blob(blob_path(run.dir, sha), sha)


def test_audio_is_16_bit_wav(make, rl):
    """Float samples (n, ch) -> 16-bit PCM WAV; rate, channels and duration in meta."""
    run = make()
    samples = np.stack([np.linspace(-1, 1, 800), np.zeros(800)], axis=1)
    sha = run.log_media("gen/audio", samples, sample_rate=8000, meta={"scores": {"mos": 4.1}})
    (m,) = _events(rl, run, "media")
    with wave.open(str(blob_path(run.dir, sha))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            2, 2, 8000, 800)
        pcm = np.frombuffer(w.readframes(800), "<i2").reshape(800, 2)
    assert pcm[0, 0] == -32767 and pcm[-1, 0] == 32767 and not pcm[:, 1].any()
    assert m.mime == "audio/wav" and m.meta == {"sample_rate": 8000, "channels": 2,
                                                 "duration_s": 0.1, "scores": {"mos": 4.1}}


def test_table_text_bytes_and_files(make, rl, tmp_path):
    """Tables as JSON, text as text, bytes typed by mime / sniffing / octet-stream, files copied."""
    run = make()
    table = run.log_media("t", {"columns": ["a", "b"], "data": [[1, "x"], [2, None]]})
    text = run.log_media("<script>k</script>", "<script>alert(1)</script>", media="text")
    png = run.log_media("b1", Image.new("RGB", (3, 2)).tobytes() and _png_file_bytes())
    raw = run.log_media("b2", b"\x00\x01")
    typed = run.log_media("b3", b"RIFF....WAVEfmt ", mime="audio/x-custom")
    f = tmp_path / "notes.md"
    f.write_text("# hi")
    path = run.log_media("f", f)
    events = {m.key: m for m in _events(rl, run, "media")}
    assert msgspec.json.decode(blob_path(run.dir, table).read_bytes()) == {
        "columns": ["a", "b"], "data": [[1, "x"], [2, None]]}
    assert events["t"].meta == {"columns": ["a", "b"], "rows": 2}
    assert events["<script>k</script>"].mime == "text/plain"  # a key with markup: kept as text
    assert blob_path(run.dir, text).read_text() == "<script>alert(1)</script>"
    assert (events["b1"].media, events["b1"].mime, events["b1"].meta["width"]) == (
        "image", "image/png", 3)
    assert (events["b2"].media, events["b2"].mime) == ("file", "application/octet-stream")
    assert (events["b3"].media, events["b3"].mime) == ("audio", "audio/x-custom")
    assert (events["f"].name, events["f"].mime, events["f"].media) == (
        "notes.md", "text/markdown", "text")
    assert {m.sha256 for m in events.values()} == {table, text, png, raw, typed, path}


def _png_file_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_same_content_is_one_blob(make, rl):
    """Content-addressed: logging identical bytes twice stores one file, two events."""
    run = make()
    a = run.log_media("x", b"same", step=1)
    b = run.log_media("x", b"same", step=2)
    assert a == b
    assert [m.step for m in _events(rl, run, "media")] == [1, 2]
    assert len(list((run.dir / "blobs").rglob("*"))) == 2  # one folder, one file


def test_over_the_cap(make, rl, tmp_path, monkeypatch):
    """A 300 MiB (sparse) file is refused from its size, never read; strict raises, else
    the event is dropped and counted as media_too_big."""
    monkeypatch.setenv(MEDIA_MAX_BYTES_ENV, "1000")
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(300 << 20)
    run = make()
    with pytest.raises(EventValueError, match="over the media cap of 1,000 bytes"):
        run.log_media("big", big)
    with pytest.raises(EventValueError, match="over the media cap"):
        run.log_media("img", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    lax = make(strict=False)
    with pytest.warns(RunlakeWarning, match="media cap"):
        assert lax.log_media("big", big) is None
    assert lax.log_media("small", b"ok") is not None
    assert lax.dropped == {"media_too_big": 1}
    assert [m.key for m in _events(rl, lax, "media")] == ["small"]
    assert not (run.dir / "blobs").exists()


@pytest.mark.parametrize("make_path, match", [
    (lambda d: d / "missing.png", "No such file"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "f").write_text("x") and d / "f" / "below", "Not a directory"),
    (lambda d: os.mkfifo(d / "fifo") or d / "fifo", "not a regular file"),
])
def test_paths_that_cannot_be_read(make, tmp_path, make_path, match):
    """Missing, a folder, under a file, a FIFO (never opened: it would block): a clear error
    naming the path; strict=False drops the event."""
    path = make_path(tmp_path)
    run = make()
    with pytest.raises(EventValueError, match=match):
        run.log_media("f", path)
    lax = make(strict=False)
    with pytest.warns(RunlakeWarning, match=match):
        assert lax.log_media("f", str(path)) is None
    assert lax.dropped == {"bad_event": 1}


def test_a_symlink_is_followed_and_its_target_copied(make, rl, tmp_path):
    """The blob holds the target's bytes, so deleting the link or the target later loses
    nothing; the name is the link's."""
    target = tmp_path / "elsewhere" / "real.wav"
    target.parent.mkdir()
    target.write_bytes(b"RIFF\x00\x00\x00\x00WAVEdata")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    run = make()
    sha = run.log_media("a", link)
    target.unlink()
    (m,) = _events(rl, run, "media")
    assert blob_path(run.dir, sha).read_bytes() == b"RIFF\x00\x00\x00\x00WAVEdata"
    assert (m.name, m.mime, m.media) == ("link.wav", "audio/wav", "audio")


@pytest.mark.parametrize("args, kw, match", [
    (("", b"x"), {}, "1-256 characters"),
    ((3, b"x"), {}, "keys must be str"),
    (("k", object()), {}, "cannot log object"),
    (("k", np.zeros(5)), {}, "an image is"),
    (("k", np.zeros(5)), {"media": "audio"}, "needs sample_rate"),
    (("k", np.full((2, 2), 2.0)), {}, r"in \[0, 1\]"),
    (("k", b"x"), {"media": "picture"}, "media must be one of"),
    (("k", {"columns": ["a"], "data": [[1, 2]]}), {}, "row 0 has 2 cells"),
])
def test_bad_media(make, args, kw, match):
    """Every refusal names what was expected; strict=False drops only that event."""
    run = make()
    with pytest.raises(EventValueError, match=match):
        run.log_media(*args, **kw)
    lax = make(strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunlakeWarning)
        assert lax.log_media(*args, **kw) is None
    assert sum(lax.dropped.values()) == 1


class _CheckingSink:
    """A sink asserting that every media event's blob is on disk when its frame is written."""

    def __init__(self, run_dir_of):
        self.run_dir_of, self.seen, self.missing = run_dir_of, 0, []

    def write(self, events, data):
        for ev in events:
            if isinstance(ev, Media):
                self.seen += 1
                if not verify_blob(blob_path(self.run_dir_of(), ev.sha256), ev.sha256):
                    self.missing.append(ev.sha256)

    def close(self):
        pass


def test_blob_is_on_disk_before_its_frame(root, quiet):
    """The writer never hands a frame naming a blob that is not (completely) written."""
    holder = {}
    sink = _CheckingSink(lambda: holder["run"].dir)
    run = runlake.init(project="p", name="n", root=root, sink=sink, flush_interval=0.001,
                       **quiet)
    holder["run"] = run
    for i in range(50):
        run.log_media("k", np.full((8, 8), i, np.uint8), step=i)
    run.finish()
    assert sink.seen == 50 and sink.missing == []


def test_update(make, rl):
    """config/summary/tags/notes/metrics in one event; nothing given: no event."""
    run = make()
    run.log({"x": 1.0}, step=4)
    run.update(config={"lr": 0.1, "opt": {"betas": (0.9, 0.99)}}, summary={"best": math.inf},
               tags=("a", "b"), notes="<i>n</i>",
               metrics={"val/*": {"step_metric": "epoch", "summary": "min,max",
                                  "goal": "maximize", "hidden": False}})
    run.update()
    run.update(tags=[])
    first, second = _events(rl, run, "update")
    assert first.config == {"lr": 0.1, "opt": {"betas": [0.9, 0.99]}}
    assert first.summary == {"best": "inf"} and first.tags == ["a", "b"] and first.step == 4
    assert first.notes == "<i>n</i>" and first.metrics == {"val/*": {
        "step_metric": "epoch", "summary": "min,max", "goal": "maximize", "hidden": False}}
    assert second.tags == [] and second.config == {}


@pytest.mark.parametrize("kw, match", [
    (dict(config=[1, 2]), "must be a mapping"),
    (dict(metrics={"loss": {"summary": "median"}}), "'summary' must be"),
    (dict(metrics={"loss": {"colour": "red"}}), "is not a metric field"),
    (dict(metrics={"": {"goal": "minimize"}}), "1-256 characters"),
    (dict(config={(1, 2): 3}), "keys must be str"),
])
def test_bad_updates(make, rl, kw, match):
    """Strict raises naming the argument; strict=False leaves out only the bad part."""
    run = make()
    with pytest.raises(EventValueError, match=match):
        run.update(notes="kept", **kw)
    lax = make(strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunlakeWarning)
        lax.update(notes="kept", **kw)
    (u,) = _events(rl, lax, "update")
    assert u.notes == "kept" and sum(lax.dropped.values()) == 1


def test_sniff():
    """The magic numbers the emitter recognises in bytes without a mime."""
    assert sniff(_png_file_bytes()) == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"OggS\0") == "audio/ogg"
    assert sniff(b"\0\0\0\x18ftypmp42") == "video/mp4"
    assert sniff(b"plain") is None


class _BadStr:
    def __str__(self):
        raise RuntimeError("no str")

    __repr__ = __str__


def _circular():
    d = {}
    d["self"] = d
    return d


HOSTILE = [
    pytest.param(lambda r: r.log_histogram("h", torch.empty(3, device="meta")), id="h-meta"),
    pytest.param(lambda r: r.log_histogram("h", [1.0], step="s", epoch=2**40,
                                           stats={"min": "x", "bogus": 1}), id="h-args"),
    pytest.param(lambda r: r.log_histogram("h", edges=[_BadStr()], counts=[]), id="h-edges"),
    pytest.param(lambda r: r.log_histogram(_BadStr(), [1.0]), id="h-key"),
    pytest.param(lambda r: r.log_media("m", torch.empty(2, 2, device="meta")), id="m-meta"),
    pytest.param(lambda r: r.log_media("m", b"x", caption=_BadStr(), name=_BadStr(),
                                       meta=_circular(), step=1.5), id="m-args"),
    pytest.param(lambda r: r.log_media("m", np.zeros(8), sample_rate="fast"), id="m-rate"),
    pytest.param(lambda r: r.log_media("m", {"columns": 5, "data": 3}), id="m-table"),
    pytest.param(lambda r: r.log_media("m", "a\0b"), id="m-nul-path"),
    pytest.param(lambda r: r.update(config=_circular(), tags=object(), notes=_BadStr(),
                                    metrics={"x": 5}, step=2**70), id="u-args"),
]


@pytest.mark.parametrize("call", HOSTILE)
def test_hostile_arguments_never_raise_with_strict_false(make, rl, call):
    """strict=False: no raise, a counted drop, later events kept; strict: only our errors."""
    lax = make(strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(lax)
        lax.log({"after": 1.0})
        assert sum(lax.dropped.values()) >= 1
    assert _events(rl, lax, "metrics")[-1].values == {"after": 1.0}
    run = make()
    with pytest.raises((runlake.EventValueError, runlake.ConfigError)) as info:
        call(run)
    assert len(str(info.value)) < 600


def test_a_blob_that_cannot_be_written_drops_the_event_in_both_modes(make, rl):
    """A disk error is no argument error: counted as media_io_error, never raised."""
    run = make()
    (run.dir / "blobs").write_text("a file where the blobs folder goes")
    with pytest.warns(RunlakeWarning, match="cannot write the blob"):
        assert run.log_media("m", b"data") is None
    assert run.dropped == {"media_io_error": 1}
    assert _events(rl, run, "media") == []


def test_histogram_of_one_distinct_value_and_of_a_plain_list(make, rl):
    """One distinct value: numpy's rule (a bucket of width 1 around it); ints in a nested list."""
    run = make()
    run.log_histogram("same", [2.0, 2.0, 2.0], bins=2)
    run.log_histogram("nested", [[1, 2], [3, 4]], bins=3)
    same, nested = _events(rl, run, "histogram")
    assert (same.edges, same.counts, same.min, same.max) == ([1.5, 2.0, 2.5], [0.0, 3.0], 2.0, 2.0)
    assert nested.counts == [1.0, 1.0, 2.0] and (nested.num, nested.sum) == (4.0, 10.0)


@pytest.mark.parametrize("bins", [1, 7, 64])
def test_the_numpy_free_histogram_matches_numpy(bins):
    """The fallback for an emitter without numpy buckets like numpy.histogram."""
    from runlake.emitter.histograms import plain_histogram

    values = np.random.default_rng(bins).normal(size=2000).tolist() + [0.0, 0.0]
    edges, counts, stats = plain_histogram(values, bins)
    np_counts, np_edges = np.histogram(values, bins=bins)
    assert edges == pytest.approx(np_edges.tolist(), rel=1e-12, abs=1e-12)
    assert counts == np_counts.astype(float).tolist()
    assert stats["sum_squares"] == pytest.approx(float(np.dot(values, values)), rel=1e-12)
