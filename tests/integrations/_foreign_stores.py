"""The other trackers' stores the docs import from (docs/migrate.md's shell blocks), written
by the real libraries into a folder: ``mlruns/`` (MLflow's file store),
``trackio/my-project.db`` (trackio, in a subprocess, offline) and ``wandb/`` (one offline W&B
run, as ``wandb.init(mode="offline")`` leaves it in a script's folder).

Used by test_documented_commands.py's demo fixture, so ``runlake import mlflow ./mlruns``,
``runlake import trackio trackio/my-project.db`` and ``runlake import wandb ./wandb`` run
verbatim there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TRACKIO_WRITER = Path(__file__).resolve().parents[1] / "ingest" / "_trackio_writer.py"


def write_foreign_stores(cwd: Path) -> None:
    """``cwd/mlruns`` with one finished run, ``cwd/trackio/my-project.db`` with two and
    ``cwd/wandb`` with one offline W&B run."""
    code = (
        "import sys\n"
        "from mlflow.entities import Metric, Param\n"
        "from mlflow.tracking import MlflowClient\n"
        "c = MlflowClient(tracking_uri=sys.argv[1])\n"
        "r = c.create_run(c.create_experiment('old experiment'), run_name='mlflow-run')\n"
        "c.log_batch(r.info.run_id, metrics=[Metric('loss', 1.0 / (s + 1), 1_700_000_000_000 + s, s)"
        " for s in range(10)], params=[Param('lr', '0.001')])\n"
        "c.set_terminated(r.info.run_id, 'FINISHED')\n"
    )
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    subprocess.run([sys.executable, "-c", code, (cwd / "mlruns").as_uri()], env=env, check=True,
                   capture_output=True, timeout=240)
    home = cwd / "trackio-home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "HF_HOME": str(home / "hf"), "TRACKIO_DIR": str(cwd / "trackio"),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for var in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL"):
        env.pop(var, None)
    subprocess.run([sys.executable, str(TRACKIO_WRITER), str(home / "read-back.json"), "my-project"], env=env,
                   check=True, capture_output=True, timeout=240)
    code = (
        "import wandb\n"
        "run = wandb.init(project='old-project', name='wandb-run', config={'lr': 0.001})\n"
        "for s in range(10):\n"
        "    run.log({'loss': 1.0 / (s + 1)})\n"
        "run.finish()\n"
    )
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(cwd), "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, capture_output=True,
                   timeout=240)
