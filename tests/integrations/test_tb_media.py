"""TensorBoard histograms, images and audio: imported as histogram/media rows exactly, exported
back losslessly (TensorBoard's own EventAccumulator reads the same buckets and bytes), mirrored
live; watch(log_histograms=True) emits grad/<name> and param/<name> histograms."""

from __future__ import annotations

import hashlib
import io
import json
import math
import wave

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.audio import metadata as audio_md
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.image import metadata as image_md
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util.tensor_util import make_ndarray, make_tensor_proto
from torch.utils.tensorboard import SummaryWriter

import runlake
from runlake.cli import main
from runlake.emitter.testing import capture, of_kind
from runlake.ingest.tensorboard import import_tensorboard
from runlake.schemas.blobs import blob_path
from runlake.store import read_store
from runlake.torch import watch

_GUIDANCE = {"histograms": 0, "images": 0, "audio": 0, "tensors": 0, "scalars": 0}


def _acc(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance=_GUIDANCE)
    acc.Reload()
    return acc


def _rows(root, sql, params=None):
    with read_store(root=root) as con:
        return con.execute(sql, params or []).fetchall()


def _seen(acc: EventAccumulator) -> dict:
    """Everything TensorBoard reads from a run, by (kind, tag): steps with buckets or bytes."""
    out = {}
    tags = acc.Tags()
    for t in tags["histograms"]:
        out[("histo", t)] = [(e.step, e.histogram_value) for e in acc.Histograms(t)]
    for t in tags["images"]:
        out[("image", t)] = [(e.step, e.encoded_image_string, e.width, e.height) for e in acc.Images(t)]
    for t in tags["audio"]:
        out[("audio", t)] = [(e.step, e.encoded_audio_string, e.content_type, e.sample_rate, e.length_frames)
                             for e in acc.Audio(t)]
    for t in tags["tensors"]:
        out[("tensor", t)] = [(e.step, make_ndarray(e.tensor_proto).tolist()) for e in acc.Tensors(t)]
    return out


def _wav(n: int, rate: int, seed: int) -> bytes:
    samples = (np.random.default_rng(seed).uniform(-1, 1, n) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (3, 4, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _torch_logdir(logdir):
    """torch's SummaryWriter: add_histogram (twice), add_image, add_images, add_audio, add_mesh."""
    rng = np.random.default_rng(0)
    w = SummaryWriter(str(logdir / "torch"))
    w.add_histogram("w", rng.normal(size=500), 0)
    w.add_histogram("w", rng.normal(2, 1, size=500), 5, bins=16)
    w.add_image("img", rng.random((3, 8, 6)), 1)
    w.add_images("batch", rng.random((4, 3, 5, 5)), 2)
    w.add_audio("clip", torch.sin(torch.arange(800) / 10.0), 3, sample_rate=8000)
    w.add_mesh("mesh", vertices=torch.rand(1, 3, 3), faces=torch.tensor([[[0, 1, 2]]]), global_step=0)
    w.close()


def _tensorboard_logdir(logdir):
    """tensorboard's own writer: legacy HistogramProto/Image/Audio values and the plugin
    tensor forms (histogram_pb buckets, several PNGs in one images tensor, WAV clips with
    labels in one audio tensor)."""
    ev = EventFileWriter(str(logdir / "native"))

    def add(step, *values):
        ev.add_event(event_pb2.Event(wall_time=1000.0 + step, step=step, summary=summary_pb2.Summary(value=values)))

    histo = summary_pb2.HistogramProto(min=-2.5, max=7.0, num=9, sum=12.5, sum_squares=80.25,
                                       bucket_limit=[-1.0, 0.0, 5.0, 7.0], bucket=[2, 0, 4, 3])
    add(1, summary_pb2.Summary.Value(tag="legacy_h", histo=histo))
    add(2, *histogram_pb("tensor_h", np.arange(50.0) ** 0.5, buckets=7).value)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3  # not decodable: must still come back as is
    add(3, summary_pb2.Summary.Value(tag="photo", image=summary_pb2.Summary.Image(
        height=2, width=3, colorspace=3, encoded_image_string=jpeg)))
    add(4, summary_pb2.Summary.Value(tag="grid", metadata=image_md.create_summary_metadata("grid", ""),
                                     tensor=make_tensor_proto([b"4", b"3", _png(1), _png(2), _png(3)])))
    add(5, summary_pb2.Summary.Value(tag="speech", audio=summary_pb2.Summary.Audio(
        sample_rate=16000.0, num_channels=1, length_frames=320, encoded_audio_string=_wav(320, 16000, 0),
        content_type="audio/wav")))
    clips = np.array([[_wav(100, 8000, 1), b"first"], [_wav(200, 8000, 2), b""]], dtype=object)
    add(6, summary_pb2.Summary.Value(
        tag="clips", metadata=audio_md.create_summary_metadata("clips", "", audio_md.Encoding.Value("WAV")),
        tensor=make_tensor_proto(clips)))
    ev.close()


def _check_store_matches(root, original: dict, run: str) -> None:
    """The store's histogram rows hold TensorBoard's buckets and stats; each media row's
    blob holds the bytes TensorBoard read (checked by name, size and content)."""
    hists = _rows(root, "SELECT key, step, edges, counts, min, max, num, sum, sum_squares FROM histograms h "
                        "JOIN runs r USING (run_id) WHERE r.name = ? ORDER BY key, step", [run])
    for key, step, edges, counts, *stats in hists:
        if ("histo", key) in original:
            hv = dict(original[("histo", key)])[step]
            assert edges[1:] == list(hv.bucket_limit) and counts == list(hv.bucket)
            assert stats == [hv.min, hv.max, hv.num, hv.sum, hv.sum_squares]
            assert edges[0] == (hv.min if hv.bucket[0] > 0 else hv.bucket_limit[0])
        else:
            rows = dict(original[("tensor", key)])[step]
            assert [[a, b, c] for a, b, c in zip(edges, edges[1:], counts)] == rows
            assert stats == [None, None, sum(counts), None, None]
    media = _rows(root, "SELECT m.key, m.step, m.sha256, m.bytes, m.blob, m.meta FROM media m "
                        "JOIN runs r USING (run_id) WHERE r.name = ? ORDER BY 1, 2, m.meta->>'index'", [run])
    found: dict = {}
    for key, step, sha, size, blob, meta in media:
        data = (root / blob).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == size
        found.setdefault(key, []).append((step, data, json.loads(meta)))
    expected = {}
    for (kind, tag), seen in original.items():
        if kind in ("image", "audio"):
            expected[tag] = [(e[0], e[1]) for e in seen]
        elif tag in found:  # a plugin tensor: [width, height, images...] or [[clip, label], ...]
            expected[tag] = [(s, d) for s, t in seen for d in (t[2:] if found[tag][0][2].get("width") else
                                                                 [row[0] for row in t])]
    assert {t: [(s, d) for s, d, _ in v] for t, v in found.items()} == expected


def test_import_then_export_is_lossless(tmp_path, capsys):
    """SummaryWriter and tensorboard's own writer files -> import (rows exact, bytes in blobs)
    -> export: TensorBoard reads the same histogram buckets and the same image and audio bytes
    as from the originals; a mesh stays reported as not imported; a re-import adds nothing."""
    logdir, root = tmp_path / "tb", tmp_path / "root"
    _torch_logdir(logdir)
    _tensorboard_logdir(logdir)
    results = {r.name: r for r in import_tensorboard(logdir, project="tb", root=root)}
    assert results["torch"].imported == {"histograms": 2, "images": 2, "audio": 1}
    assert (results["torch"].histograms, results["torch"].media) == (2, 3)
    assert (results["native"].histograms, results["native"].media) == (2, 7)
    assert [s for s in results["torch"].skipped if s.startswith("mesh")]
    assert not [s for r in results.values() for s in r.skipped if s.startswith(("histo", "image", "audio"))]
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["export", "tensorboard", *(r.run_id for r in results.values()), "-o", str(out),
                 "--root", str(root), "--json"]) == 0
    exported = {e["run"]: e for e in json.loads(capsys.readouterr().out)}
    assert [exported["native"][k] for k in ("histograms", "media", "not exported")] == [2, 7, ""]
    for run in ("torch", "native"):
        original, back = _seen(_acc(logdir / run)), _seen(_acc(out / run))
        original = {k: v for k, v in original.items() if not k[1].startswith("mesh")}  # not imported
        assert set(original) and back == original, run
        _check_store_matches(root, original, run)
    assert len(_rows(root, "SELECT * FROM histograms")) == 4
    blobs = sorted(p.name for p in root.rglob("blobs/*/*"))
    again = import_tensorboard(logdir, project="tb", root=root)
    assert [r.status for r in again] == ["exists", "exists"]
    assert sorted(p.name for p in root.rglob("blobs/*/*")) == blobs
    assert _rows(root, "SELECT (SELECT count(*) FROM histograms), (SELECT count(*) FROM media)") == [(4, 10)]


def test_media_over_the_cap_is_reported_and_the_rest_imported(tmp_path, monkeypatch):
    """An image over RUNLAKE_MEDIA_MAX_BYTES is named in `skipped` (and the run's import log);
    the smaller image and the histogram are imported."""
    w = SummaryWriter(str(tmp_path / "tb"))
    w.add_image("big", np.random.default_rng(0).random((3, 64, 64)), 0)
    w.add_image("small", np.zeros((3, 2, 2)), 0)
    w.add_histogram("h", np.arange(10.0), 0)
    w.close()
    monkeypatch.setenv("RUNLAKE_MEDIA_MAX_BYTES", "1000")
    [r] = import_tensorboard(tmp_path / "tb", root=tmp_path / "root")
    assert r.media == 1 and r.histograms == 1
    assert any(s.startswith("media too big: 1 (big)") for s in r.skipped), r.skipped
    assert _rows(tmp_path / "root", "SELECT key FROM media") == [("small",)]
    logged = [m for (m,) in _rows(tmp_path / "root", "SELECT message FROM logs WHERE logger = 'runlake.import'")]
    assert any("media too big" in m for m in logged)


def test_live_mirror_writes_histograms_and_media(tmp_path):
    """init(tensorboard=DIR): log_histogram and log_media reach TensorBoard with the event's
    buckets and statistics and the blob's bytes; a table (no TensorBoard tab) is counted."""
    run = runlake.init("p", "live", root=tmp_path / "root", tensorboard=tmp_path / "tb", console=False,
                       system_interval=0)
    values = np.random.default_rng(0).normal(size=300)
    run.log_histogram("acts", values, bins=10, step=2)
    img = run.log_media("sample", np.random.default_rng(1).random((6, 5, 3)), step=2)
    clip = run.log_media("voice", np.sin(np.arange(400) / 5.0), sample_rate=8000, step=3)
    note = run.log_media("note", "hello *TB*", media="text", step=3)
    run.log_media("tab", {"columns": ["a"], "data": [[1]]}, step=3)
    mirror = run._writer.mirror
    run.finish()
    assert mirror.skipped == {"table": 1}
    (logdir,) = (tmp_path / "tb").iterdir()
    acc = _acc(logdir)
    [h] = acc.Histograms("acts")
    counts, edges = np.histogram(values, bins=10)
    assert h.step == 2 and list(h.histogram_value.bucket) == counts.tolist()
    assert list(h.histogram_value.bucket_limit) == edges[1:].tolist()
    assert (h.histogram_value.min, h.histogram_value.num) == (values.min(), 300)
    run_dir = tmp_path / "root" / "p" / run.id
    [im] = acc.Images("sample")
    assert im.encoded_image_string == blob_path(run_dir, img).read_bytes() and (im.width, im.height) == (5, 6)
    [au] = acc.Audio("voice")
    assert au.encoded_audio_string == blob_path(run_dir, clip).read_bytes()
    assert (au.sample_rate, au.length_frames) == (8000, 400)
    [text] = acc.Tensors("note")
    assert make_ndarray(text.tensor_proto).tolist() == [blob_path(run_dir, note).read_bytes()]


def test_watch_emits_grad_and_param_histograms(tmp_path, make_model):
    """watch(log_histograms=True): one 64-bucket histogram per tensor (grad/<name>,
    param/<name>) whose counts cover every entry and whose stats are the tensor's; the
    percentile metrics stay; a gradient with NaN is histogrammed without it, counted."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0, strict=False)
        with watch(model, run, every=1, log_histograms=True):
            for step in range(2):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                if step == 1:
                    first = next(model.parameters())
                    first.grad.view(-1)[0] = math.nan
                    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
                opt.step()
                run.log({"loss": 1.0}, step=step)
            params = {n: p.detach().clone() for n, p in model.named_parameters()}
        dropped = dict(run.dropped)
        run.finish()
    hists = {(e.key, e.step): e for e in of_kind(events, "histogram")}
    names = [n for n, _ in model.named_parameters()]
    assert set(hists) == {(f"{k}/{n}", s) for k in ("grad", "param") for n in names for s in (0, 1)}
    for name in names[1:]:  # names[0] got a NaN gradient, so a NaN weight, at step 1
        p = params[name].double()
        h = hists[(f"param/{name}", 1)]
        assert len(h.counts) == 64 and len(h.edges) == 65 and sum(h.counts) == p.numel() == h.num
        assert (h.min, h.max) == (p.min().item(), p.max().item())
        lo, hi = (h.min, h.max) if h.min < h.max else (h.min - 0.5, h.max + 0.5)  # numpy's rule
        assert (h.edges[0], h.edges[-1]) == (lo, hi)
        assert h.sum == pytest.approx(p.sum().item(), rel=1e-5, abs=1e-6)
        assert h.sum_squares == pytest.approx(p.pow(2).sum().item(), rel=1e-5)
        assert h.counts == np.histogram(p.numpy(), bins=np.array(h.edges))[0].tolist()  # [e_i, e_i+1), last closed
    bad = hists[(f"grad/{names[0]}", 1)]
    finite = grads[names[0]].flatten()[1:]
    assert sum(bad.counts) == finite.numel() and bad.min == pytest.approx(finite.min().item())
    assert sum(hists[(f"param/{names[0]}", 1)].counts) == params[names[0]].numel() - 1
    assert dropped.get("nonfinite_histogram") == 2  # one NaN in the gradient, one in the weight
    metrics = {k for e in of_kind(events, "metrics") for k in e.values}
    assert {f"grad/p99/{names[0]}", f"param/p50/{names[1]}"} <= metrics
