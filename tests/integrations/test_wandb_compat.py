"""runlake.wandb in-process: W&B's step, config, summary and define_metric rules, its data
types, init's argument mapping and refusals, recorded as runlake events (captured in memory;
blobs and resumed runs on disk in tmp_path). The scripts run as subprocesses, and the
comparison with the real wandb, are in test_wandb_scripts.py."""

from __future__ import annotations

import math
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import runlake
import runlake.wandb as wandb
from runlake.emitter.testing import capture, of_kind
from runlake.schemas.blobs import blob_path
from runlake.schemas.errors import RunlakeWarning, RunNotFoundError

QUIET = {"console": False, "capture_logging": False, "system_interval": 0,
         "online_checks": False}


@pytest.fixture
def events(tmp_path, monkeypatch):
    """Events of the runs started in the test (memory sink; blobs under tmp_path/root)."""
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME",
                "WANDB_DISABLED", "RUNLAKE_DIR"):
        monkeypatch.delenv(var, raising=False)
    with capture() as got:
        yield got
    wandb.teardown()


def start(tmp_path, **kw):
    return wandb.init(project="p", root=tmp_path / "root", runlake=QUIET, **kw)


def rows(events):
    """{step: values} of the metrics events (one per committed W&B row)."""
    out = {}
    for e in of_kind(events, "metrics"):
        assert e.step not in out, f"two rows at step {e.step}"
        out[e.step] = dict(e.values)
    return out


def test_step_rules_are_wandbs(tmp_path, events):
    """commit=False accumulates, step= holds the row open, a lower step is dropped with W&B's
    warning, nested dicts flatten with '.' (values checked against wandb 0.31 by hand)."""
    run = start(tmp_path)
    wandb.log({"a": 1, "n": {"x": 2, "y": {"z": 3}}})
    wandb.log({"b": 2}, commit=False)
    wandb.log({"c": 3})
    wandb.log({"d": 4}, step=10)
    with pytest.warns(RunlakeWarning, match="less than the current step 10"):
        wandb.log({"e": 5}, step=5)
    wandb.log({"f": 6}, step=10)
    wandb.log({"g": 7})
    wandb.log({"h": 8}, step=12, commit=True)
    wandb.log({"i": 9}, step=20)
    assert run.step == 20
    wandb.finish()
    assert rows(events) == {0: {"a": 1, "n.x": 2, "n.y.z": 3}, 1: {"b": 2, "c": 3},
                            10: {"d": 4, "f": 6, "g": 7}, 12: {"h": 8}, 20: {"i": 9}}
    assert wandb.run is None


def test_fast_paths_give_the_same_rows_as_the_slow_path(tmp_path, events):
    """Repeated plain rows (the closure's fast paths, with and without step=) record what
    the general path records; the last explicit-step row is committed by finish()."""
    run = start(tmp_path)
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1), "acc": i * 0.1})
    for s in range(10, 15):
        run.log({"loss": float(s), "acc": 0.5}, step=s)
    run.log({"loss": 0.25})
    run.finish()
    got = rows(events)
    assert [got[i]["loss"] for i in range(5)] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert [got[s] for s in range(10, 14)] == [{"loss": float(s), "acc": 0.5}
                                               for s in range(10, 14)]
    assert got[14] == {"loss": 0.25, "acc": 0.5}  # log without step added to row 14, committed
    assert of_kind(events, "run_end")[0].summary == {"loss": 0.25, "acc": 0.5}


def test_define_metric_summaries_globs_and_step_sync(tmp_path, events):
    """summary ops (min/max/mean/first/last/none, best+goal) by name or 'prefix*' glob; the
    step metric's last value joins rows that lack it; definitions are update events."""
    run = start(tmp_path)
    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch", summary="min,max,mean")
    wandb.define_metric("gone", summary="none")
    wandb.define_metric("first", summary="first")
    wandb.define_metric("acc", summary="best", goal="maximize")
    wandb.log({"epoch": 0, "train/loss": 1.0})
    wandb.log({"val/acc": 0.5, "gone": 1, "first": 10, "acc": 0.3})
    wandb.log({"val/acc": 0.7, "gone": 2, "first": 11, "epoch": 1, "acc": 0.9})
    wandb.log({"acc": 0.1})
    with pytest.raises(wandb.Error, match="trailing"):
        wandb.define_metric("a*b")
    with pytest.raises(wandb.Error, match="unknown summary operation 'median'"):
        wandb.define_metric("x", summary="median")
    run.finish()
    got = rows(events)
    assert got[1] == {"val/acc": 0.5, "gone": 1, "first": 10, "acc": 0.3, "epoch": 0}
    assert run.summary["val/acc"] == {"min": 0.5, "max": 0.7, "mean": pytest.approx(0.6)}
    summary = of_kind(events, "run_end")[0].summary  # stored flat, as W&B displays it
    assert (summary["val/acc.min"], summary["val/acc.max"]) == (0.5, 0.7)
    assert summary["val/acc.mean"] == pytest.approx(0.6)
    assert "gone" not in summary and summary["first.first"] == 10
    assert summary["acc.max"] == 0.9 and "acc" not in summary and summary["train/loss"] == 1.0
    defs = {k: v for u in of_kind(events, "update") for k, v in u.metrics.items()}
    assert defs["val/*"] == {"step_metric": "epoch", "step_sync": True,
                             "summary": "min,max,mean"}


def test_explicit_summary_is_batched_and_wins_until_logged_again(tmp_path, events):
    """summary[k]=v / .k=v / update(): one update event at the next committed row; a later
    log of the key replaces it (W&B's rule); del leaves the key null."""
    run = start(tmp_path)
    run.log({"loss": 2.0})
    run.summary["best"] = 1.5
    wandb.summary.note = "text"
    run.summary.update({"loss": 0.1, "gone": 1})
    assert run.summary["loss"] == 0.1 and dict(run.summary)["best"] == 1.5
    assert not [u for u in of_kind(events, "update") if u.summary]
    run.log({"loss": 3.0})
    del run.summary["gone"]
    run.finish()
    updates = [u.summary for u in of_kind(events, "update") if u.summary]
    assert updates == [{"best": 1.5, "note": "text", "loss": 0.1, "gone": 1}, {"gone": None}]
    assert of_kind(events, "run_end")[0].summary == {"loss": 3.0, "best": 1.5, "note": "text"}


def test_config_access_and_changes_after_start(tmp_path, events):
    """Attribute/item/get/keys access; update/setdefaults/attribute set after start are
    update events; changing a value needs allow_val_change (W&B's ConfigError rule)."""
    run = start(tmp_path, config={"lr": 0.1, "model": {"width": 8}}, entity="team",
                job_type="train", config_exclude_keys=["secret"])
    assert wandb.config is run.config
    assert (run.config.lr, run.config["model"]["width"], run.config.get("x", 3)) == (0.1, 8, 3)
    run.config.bs = 32
    run.config.update({"lr": 0.1, "opt": "sgd"})  # same value again: not a change
    run.config.setdefaults({"opt": "adam", "seed": 0})
    with pytest.raises(wandb.Error, match="change value of key 'lr'"):
        run.config["lr"] = 0.2
    run.config.update({"lr": 0.2}, allow_val_change=True)
    assert dict(run.config.items()) == {"lr": 0.2, "model": {"width": 8}, "bs": 32,
                                        "opt": "sgd", "seed": 0}
    run.finish()
    start_event = of_kind(events, "run_start")[0]
    assert start_event.config["_wandb"] == {"entity": "team", "job_type": "train",
                                            "mode": "online"}
    changes = [u.config for u in of_kind(events, "update") if u.config]
    assert changes == [{"bs": 32}, {"opt": "sgd"}, {"seed": 0}, {"lr": 0.2}]


def test_before_init_and_after_finish_the_module_says_so(tmp_path, events):
    """wandb.config/summary/log before init() raise W&B's error; wandb.run is None."""
    assert wandb.run is None
    with pytest.raises(wandb.Error, match="wandb.init\\(\\) before wandb.config"):
        wandb.config.lr
    with pytest.raises(wandb.Error, match="before wandb.log"):
        wandb.log({"a": 1.0})
    run = start(tmp_path)
    run.finish()
    with pytest.raises(wandb.Error, match="is finished"):
        run.log({"a": 1.0})
    wandb.finish()  # no live run: no-op


def test_values_that_are_not_numbers(tmp_path, events):
    """Text and lists go to the summary with one warning; numpy/torch scalars are metrics;
    arrays of more than 32 values become 32-bucket histograms (W&B's rule)."""
    torch = pytest.importorskip("torch")
    run = start(tmp_path)
    with pytest.warns(RunlakeWarning, match="'phase' is a str"):
        run.log({"phase": "train", "np": np.float32(2.5), "t": torch.tensor(3.0),
                 "arr": np.arange(100.0), "small": np.arange(3.0)})
    run.finish()
    assert rows(events) == {0: {"np": 2.5, "t": 3.0}}
    (hist,) = of_kind(events, "histogram")
    assert (hist.key, len(hist.counts), sum(hist.counts), hist.step) == ("arr", 32, 100, 0)
    summary = of_kind(events, "run_end")[0].summary
    assert summary["phase"] == "train" and summary["small"] == [0.0, 1.0, 2.0]
    assert "arr" not in summary and run.summary["arr"]["_type"] == "histogram"


def test_data_types_become_histogram_and_media_events(tmp_path, events):
    """Histogram (sequence and np_histogram), Image, Audio, Table (add_data), Html: events at
    W&B's current step with their blobs on disk; types without a kind refuse clearly."""
    run = start(tmp_path)
    run.log({"x": 1.0})
    table = wandb.Table(columns=["i", "name"])
    table.add_data(1, "a")
    table.add_data(2, "b")
    counts, edges = np.histogram(np.arange(10.0), bins=5)
    run.log({"h": wandb.Histogram(np.arange(10.0), num_bins=8),
             "h2": wandb.Histogram(np_histogram=(counts, edges)),
             "img": wandb.Image(np.zeros((4, 6, 3), dtype=np.uint8), caption="zeros"),
             "gallery": [wandb.Image(np.ones((2, 2))), wandb.Image(np.zeros((2, 2)))],
             "clip": wandb.Audio(np.zeros(800), sample_rate=8000, caption="silence"),
             "tbl": table, "page": wandb.Html("<b>hi</b>")})
    run.finish()
    hists = {h.key: h for h in of_kind(events, "histogram")}
    assert len(hists["h"].counts) == 8 and hists["h"].max == 9.0
    assert hists["h2"].counts == counts.tolist() and hists["h2"].edges == edges.tolist()
    media = [(m.key, m.media, m.mime, m.caption, m.step) for m in of_kind(events, "media")]
    assert media == [("img", "image", "image/png", "zeros", 1),
                     ("gallery", "image", "image/png", None, 1),
                     ("gallery", "image", "image/png", None, 1),
                     ("clip", "audio", "audio/wav", "silence", 1),
                     ("tbl", "table", "application/json", None, 1),
                     ("page", "file", "text/html", None, 1)]
    for m in of_kind(events, "media"):
        assert blob_path(run.runlake.dir, m.sha256).is_file()
    tbl = next(m for m in of_kind(events, "media") if m.key == "tbl")
    assert b'"data":[[1,"a"],[2,"b"]]' in blob_path(run.runlake.dir, tbl.sha256).read_bytes()


@pytest.mark.parametrize("make, message", [
    (lambda: wandb.Object3D("x.obj"), "log the file"),
    (lambda: wandb.Artifact("model", type="model"), "log_checkpoint"),
    (lambda: wandb.Video(np.zeros((2, 3, 4, 4))), "imageio or moviepy"),
    (lambda: wandb.Image(np.zeros((2, 2)), boxes={}), "no runlake equivalent"),
    (lambda: wandb.log_artifact("x"), "log_checkpoint"),
    (lambda: wandb.plot.line, "wandb.Table"),
    (lambda: wandb.sweep({}), "does not schedule sweeps"),
])
def test_what_has_no_kind_is_refused_naming_the_alternative(make, message):
    """W&B types and calls with no runlake meaning raise wandb.Error (a missing name an
    AttributeError) saying what to use."""
    with pytest.raises((wandb.Error, AttributeError), match=message):
        make()


@pytest.mark.parametrize("kw, message", [
    ({"sync_tensorboard": True}, "runlake import tensorboard"),
    ({"resume_from": "abc?_step=10"}, "no runlake equivalent"),
    ({"resume": "must"}, "needs the run's id"),
    ({"mode": "bogus"}, "mode must be one of"),
    ({"reinit": "sometimes"}, "reinit must be one of"),
])
def test_init_refuses_what_would_change_results(tmp_path, events, kw, message):
    """init arguments with no local meaning that matter are errors naming the alternative."""
    with pytest.raises(wandb.Error, match=message):
        start(tmp_path, **kw)
    assert wandb.run is None


def test_disabled_mode_keeps_the_api_and_writes_nothing(tmp_path, monkeypatch):
    """mode='disabled' (or WANDB_MODE=disabled): the same calls work, no file is written."""
    monkeypatch.delenv("RUNLAKE_DIR", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = wandb.init(project="p", root=tmp_path / "root", config={"lr": 1})
    run.config.bs = 4
    wandb.define_metric("loss", summary="min")
    run.log({"loss": 2.0})
    run.log({"loss": 1.0, "img": wandb.Image(np.zeros((2, 2)))})
    assert run.summary["loss"] == {"min": 1.0} and run.step == 2 and run.disabled
    wandb.finish()
    assert not (tmp_path / "root").exists()


def test_resume_allow_must_never(tmp_path, monkeypatch):
    """allow: start, then resume with steps continuing; must: the run must exist; never: an
    existing id is refused. On disk, as a resumed training job would."""
    for var in ("WANDB_MODE", "RUNLAKE_DIR", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "root"
    with pytest.raises(RunNotFoundError, match="cannot resume run 'r1'"):
        wandb.init(project="p", id="r1", resume="must", root=root, runlake=QUIET)
    first = wandb.init(project="p", id="r1", resume="allow", root=root, runlake=QUIET)
    first.log({"loss": 1.0})
    first.log({"loss": 0.5})
    first.finish()
    assert not first.resumed
    again = wandb.init(project="p", id="r1", resume="must", root=root, runlake=QUIET)
    assert again.resumed and again.step == 2
    again.log({"loss": 0.25})
    again.finish()
    with pytest.raises(wandb.Error, match="resume='never' but run 'r1' already exists"):
        wandb.init(project="p", id="r1", resume="never", root=root, runlake=QUIET)
    from runlake.ingest import ingest
    from runlake.store import read_store

    ingest(root=root, db=root / "runlake.duckdb")
    with read_store(root / "runlake.duckdb") as con:
        got = con.execute("SELECT step, value FROM metrics WHERE run_id = 'r1' ORDER BY step"
                          ).fetchall()
    assert got == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_reinit_returns_or_finishes_the_live_run(tmp_path, events):
    """A second init returns the live run (W&B's script default); reinit=True finishes it
    first; reinit='create_new' keeps both live."""
    first = start(tmp_path)
    assert start(tmp_path) is first
    second = start(tmp_path, reinit=True)
    assert second is not first and wandb.run is second
    third = start(tmp_path, reinit="create_new")
    assert wandb.run is third
    third.finish()
    assert wandb.run is second
    ends = of_kind(events, "run_end")
    assert [e.run_id for e in ends] == [first.id, third.id]


def test_finish_exit_code_and_context_manager(tmp_path, events):
    """finish(exit_code!=0) -> failed; an exception in `with wandb.init()` -> failed with the
    traceback, the pending row committed first; alert levels map to severities."""
    run = start(tmp_path)
    wandb.alert(title="slow", text="step time up", level=wandb.AlertLevel.WARN)
    run.finish(exit_code=2)
    with pytest.raises(ZeroDivisionError):
        with start(tmp_path) as run2:
            run2.log({"x": 1.0}, step=3)
            1 / 0
    first, second = of_kind(events, "run_end")
    assert (first.status, first.exit_reason) == ("failed", "exit code 2")
    assert second.status == "failed" and "ZeroDivisionError" in second.traceback
    assert [(e.step, dict(e.values)) for e in of_kind(events, "metrics")] == [(3, {"x": 1.0})]
    (alert,) = of_kind(events, "alert")
    assert (alert.message, alert.severity) == ("slow: step time up", "warning")


def test_dir_maps_to_a_root_unless_runlake_dir_is_set(tmp_path, monkeypatch):
    """dir= (W&B's <dir>/wandb) -> <dir>/runlake-data; $RUNLAKE_DIR wins."""
    monkeypatch.delenv("RUNLAKE_DIR", raising=False)
    run = wandb.init(project="p", dir=tmp_path / "d", runlake=QUIET)
    assert run.runlake.root == (tmp_path / "d" / "runlake-data").absolute()
    run.finish()
    monkeypatch.setenv("RUNLAKE_DIR", str(tmp_path / "env"))
    run = wandb.init(project="p", dir=tmp_path / "d", runlake=QUIET)
    assert run.runlake.root == (tmp_path / "env").absolute()
    run.finish()


def test_all_is_sorted_complete_and_import_is_light():
    """__all__ lists exactly the public names; importing runlake.wandb loads neither the
    real wandb nor numpy/torch."""
    exported = list(wandb.__all__)
    assert exported == sorted(set(exported))
    public = sorted(n for n, v in vars(wandb).items() if not n.startswith("_")
                    and not isinstance(v, types.ModuleType) and n != "annotations")
    assert public == exported
    code = ("import sys, runlake.wandb; print(sorted(m for m in ('wandb', 'numpy', 'torch', "
            "'duckdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_config_from_yaml_and_values_that_are_not_json(tmp_path, events):
    """config='x.yaml' loads the file (W&B's form); a value JSON cannot hold is stored as its
    str() with one warning, as W&B stores it; a path that is not YAML is an error."""
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.1\nlayers: [64, 32]\n")
    run = start(tmp_path, config=str(path))
    with pytest.warns(RunlakeWarning, match="not JSON-able"):
        run.config.update({"device": object()})
    assert run.config.layers == [64, 32] and run.config.device.startswith("<object")
    with pytest.raises(wandb.Error, match="path of a .yaml file"):
        start(tmp_path, config="params.json", reinit="create_new")
    run.finish()
    assert of_kind(events, "run_start")[0].config["lr"] == 0.1
