"""TensorBoard in and out: import SummaryWriter files exactly; export files TensorBoard reads."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from runlake.cli import main  # noqa: E402


def _accumulate(path):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _write_tb(logdir, rng):
    """Two TensorBoard runs written by torch's SummaryWriter; returns the values written."""
    written = {}
    for run in ("exp/a", "exp/b"):
        w = SummaryWriter(str(logdir / run))
        for step in range(0, 40, 3):
            for tag in ("train/loss", "lr"):
                value = float(rng.normal())
                w.add_scalar(tag, value, step)
                written[(run, tag, step)] = value
        w.add_scalar("edge/inf", math.inf, 100)
        w.add_scalar("edge/nan", math.nan, 100)
        w.add_text("notes", f"run {run} **ok**", 5)
        w.add_histogram("weights", np.arange(10), 0)
        w.add_hparams({"lr": 0.01, "opt": "adam", "layers": 3}, {"hp/acc": 0.9}, run_name=".")
        w.close()
    return written


def test_import_keeps_exact_float32_values(tmp_path, store_rows):
    """Every scalar arrives at its step with TensorBoard's float32 value; hparams, text and
    histograms too."""
    rng = np.random.default_rng(0)
    logdir = tmp_path / "tb"
    written = _write_tb(logdir, rng)
    root = tmp_path / "root"
    assert main(["import", "tensorboard", str(logdir), "--project", "old", "--root", str(root)]) == 0
    rows = store_rows(root, "SELECT r.name, m.key, m.step, m.value FROM metrics m JOIN runs r USING (run_id)")
    got = {(n, k, s): v for n, k, s, v in rows}
    for (run, tag, step), value in written.items():
        assert got[(run, tag, step)] == float(np.float32(value))  # exact at float32
    assert math.isinf(got[("exp/a", "edge/inf", 100)]) and math.isnan(got[("exp/b", "edge/nan", 100)])
    assert len(rows) == len(written) + 2 * 3  # + inf, nan, hp/acc per run
    hist = store_rows(root, "SELECT r.name, h.key, h.step, h.num, h.sum FROM histograms h JOIN runs r USING (run_id) ORDER BY 1")
    assert hist == [("exp/a", "weights", 0, 10, 45), ("exp/b", "weights", 0, 10, 45)]
    runs = store_rows(root, "SELECT name, project, status, config->>'opt', (config->>'layers')::INT, tags FROM runs ORDER BY name")
    assert runs == [("exp/a", "old", "finished", "adam", 3, ["tensorboard"]),
                    ("exp/b", "old", "finished", "adam", 3, ["tensorboard"])]
    logs = store_rows(root, "SELECT logger, message, step FROM logs ORDER BY message")
    assert logs == [("notes", "run exp/a **ok**", 5), ("notes", "run exp/b **ok**", 5)]


def test_reimport_is_idempotent(tmp_path, store_rows, capsys):
    """Importing the same directory twice adds nothing and reports the run as existing."""
    logdir = tmp_path / "tb"
    _write_tb(logdir, np.random.default_rng(1))
    root = tmp_path / "root"
    main(["import", "tensorboard", str(logdir), "--root", str(root)])
    before = store_rows(root, "SELECT count(*) FROM metrics")
    capsys.readouterr()
    assert main(["import", "tensorboard", str(logdir), "--root", str(root), "--json"]) == 0
    assert '"status": "exists"' in capsys.readouterr().out
    assert store_rows(root, "SELECT count(*) FROM metrics") == before
    assert store_rows(root, "SELECT count(*) FROM runs") == [(2,)]


def test_import_of_a_dir_without_event_files_fails_clearly(tmp_path, capsys):
    """No event files: exit code 2 and a one-line error naming the directory."""
    (tmp_path / "empty").mkdir()
    assert main(["import", "tensorboard", str(tmp_path / "empty"), "--root", str(tmp_path / "r")]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err


def _log_run(root, name, values, rank_env=None):
    import runlake

    run = runlake.init("p", name, root=root, config={"lr": 0.1, "opt": {"name": "sgd"}},
                       console=False, system_interval=0, online_checks=False)
    for step, vals in values:
        run.log(vals, step=step)
    run.finish()
    return run.id


def test_export_is_read_back_by_tensorboard_with_the_same_values(tmp_path, store_rows):
    """EventAccumulator reads every exported scalar at its step with the stored value (float32)."""
    root = tmp_path / "root"
    rng = np.random.default_rng(2)
    values = [(s, {"loss": float(rng.normal()), "acc": float(rng.uniform())}) for s in range(50)]
    values.append((50, {"loss": math.nan, "acc": math.inf}))
    run_id = _log_run(root, "exported", values)
    store_rows(root, "SELECT 1")  # ingest
    out = tmp_path / "tbout"
    assert main(["export", "tensorboard", "exported", "-o", str(out), "--root", str(root)]) == 0
    acc = _accumulate(out / "exported")
    for key in ("loss", "acc"):
        points = [(e.step, e.value) for e in acc.Scalars(key)]
        expected = [(s, float(np.float32(v[key]))) for s, v in values]
        assert len(points) == len(expected)
        for (s, v), (es, ev) in zip(points, expected):
            assert s == es and (v == ev or (math.isnan(v) and math.isnan(ev)))
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    assert run_id


def test_export_then_import_round_trips(tmp_path, store_rows):
    """A run exported to TensorBoard and imported back has the same points (float32)."""
    root = tmp_path / "root"
    values = [(s, {"loss": 1.0 / (s + 1)}) for s in range(20)]
    _log_run(root, "rt", values)
    store_rows(root, "SELECT 1")
    main(["export", "tensorboard", "rt", "-o", str(tmp_path / "tb"), "--root", str(root)])
    main(["import", "tensorboard", str(tmp_path / "tb"), "--project", "back", "--root", str(root)])
    rows = store_rows(root, "SELECT m.step, m.value FROM metrics m JOIN runs r USING (run_id) "
                            "WHERE r.project = 'back' AND m.key = 'loss' ORDER BY step")
    assert rows == [(s, float(np.float32(v["loss"]))) for s, v in values]
    [(cfg,)] = store_rows(root, "SELECT config FROM runs WHERE project = 'back'")
    assert '"opt.name": "sgd"' in cfg  # nested config flattened into hparams


def test_live_mirror_writes_readable_event_files(tmp_path):
    """TensorBoardMirror turns metrics/system events into scalars TensorBoard reads."""
    import runlake
    from runlake.emitter.integrations.tensorboard import TensorBoardMirror
    from runlake.emitter.testing import capture

    with capture() as events:
        run = runlake.init("p", "live", root=tmp_path, console=False, system_interval=0)
        for s in range(5):
            run.log({"loss": 0.5 * s}, step=s)
        run.finish()
    mirror = TensorBoardMirror(tmp_path / "tb", "live")
    assert mirror.write_events(events) == 5
    mirror.close()
    acc = _accumulate(tmp_path / "tb" / "live")
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(s, 0.5 * s) for s in range(5)]


def test_init_tensorboard_mirrors_live_while_segments_stay_complete(tmp_path, store_rows):
    """init(tensorboard=True): TensorBoard sees the run's scalars during and after the run,
    and the store still holds every value."""
    import runlake
    from runlake.ingest import ingest

    root = tmp_path / "root"
    run = runlake.init("p", "mirror/me", root=root, console=False, system_interval=0,
                       capture_logging=False, tensorboard=True, flush_interval=0.05)
    for s in range(20):
        run.log({"loss": 1.0 / (s + 1), "lr": 0.1}, step=s)
    run.flush()
    (logdir,) = (root / "tensorboard" / "p").iterdir()
    assert logdir.name == f"mirror_me-{run.id}"
    assert len(_accumulate(logdir).Scalars("loss")) == 20  # readable while the run is live
    run.log({"loss": math.nan}, step=20)
    run.finish()
    acc = _accumulate(logdir)
    got = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert got[:20] == [(s, float(np.float32(1.0 / (s + 1)))) for s in range(20)]
    assert got[20][0] == 20 and math.isnan(got[20][1])
    ingest(root=root)
    assert store_rows(root, "SELECT count(*) FROM metrics")[0][0] == 41


def test_init_tensorboard_to_an_unwritable_dir_keeps_training_and_segments(tmp_path, store_rows):
    """A mirror that cannot write warns once and counts; the segments lose nothing."""
    import runlake
    from runlake.ingest import ingest

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    root = tmp_path / "root"
    with pytest.warns(runlake.RunlakeWarning,
                      match="mirror"):
        with runlake.init("p", "m", root=root, console=False, system_interval=0,
                          capture_logging=False, tensorboard=blocker / "tb") as run:
            for s in range(10):
                run.log({"loss": float(s)}, step=s)
    ingest(root=root)
    assert store_rows(root, "SELECT count(*) FROM metrics")[0][0] == 10
