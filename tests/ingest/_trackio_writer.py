"""Writes a trackio project with the real trackio, then dumps what trackio's own reader
returns, for tests/ingest/test_import_trackio.py.

Run as ``python _trackio_writer.py OUT.json [PROJECT]`` with TRACKIO_DIR (and HOME, HF_HOME) pointing
into the test's tmp_path and HF_HUB_OFFLINE=1: trackio then writes only
``$TRACKIO_DIR/<project>.db`` and ``$TRACKIO_DIR/media/`` (no Space, no upload).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import trackio
from trackio.sqlite_storage import SQLiteStorage

PROJECT = "ported-proj"


def main(out: str, project: str = PROJECT) -> None:
    quiet = {"auto_log_cpu": False, "auto_log_gpu": False}  # only the system values logged below
    trackio.init(project=project, name="run-a", group="sweep-1", **quiet,
                 config={"lr": 0.01, "layers": 3, "opt": "adam", "nested": {"a": [1, 2]}})
    for s in range(20):
        trackio.log({"loss": 1.0 / (s + 1), "acc": s * 0.05,
                     "val/loss": [0.5, float("nan"), float("inf"), float("-inf")][s % 4]})
    trackio.log({"late": 3.5, "label": "a string"}, step=40)
    trackio.log({"weights": trackio.Histogram(np.linspace(-1.0, 1.0, 101), num_bins=8)})
    trackio.log({"sample": trackio.Image(np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3),
                                         caption="ramp")})
    trackio.log({"clip": trackio.Audio(np.sin(np.arange(800) / 10.0), sample_rate=8000)})
    trackio.log({"preds": trackio.Table(columns=["id", "text"], data=[[1, "x"], [2, "y"]])})
    trackio.log({"readme": trackio.Markdown("# hello")})
    trackio.log_system({"gpu/0/util": 50.0, "cpu/percent": 12.5})
    trackio.alert("loss spike", text="loss went up", level=trackio.AlertLevel.ERROR)
    trackio.finish()
    trackio.init(project=project, name="run-b", config={"lr": 0.1}, **quiet)
    trackio.log({"loss": 2.0})
    trackio.log({"loss": 1.0})
    trackio.finish()

    runs = {}
    for record in SQLiteStorage.get_run_records(project):
        logs = SQLiteStorage.get_logs(project, run_id=record["id"])
        runs[record["id"]] = {
            "name": record["name"],
            "config": SQLiteStorage.get_run_config(project, record["name"]),
            "logs": [{"step": log["step"], "timestamp": str(log["timestamp"]),
                      **{k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
                         for k, v in log.items() if k not in ("step", "timestamp")}}
                     for log in logs],
        }
    with open(out, "w") as f:
        json.dump({"project": project, "db": str(SQLiteStorage.get_project_db_path(project)),
                   "runs": runs}, f, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:3])
