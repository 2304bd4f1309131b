"""W&B-style training scripts run unchanged but for their import line, as subprocesses:
W&B's own quickstart, a plain PyTorch loop (config, define_metric, commit=False, summary,
Image/Histogram/Table, watch, alert) and Lightning's WandbLogger; asserted on the store
after ingest. The differential test runs the same scripts with the real wandb (offline,
in tmp_path, never network), imports its .wandb files with `runlake import wandb` (W&B's own
record definitions) and compares history and summary with the runlake.wandb runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runlake.ingest import ingest
from runlake.store import read_store

SCRIPTS = Path(__file__).parent / "wandb_scripts"
SURFACE = "import runlake.wandb as wandb"
INSTALLED = "import runlake.wandb as wandb; wandb.install()"
OURS_ONLY = ("grad/", "param/", "update/", "sys/")  # watch() statistics, system samples


def run_script(name: str, tmp: Path, import_line: str | None, *args: str,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Copy ``wandb_scripts/<name>`` into ``tmp`` with its ``import wandb`` line replaced
    (None: the real wandb) and run it there."""
    text = (SCRIPTS / name).read_text()
    assert text.count("\nimport wandb\n") == 1, name
    if import_line is not None:
        text = text.replace("\nimport wandb\n", f"\n{import_line}\n")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_text(text)
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("WANDB_", "RUNLAKE_"))}
    full.update(PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable, name, *args], cwd=tmp, capture_output=True,
                          text=True, timeout=240, env=full)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def query(root: Path, sql: str, params=()) -> list[tuple]:
    db = root / "runlake.duckdb"
    if not db.exists():
        ingest(root=root, db=db)
    with read_store(db) as con:
        return con.execute(sql, list(params)).fetchall()


def real_wandb_env(tmp: Path) -> dict:
    return {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp), "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(tmp / "config"), "WANDB_CACHE_DIR": str(tmp / "cache"),
            "WANDB_DATA_DIR": str(tmp / "data"), "WANDB_DISABLE_GIT": "true"}


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """The quickstart and the torch loop run once with runlake.wandb; their root."""
    tmp = tmp_path_factory.mktemp("ours")
    root = tmp / "root"
    for name in ("quickstart.py", "torch_loop.py"):
        run_script(name, tmp / name[:-3], SURFACE, env={"RUNLAKE_DIR": str(root)})
    return root


def history(root: Path, project: str) -> dict[tuple[int, str], float]:
    rows = query(root, "SELECT m.step, m.key, m.value FROM metrics m JOIN runs r USING "
                 "(run_id) WHERE r.project = ?", [project])
    return {(s, k): v for s, k, v in rows if not k.startswith(OURS_ONLY)}


@pytest.mark.slow
def test_quickstart_runs_unchanged(ours):
    """W&B's quickstart: one finished run, its config, 8 rows of acc/loss at steps 0-7, the
    summary holding the last values."""
    ((status, config, summary),) = query(
        ours, "SELECT status, config, summary FROM runs WHERE project = 'my-awesome-project'")
    config, summary = json.loads(config), json.loads(summary)
    assert status == "finished"
    assert {k: config[k] for k in ("learning_rate", "architecture", "epochs")} == {
        "learning_rate": 0.02, "architecture": "CNN", "epochs": 10}
    got = history(ours, "my-awesome-project")
    assert sorted({s for s, _ in got}) == list(range(8))
    assert summary == {"acc": got[(7, "acc")], "loss": got[(7, "loss")]}


@pytest.mark.slow
def test_torch_loop_records_every_idiom(ours):
    """commit=False rows, the step-synced epoch on val rows, the late explicit step, the
    dropped lower step, summaries per define_metric, config updates, media, histograms,
    the alert, notes and tags."""
    got = history(ours, "torch-loop")
    steps = sorted({s for s, _ in got})
    assert steps == list(range(15)) + [21]  # 3 epochs x (4 train + 1 val), media row, late
    assert got[(0, "lr")] == 0.05 and (0, "train/loss") in got  # commit=False joined row 0
    assert [got[(s, "epoch")] for s in (4, 9, 14)] == [0, 1, 2]
    assert (21, "late") in got and not [k for _, k in got if k == "ignored"]
    ((config, summary, tags, status),) = query(
        ours, "SELECT config, summary, tags, status FROM runs WHERE project = 'torch-loop'")
    config, summary = json.loads(config), json.loads(summary)
    assert (config["optimizer"], config["batch_size"], config["_wandb"]["job_type"]) == (
        "sgd", 16, "train")
    assert tags == ["cpu"] and status == "finished"
    vals = [got[(s, "val/loss")] for s in (4, 9, 14)]
    assert (summary["val/loss.min"], summary["val/loss.max"]) == (min(vals), max(vals))
    assert summary["best_val"] == min(vals)
    media = query(ours, "SELECT key, media, step FROM media ORDER BY key")
    assert media == [("preds", "table", 15), ("sample", "image", 15)]
    hist_keys = {k for (k,) in query(ours, "SELECT DISTINCT key FROM histograms")}
    assert "pred_hist" in hist_keys
    assert query(ours, "SELECT notes FROM updates WHERE notes IS NOT NULL") == [
        ("tiny regression",)]
    assert query(ours, "SELECT message FROM alerts") == [(f"done: best val {min(vals):.3f}",)]


@pytest.mark.slow
def test_lightning_wandb_logger(tmp_path):
    """Lightning's WandbLogger over runlake.wandb.install(): hyperparameters, train/val
    metrics at trainer/global_step (W&B's define_metric('*', step_metric=...)), the
    callback's commit=False value, a finished run."""
    root = tmp_path / "root"
    run_script("lightning_logger.py", tmp_path / "lit", INSTALLED,
               env={"RUNLAKE_DIR": str(root)})
    ((config, status),) = query(root, "SELECT config, status FROM runs")
    assert json.loads(config)["lr"] == 0.05 and json.loads(config)["batch_size"] == 16
    assert status == "finished"
    got = history(root, "lightning-demo")
    train = sorted(s for s, k in got if k == "train_loss")
    assert len(train) == 8  # 4 batches x 2 epochs, log_every_n_steps=1
    assert all((s, "trainer/global_step") in got for s in train)
    assert len([k for _, k in got if k == "val_loss"]) == 2
    assert [got[(s, "epoch_marker")] for s, k in sorted(got) if k == "epoch_marker"] == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name, project", [("quickstart.py", "my-awesome-project"),
                                           ("torch_loop.py", "torch-loop")])
def test_same_history_and_summary_as_the_real_wandb(ours, tmp_path, name, project):
    """The real wandb (offline) and runlake.wandb record the same rows: every (step, key,
    value) of the history, and the same summary values."""
    from runlake.ingest.import_wandb import import_wandb

    real = tmp_path / "real"
    run_script(name, real, None, env=real_wandb_env(real))
    imported = tmp_path / "imported"
    import_wandb(real / "wandb", root=imported, db=imported / "runlake.duckdb")
    theirs, mine = history(imported, project), history(ours, project)
    assert theirs == mine
    ((their_summary,),) = query(imported, "SELECT summary FROM runs")
    ((my_summary,),) = query(ours, "SELECT summary FROM runs WHERE project = ?", [project])
    their_summary, my_summary = json.loads(their_summary), json.loads(my_summary)
    assert my_summary and their_summary == my_summary


CRASH = """
import runlake.wandb as wandb
for _ in range(2):  # runs started and finished before: the exception hooks must not chain
    wandb.init(project="warmup").finish()
run = wandb.init(project="crash", config={"lr": 0.1})
wandb.define_metric("loss", summary="min")
for step in range(3):
    wandb.log({"loss": 1.0 / (step + 1)}, step=step)  # each row pending until the next
run.summary["note"] = "about to fail"
raise RuntimeError("diverged")
"""


def test_uncaught_exception_keeps_the_pending_row_and_summary(tmp_path):
    """An uncaught exception: the pending W&B row (step 2) and the summary are written
    before runlake ends the run failed with the traceback (once, after earlier runs)."""
    (tmp_path / "crash.py").write_text(CRASH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RUNLAKE_"))}
    proc = subprocess.run([sys.executable, "crash.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**env, "RUNLAKE_DIR": str(tmp_path / "r")})
    assert proc.returncode == 1 and "RuntimeError: diverged" in proc.stderr
    assert "sys.excepthook" not in proc.stderr and "RecursionError" not in proc.stderr
    root = tmp_path / "r"
    assert query(root, "SELECT step, value FROM metrics ORDER BY step") == [
        (0, 1.0), (1, 0.5), (2, 1 / 3)]
    ((status, summary, reason),) = query(
        root, "SELECT status, summary, exit_reason FROM runs WHERE project = 'crash'")
    assert status == "failed" and "diverged" in reason
    assert json.loads(summary) == {"loss.min": 1 / 3, "note": "about to fail"}
