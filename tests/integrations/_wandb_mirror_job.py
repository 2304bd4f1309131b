"""A training process mirrored to W&B (run as a real subprocess by test_wandb_mirror.py).

``python _wandb_mirror_job.py '<json>'``: ``runlake.init(root=..., wandb=True)`` (W&B's
offline mode and folder come from WANDB_MODE / WANDB_DIR), ``steps`` steps of two scalars
with epochs (20 ms apart), one user alert, a run update, a histogram and an audio clip at
the last step, then either ``finish()`` or (``"fail": true``) an uncaught exception. While
the run is live, a profile function on the main (training) thread records every call into
the wandb package (``sys.setprofile`` is per thread: the writer thread's calls are not
seen); the last stdout line is a JSON report.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy
from pathlib import Path


def main() -> None:
    cfg = json.loads(sys.argv[1])
    calls: list[str] = []

    def profile(frame, event, arg) -> None:
        if event == "call" and "wandb" in Path(frame.f_code.co_filename).parts:
            calls.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    import runlake

    main_thread = threading.get_ident()
    sys.setprofile(profile)
    run = runlake.init("mirror", "job", root=cfg["root"], config={"lr": 0.01, "layers": 3},
                       tags=["ci"], console=False, system_interval=0, capture_logging=False,
                       flush_interval=0.05, wandb=True)
    for step in range(cfg["steps"]):
        run.log({"loss": 1.0 / (step + 1), "acc": step / cfg["steps"]}, step=step, epoch=step // 10)
        if step % 25 == 0:
            run.flush()  # several batches reach the mirror while the run is live
        time.sleep(0.02)  # a training step: 50 steps/s, well within what W&B takes unthinned
    run.alert("loss plateaued", severity="warning")
    last = cfg["steps"] - 1
    run.update(config={"batch": 32}, summary={"best": 0.125}, tags=["ci", "mirrored"])
    run.log_histogram("grad/w", [float(i % 10) for i in range(100)], bins=10)  # at the last step
    run.log_media("sample", numpy.sin(numpy.arange(800) / 10.0) * 0.5, sample_rate=8000,
                  step=last, caption="a tone")
    report = {"run_id": run.id, "main_thread_wandb_calls": calls,
              "main_thread": main_thread}
    if cfg.get("fail"):
        print(json.dumps(report), flush=True)
        sys.setprofile(None)
        raise RuntimeError("training diverged")
    run.finish()
    sys.setprofile(None)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
