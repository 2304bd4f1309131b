"""`runlake import tensorboard` takes every TensorBoard logdir: files written by torch's
SummaryWriter (every add_* method), by tensorboard's own writers, by runlake's export,
nested trees, empty folders and damaged files; each summary lands in the store or in the
report with its reason."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")
torch = pytest.importorskip("torch")

from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from runlake.cli import main  # noqa: E402
from runlake.store import read_store  # noqa: E402

f32 = lambda v: float(np.float32(v))  # noqa: E731  (TensorBoard stores float32)


def _import(capsys, logdir, root, *extra) -> tuple[int, str, str]:
    rc = main(["import", "tensorboard", str(logdir), "--root", str(root), "--project", "tb", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _rows(root, sql, params=None):
    with read_store(root=root) as con:
        return con.execute(sql, params or []).fetchall()


def _metrics(root, run_name=None):
    sql = "SELECT r.name, m.rank, m.key, m.step, m.value FROM metrics m JOIN runs r USING (run_id)"
    return {(n, rk, k, s): v for n, rk, k, s, v in _rows(root, sql) if run_name in (None, n)}


def _event_file(folder: Path) -> Path:
    (path,) = [p for p in folder.iterdir() if "tfevents" in p.name]
    return path


# -- torch's SummaryWriter -------------------------------------------------------------------

def _write_everything(logdir: Path) -> dict:
    """One torch writer calling every add_* method; returns what the checks need."""
    rng = np.random.default_rng(0)
    w = SummaryWriter(str(logdir / "run"))
    loss = {s: float(rng.normal()) for s in range(5)}
    for s, v in loss.items():
        w.add_scalar("train/loss", v, s)
        w.add_scalars("acc", {"train": 0.1 * s, "val": 0.2 * s}, s)
    data = rng.normal(size=1000)
    w.add_histogram("weights", data, 3)
    w.add_histogram_raw("raw", min=-1.0, max=4.0, num=6, sum=9.0, sum_squares=31.0,
                        bucket_limits=[0.0, 2.0, 4.0], bucket_counts=[1, 3, 2], global_step=4)
    w.add_image("img", np.zeros((3, 8, 6)), 1)
    w.add_images("batch", np.zeros((4, 3, 5, 5)), 2)
    w.add_text("notes", "first **note**", 2)
    w.add_pr_curve("pr", np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.8, 0.3]), 1)
    w.add_pr_curve_raw("pr_raw", [4, 3], [2, 1], [0, 1], [0, 1], [0.5, 0.6], [0.9, 0.8], 2,
                       num_thresholds=2)
    w.add_audio("clip", torch.zeros(1, 800), 1, sample_rate=8000)
    w.add_embedding(torch.randn(5, 3), metadata=list("abcde"), global_step=0, tag="emb")
    w.add_graph(torch.nn.Linear(3, 2), torch.randn(1, 3))
    w.add_custom_scalars({"cat": {"loss": ["Multiline", ["train/loss"]]}})
    w.add_mesh("mesh", vertices=torch.rand(1, 3, 3), faces=torch.tensor([[[0, 1, 2]]]), global_step=0)
    w.add_hparams({"lr": 0.01, "bs": 32, "opt": "adam"}, {"hp/acc": 0.75})
    w.close()
    return {"loss": loss, "data": data}


def test_every_summary_writer_method_is_imported_or_reported(tmp_path, capsys):
    """One run from torch's SummaryWriter (every add_*): scalars exact, add_scalars and the
    add_hparams subfolder in the parent run, histograms as histogram rows with the proto's
    stats, images/audio as media, PR curves as samples, text as logs; graph, mesh, layout
    and embeddings named as not imported."""
    logdir, root = tmp_path / "tb", tmp_path / "root"
    written = _write_everything(logdir)
    rc, out, err = _import(capsys, logdir, root)
    assert rc == 0
    [(name, config)] = _rows(root, "SELECT name, config FROM runs")  # subfolders merged
    assert name == "run" and json.loads(config) == {"lr": 0.01, "bs": 32, "opt": "adam"}
    m = _metrics(root)
    for s, v in written["loss"].items():
        assert m[("run", 0, "train/loss", s)] == f32(v)
        assert m[("run", 0, "acc/train", s)] == f32(0.1 * s)
        assert m[("run", 0, "acc/val", s)] == f32(0.2 * s)
    assert m[("run", 0, "hp/acc", 0)] == 0.75  # add_hparams' metric, in the parent run
    data = written["data"]
    assert not [k for (_, _, k, _) in m if k.startswith(("weights/", "raw/"))]  # no stats as points
    hist = {(k, s): (num, lo, hi, total, sq) for k, s, num, lo, hi, total, sq in _rows(
        root, "SELECT key, step, num, min, max, sum, sum_squares FROM histograms")}
    assert hist[("weights", 3)] == (1000, data.min(), data.max(), data.sum(), data.dot(data))
    assert hist[("raw", 4)] == (6, -1, 4, 9, 31)
    assert _rows(root, "SELECT edges, counts FROM histograms WHERE key = 'raw'") == [([-1, 0, 2, 4], [1, 3, 2])]
    media = {(k, s): (kind, json.loads(meta)) for k, s, kind, meta in _rows(root, "SELECT key, step, media, meta FROM media")}
    assert set(media) == {("img", 1), ("batch", 2), ("clip", 1)}
    assert media[("img", 1)] == ("image", {"width": 6, "height": 8, "channels": 3})
    assert media[("clip", 1)][0] == "audio" and media[("clip", 1)][1]["sample_rate"] == 8000
    assert media[("clip", 1)][1]["frames"] == 800
    samples = {(n, s): json.loads(meta) for n, s, meta in _rows(root, "SELECT name, step, meta FROM samples")}
    assert set(samples) == {("pr", 1), ("pr_raw", 2)}
    pr = samples[("pr_raw", 2)]
    assert pr["tp"] == [4, 3] and pr["precision"] == [f32(0.5), f32(0.6)] and pr["recall"] == [f32(0.9), f32(0.8)]
    assert len(samples[("pr", 1)]["precision"]) == 127  # torch's default thresholds
    assert _rows(root, "SELECT logger, step, message FROM logs WHERE logger = 'notes'") == [("notes", 2, "first **note**")]
    reported = {r[0] for r in _rows(root, "SELECT message FROM logs WHERE logger = 'runlake.import'")}
    for kind in ("graph", "mesh", "custom_scalars", "embeddings"):
        assert any(msg.startswith(f"not imported: {kind}") for msg in reported), kind
        assert f"not imported: {kind}" in err
    assert "acc_train (add_scalars -> acc/train)" in err and "(add_hparams)" in err


def test_add_figure_becomes_an_image(tmp_path, capsys):
    """add_figure (needs matplotlib) is an image summary: one image at its step."""
    plt = pytest.importorskip("matplotlib.pyplot")
    w = SummaryWriter(str(tmp_path / "tb"))
    fig = plt.figure()
    plt.plot([1, 2, 3])
    w.add_figure("fig", fig, 7)
    w.close()
    assert _import(capsys, tmp_path / "tb", tmp_path / "root")[0] == 0
    assert _rows(tmp_path / "root", "SELECT key, step, media, mime FROM media") == [("fig", 7, "image", "image/png")]


def test_plain_add_scalar_logs_import(tmp_path, capsys):
    """The reported crash: a folder of add_scalar calls only (no add_hparams) imports."""
    w = SummaryWriter(str(tmp_path / "tb"))
    for s in range(10):
        w.add_scalar("loss", 1.0 / (s + 1), s)
    w.close()
    rc, out, err = _import(capsys, tmp_path / "tb", tmp_path / "root")
    assert rc == 0 and "Traceback" not in err
    assert _rows(tmp_path / "root", "SELECT step, value FROM metrics ORDER BY step") == [
        (s, f32(1.0 / (s + 1))) for s in range(10)]
    assert _rows(tmp_path / "root", "SELECT config FROM runs") == [("{}",)]


def test_add_scalars_only_writer_is_one_run(tmp_path, capsys):
    """A writer that only called add_scalars (nested tags too): one run, keys <tag>/<name>."""
    w = SummaryWriter(str(tmp_path / "tb" / "exp"))
    for s in range(3):
        w.add_scalars("loss/split", {"train": s, "val": -s, "test_a": 2 * s}, s)
    w.close()
    assert _import(capsys, tmp_path / "tb", tmp_path / "root")[0] == 0
    got = {(k, s): v for _n, _r, k, s, v in [(*key, val) for key, val in _metrics(tmp_path / "root").items()]}
    assert got == {**{("loss/split/train", s): s for s in range(3)}, **{("loss/split/val", s): -s for s in range(3)},
                   **{("loss/split/test_a", s): 2 * s for s in range(3)}}
    assert _rows(tmp_path / "root", "SELECT name FROM runs") == [("exp",)]


def test_several_add_hparams_trials_in_one_writer_stay_separate_runs(tmp_path, capsys):
    """Two add_hparams calls on one writer are two trials: two runs, each with its config."""
    w = SummaryWriter(str(tmp_path / "tb"))
    w.add_hparams({"lr": 0.1}, {"acc": 0.5}, run_name="trial1")
    w.add_hparams({"lr": 0.2}, {"acc": 0.7}, run_name="trial2")
    w.close()
    assert _import(capsys, tmp_path / "tb", tmp_path / "root")[0] == 0
    rows = _rows(tmp_path / "root", "SELECT r.name, r.config->>'lr', m.value FROM runs r JOIN metrics m "
                                    "USING (run_id) ORDER BY r.name")
    assert rows == [("trial1", "0.1", 0.5), ("trial2", "0.2", f32(0.7))]


# -- tensorboard's own writers ---------------------------------------------------------------

def _tb_event(step, *values, wall=1000.0):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    return event_pb2.Event(wall_time=wall + step, step=step, summary=summary_pb2.Summary(value=list(values)))


def _png(width, height) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_tensorboards_own_writers(tmp_path, capsys):
    """tensorboard.summary.Writer (tensor scalars) and v2 tensor summaries written with
    tensorboard's EventFileWriter: legacy simple_value, histogram_pb buckets, text_pb,
    images, audio, PR curves and hparams_pb, each mapped as documented."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.audio import metadata as audio_md
    from tensorboard.plugins.histogram.summary_v2 import histogram_pb
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb
    from tensorboard.plugins.image import metadata as image_md
    from tensorboard.plugins.pr_curve import metadata as pr_md
    from tensorboard.plugins.text.summary_v2 import text_pb
    from tensorboard.summary import Writer
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util.tensor_util import make_tensor_proto

    logdir = tmp_path / "tb"
    w = Writer(str(logdir / "native"))
    for s in range(4):
        w.add_scalar("loss", 2.0 ** -s, s)
    w.close()
    ev = EventFileWriter(str(logdir / "v2"))
    data = np.arange(100.0)
    ev.add_event(_tb_event(0, summary_pb2.Summary.Value(tag="legacy", simple_value=0.25)))
    ev.add_event(_tb_event(1, *histogram_pb("h", data, buckets=10).value))
    ev.add_event(_tb_event(2, *text_pb("t", "hello v2").value))
    image = summary_pb2.Summary.Value(tag="im", metadata=image_md.create_summary_metadata("im", ""),
                                      tensor=make_tensor_proto([b"4", b"3", _png(4, 3), _png(4, 3)]))
    ev.add_event(_tb_event(3, image))
    audio = summary_pb2.Summary.Value(
        tag="au", metadata=audio_md.create_summary_metadata("au", "", audio_md.Encoding.Value("WAV")),
        tensor=make_tensor_proto(np.array([[b"RIFF...", b"label"]], dtype=object)))
    ev.add_event(_tb_event(4, audio))
    curve = np.array([[3, 1], [2, 0], [0, 2], [0, 2], [0.6, 1.0], [1.0, 0.3]], dtype=np.float32)
    pr = summary_pb2.Summary.Value(tag="pr", metadata=pr_md.create_summary_metadata("pr", "", 2),
                                   tensor=make_tensor_proto(curve))
    ev.add_event(_tb_event(5, pr))
    ev.add_event(_tb_event(0, *hparams_pb({"dropout": 0.5, "arch": "cnn", "deep": True}).value))
    from tensorboard.compat.proto import event_pb2

    ev.add_event(event_pb2.Event(wall_time=1006.0, step=6, log_message=event_pb2.LogMessage(
        level=event_pb2.LogMessage.WARN, message="disk almost full")))
    ev.add_event(event_pb2.Event(wall_time=1007.0, step=3, session_log=event_pb2.SessionLog(
        status=event_pb2.SessionLog.START)))
    ev.close()
    rc, out, err = _import(capsys, logdir, tmp_path / "root")
    assert rc == 0
    m = _metrics(tmp_path / "root")
    assert [m[("native", 0, "loss", s)] for s in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert m[("v2", 0, "legacy", 0)] == 0.25
    [(edges, counts, num, lo)] = _rows(tmp_path / "root", "SELECT edges, counts, num, min FROM histograms")
    assert edges == np.linspace(0, 99, 11).tolist() and counts == [10.0] * 10
    assert (num, lo) == (100, None)  # the tensor form has the count total only
    [(cfg,)] = _rows(tmp_path / "root", "SELECT config FROM runs WHERE name = 'v2'")
    assert json.loads(cfg) == {"dropout": 0.5, "arch": "cnn", "deep": True}
    assert _rows(tmp_path / "root", "SELECT logger, step, message FROM logs WHERE logger = 't'") == [("t", 2, "hello v2")]
    assert _rows(tmp_path / "root", "SELECT level, step, message FROM logs WHERE logger = 'tensorboard'") == [
        ("WARNING", 6, "disk almost full")]
    assert "SessionLog START at step 3" in err
    media = _rows(tmp_path / "root", "SELECT key, step, media, bytes, caption, meta FROM media ORDER BY key, meta->>'index'")
    assert [(k, s, kind, n, c) for k, s, kind, n, c, _ in media] == [
        ("au", 4, "audio", 7, "label"), ("im", 3, "image", len(_png(4, 3)), None), ("im", 3, "image", len(_png(4, 3)), None)]
    assert json.loads(media[1][5]) == {"width": 4, "height": 3, "index": 0, "count": 2}
    samples = {n: (s, json.loads(meta)) for n, s, meta in _rows(tmp_path / "root", "SELECT name, step, meta FROM samples")}
    assert samples["pr"][1]["precision"] == [f32(0.6), 1.0] and samples["pr"][1]["tp"] == [3, 1]


def test_tf_hparams_layout_keeps_each_trial_a_run(tmp_path, capsys):
    """The HParams API layout (experiment at the top, one session per trial folder): each
    trial is its own run with its config; the experiment-only folder is reported, not a run."""
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = tmp_path / "tb"
    ev = EventFileWriter(str(logdir))
    ev.add_event(_tb_event(0, *hp.hparams_config_pb([hp.HParam("lr")], [hp.Metric("acc")]).value))
    ev.close()
    for i, lr in enumerate((0.1, 0.01)):
        ev = EventFileWriter(str(logdir / f"run-{i}"))
        ev.add_event(_tb_event(0, *hp.hparams_pb({"lr": lr}).value))
        from tensorboard.compat.proto import summary_pb2

        ev.add_event(_tb_event(1, summary_pb2.Summary.Value(tag="acc", simple_value=0.5 + i / 4)))
        ev.close()
    rc, out, err = _import(capsys, logdir, tmp_path / "root", "--json")
    assert rc == 0
    report = {r["name"]: r for r in json.loads(out)}
    assert report["tb"]["status"] == "empty" and any("hparams experiment" in s for s in report["tb"]["skipped"])
    rows = _rows(tmp_path / "root", "SELECT r.name, (r.config->>'lr')::DOUBLE, m.value FROM runs r JOIN metrics m "
                                    "USING (run_id) ORDER BY r.name")
    assert rows == [("run-0", 0.1, 0.5), ("run-1", 0.01, 0.75)]


# -- runlake's own export, trees, empty and damaged folders ----------------------------------

def test_exported_multi_rank_run_imports_as_one_run_with_its_ranks(tmp_path, capsys, monkeypatch):
    """`runlake export tensorboard` of a 2-rank run writes rank1/; importing it back gives one
    run with both ranks' values (float32) and world_size 2, not a run named '.../rank1'."""
    import runlake

    root = tmp_path / "root"
    monkeypatch.setenv("RUNLAKE_RUN_ID", "ddp-run-1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        run = runlake.init("p", "ddp", root=root, config={"lr": 0.1}, console=False, system_interval=0,
                           capture_logging=False, online_checks=False)
        for s in range(5):
            run.log({"loss": 1.0 / (s + 1) + rank}, step=s)
        run.finish()
    main(["ingest", "--root", str(root)])
    out = tmp_path / "exported"
    assert main(["export", "tensorboard", "ddp", "-o", str(out), "--root", str(root)]) == 0
    assert (out / "ddp" / "rank1").is_dir()
    capsys.readouterr()
    assert main(["import", "tensorboard", str(out), "--project", "back", "--root", str(root)]) == 0
    rows = _rows(root, "SELECT m.rank, m.step, m.value FROM metrics m JOIN runs r USING (run_id) "
                       "WHERE r.project = 'back' AND m.key = 'loss' ORDER BY m.rank, m.step")
    assert rows == [(rank, s, f32(1.0 / (s + 1) + rank)) for rank in (0, 1) for s in range(5)]
    assert _rows(root, "SELECT name, world_size, config->>'lr' FROM runs WHERE project = 'back'") == [("ddp", 2, "0.1")]
    assert _rows(root, "SELECT w.rank, w.status FROM writers w JOIN runs r USING (run_id) "
                       "WHERE r.project = 'back' ORDER BY w.rank") == [(0, "finished"), (1, "finished")]


def test_nested_tree_with_empty_folders(tmp_path, capsys):
    """A tree of runs at several depths, an empty folder, a zero-byte event file and a folder
    with only the file header: every run imported by its path, the empty ones reported."""
    logdir = tmp_path / "logs"
    expected = {}
    for i, name in enumerate(("a/run1", "a/run2", "b/deep/run3")):
        w = SummaryWriter(str(logdir / name))
        for s in range(3):
            w.add_scalar("loss", i + s / 10, s)
            expected[(name, 0, "loss", s)] = f32(i + s / 10)
        w.close()
    (logdir / "empty").mkdir()
    (logdir / "zero").mkdir()
    (logdir / "zero" / "events.out.tfevents.0.host.1").write_bytes(b"")
    SummaryWriter(str(logdir / "header_only")).close()
    rc, out, err = _import(capsys, logdir, tmp_path / "root", "--json")
    assert rc == 0
    status = {r["name"]: r["status"] for r in json.loads(out)}
    assert status == {"a/run1": "imported", "a/run2": "imported", "b/deep/run3": "imported",
                      "zero": "empty", "header_only": "empty"}
    assert _metrics(tmp_path / "root") == expected


def test_torn_and_corrupt_event_files_lose_only_the_damaged_records(tmp_path, capsys):
    """A torn tail, a record with a bad checksum, a bad header and a garbage file: each named
    with its file in the report (and the run's logs); every intact record is imported."""
    logdir = tmp_path / "tb"
    for name in ("torn", "badcrc", "badheader", "good"):
        w = SummaryWriter(str(logdir / name))
        for s in range(20):
            w.add_scalar("x", float(s), s)
        w.close()
    torn = _event_file(logdir / "torn")
    torn.write_bytes(torn.read_bytes()[:-7])
    bad = _event_file(logdir / "badcrc")
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside one record's payload or checksum
    bad.write_bytes(bytes(raw))
    hdr = _event_file(logdir / "badheader")
    raw = bytearray(hdr.read_bytes())
    first = 12 + int.from_bytes(raw[:8], "little") + 4  # the file_version record
    raw[first] ^= 0xFF  # the length of the step-0 record
    hdr.write_bytes(bytes(raw))
    (logdir / "garbage").mkdir()
    (logdir / "garbage" / "events.out.tfevents.1.h.2").write_bytes(b"not a tfrecord file at all" * 10)
    rc, out, err = _import(capsys, logdir, tmp_path / "root")
    assert rc == 0
    steps = {}
    for (name, _r, _k, s), v in _metrics(tmp_path / "root").items():
        assert v == s
        steps.setdefault(name, set()).add(s)
    assert steps["good"] == set(range(20))
    assert steps["torn"] == set(range(19))  # the last record was cut
    assert len(steps["badcrc"]) == 19  # exactly the damaged record is lost
    assert steps["badheader"] == set(range(1, 20))  # resynchronised on the next record
    assert "garbage" not in steps
    assert f"{torn}: torn record" in err and f"{bad}: corrupt record" in err
    assert f"{hdr}: corrupt record header" in err and "garbage" in err
    logged = [r[0] for r in _rows(tmp_path / "root", "SELECT message FROM logs WHERE level = 'WARNING'")]
    assert any(str(torn) in msg for msg in logged)


def test_reimport_of_merged_and_multi_rank_runs_adds_nothing(tmp_path, capsys):
    """Importing the same tree twice: the second pass reports 'exists' and no row changes."""
    _write_everything(tmp_path / "tb")
    root = tmp_path / "root"
    _import(capsys, tmp_path / "tb", root)
    counts = ("SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM samples), (SELECT count(*) FROM logs), "
              "(SELECT count(*) FROM runs), (SELECT count(*) FROM histograms), (SELECT count(*) FROM media)")
    before = _rows(root, counts)
    rc, out, err = _import(capsys, tmp_path / "tb", root, "--json")
    assert rc == 0 and [r["status"] for r in json.loads(out)] == ["exists"]
    assert _rows(root, counts) == before and before[0][4:] == (2, 3)


def test_cli_subprocess_imports_then_ingest_changes_nothing(tmp_path):
    """The real command line: `runlake import tensorboard DIR` prints the per-run table,
    exits 0; a following `runlake ingest` finds nothing new."""
    w = SummaryWriter(str(tmp_path / "tb" / "plain"))
    for s in range(5):
        w.add_scalar("loss", float(s), s)
    w.add_histogram("w", np.arange(4.0), 0)
    w.close()
    shutil.copytree(tmp_path / "tb", tmp_path / "tb2")
    root = tmp_path / "root"
    cli = [sys.executable, "-m", "runlake.cli"]
    done = subprocess.run([*cli, "import", "tensorboard", str(tmp_path / "tb"), "--root", str(root)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plain" in done.stdout and "scalars: 5, histograms: 1" in done.stdout
    again = subprocess.run([*cli, "ingest", "--root", str(root)], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _rows(root, "SELECT (SELECT count(*) FROM metrics), (SELECT count(*) FROM histograms)") == [(5, 1)]


def test_special_files_named_like_event_files_are_reported_not_read(tmp_path, capsys):
    """A FIFO and a symlink to /dev/zero named events.out.tfevents.*: reported as not regular
    files (no hang, no MemoryError), the run's real event file imported."""
    import os

    w = SummaryWriter(str(tmp_path / "tb" / "run"))
    w.add_scalar("loss", 0.5, 1)
    w.close()
    os.mkfifo(tmp_path / "tb" / "run" / "events.out.tfevents.2.fifo.1")
    (tmp_path / "tb" / "run" / "events.out.tfevents.3.zero.1").symlink_to("/dev/zero")
    rc, out, err = _import(capsys, tmp_path / "tb", tmp_path / "root")
    assert rc == 0
    assert _rows(tmp_path / "root", "SELECT key, step, value FROM metrics") == [("loss", 1, 0.5)]
    assert err.count("not a regular file") == 2


def test_impossible_wall_times_keep_their_points(tmp_path, capsys):
    """Events whose wall time is NaN or far beyond the store's range keep their values
    (stored at the time of the event before them) and the report says so."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    ev = EventFileWriter(str(tmp_path / "tb"))
    for step, wall in ((0, 1000.0), (1, math.nan), (2, 1e300), (3, 1003.0)):
        ev.add_event(_tb_event(step, summary_pb2.Summary.Value(tag="x", simple_value=step), wall=wall - step))
    ev.close()
    rc, out, err = _import(capsys, tmp_path / "tb", tmp_path / "root")
    assert rc == 0 and "2 events with an impossible wall time" in err
    assert _rows(tmp_path / "root", "SELECT step, value, epoch(ts) FROM metrics ORDER BY step") == [
        (0, 0.0, 1000.0), (1, 1.0, 1000.0), (2, 2.0, 1000.0), (3, 3.0, 1003.0)]


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_a_logdir_that_is_not_one_fails_in_one_line(tmp_path, capsys, make):
    """A missing path, a file, or a folder without event files: exit 2, one line naming it."""
    target = tmp_path / "tb"
    if make == "file":
        target.write_bytes(b"")
    elif make == "empty":
        (target / "sub" / "deeper").mkdir(parents=True)
    rc, out, err = _import(capsys, target, tmp_path / "root")
    assert rc == 2 and str(target) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
