"""The store the workspace tests share: prefixed keys, epochs, seeds of two learning rates,
a resumed attempt, a NaN range (an anomaly with a step range), a checkpoint and a run
whose name and key are markup. Written by the real emitter, loaded by the real ingest,
scanned by the real detectors; built once per test session (``workspace_store``)."""

from __future__ import annotations

import math
import re
from pathlib import Path

STEPS = 120
RESUME_AT = 80
NAN_STEPS = range(60, 70)
CHECKPOINT_AT = 100
HOSTILE_KEY = "**s**<i>/[l](javascript:x) ![i](http://127.0.0.1:9/i.png) :red[x]"
HOSTILE_NAME = "<b>x</b> **bold** ![i](http://127.0.0.1:9/i.png) $y$"
KEYS = ("lr", "sys/cpu", "train/acc", "train/loss", "val/loss")

_BUILT: dict[str, dict] = {}


def loss(step: int, lr: float, seed: int) -> float:
    """A deterministic loss with a seed-dependent wiggle (so seeds differ)."""
    return 2.0 * math.exp(-step * lr / 3) + 0.05 * math.sin(step * 0.7 + seed) + 0.2


def _log_steps(run, steps, lr: float, seed: int, nan: bool) -> None:
    for step in steps:
        value = float("nan") if nan and step in NAN_STEPS else loss(step, lr, seed)
        row = {"train/loss": value, "train/acc": step / STEPS, "lr": lr, "sys/cpu": 10.0 + seed}
        if step % 10 == 0:
            row["val/loss"] = loss(step, lr, seed) + 0.1
        run.log(row, step=step, epoch=step // 40)


def build(root: Path) -> dict:
    """Write the runs, ingest, detect; return db, ids by name, configs by id."""
    import runlake
    from runlake.analysis import anomalies
    from runlake.ingest import ingest

    ids, configs = {}, {}
    for lr, group in ((0.1, "fast"), (0.01, "slow")):
        for seed in (1, 2, 3):
            name = f"lr{lr}-s{seed}"
            config = {"lr": lr, "seed": seed, "model": {"width": 64}}
            first = name == "lr0.1-s1"
            run = runlake.init("ws", name, root=root, config=config, group=group,
                               console=False, flush_interval=0.2)
            _log_steps(run, range(RESUME_AT if first else STEPS), lr, seed, nan=first)
            if first:  # died at RESUME_AT; a second attempt resumes the run
                run.finish(status="failed")
                run = runlake.init("ws", name, root=root, resume=run.id, console=False,
                                   flush_interval=0.2)
                _log_steps(run, range(RESUME_AT, STEPS), lr, seed, nan=True)
                run.log_checkpoint("ckpt-100.pt", step=CHECKPOINT_AT, bytes=1, sha256="0" * 64)
            run.finish()
            ids[name] = run.id
            configs[run.id] = config | {"group": group}
    run = runlake.init("ws", HOSTILE_NAME, root=root, config={"lr": 0.5, "seed": 9},
                       console=False, flush_interval=0.2)
    for step in range(20):
        run.log({HOSTILE_KEY: 1.0 / (step + 1), "train/loss": 1.0}, step=step)
    run.finish()
    ids["hostile"] = run.id
    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
    anomalies.detect(db=db)
    return {"db": db, "ids": ids, "configs": configs}


def workspace_store(tmp_path_factory) -> dict:
    """The shared store (one build per session, whichever test module asks first)."""
    if "store" not in _BUILT:
        _BUILT["store"] = build(tmp_path_factory.mktemp("workspace"))
    return _BUILT["store"]


def page_ok(at) -> list[str]:
    """No traceback, no error box on an AppTest page; its warnings as displayed (escapes
    removed)."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return [re.sub(r"\\(.)", r"\1", w.value) for w in at.warning]


def chart_rows(at) -> list[list[dict]]:
    """The data rows of each Vega-Lite chart on an AppTest page, one list per chart."""
    import pyarrow as pa

    out = []
    for el in at.get("vega_lite_chart"):
        rows = []
        for ds in el.proto.datasets:
            rows += pa.ipc.open_stream(ds.data.data).read_all().to_pylist()
        out.append(rows)
    return out
