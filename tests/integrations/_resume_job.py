"""Train-and-crash / resume helper for the resume test.

usage: python _resume_job.py ROOT RUN_ID crash|resume
crash: logs steps 0..12, flushes, logs 13..14 (never flushed), saves nothing more, SIGKILLs itself.
resume: resumes RUN_ID, prints "<start step> <attempt>", logs 10 more steps, finishes.
"""
import os
import signal
import sys

import torch

import runlake
from runlake.torch import CheckpointManager

root, run_id, mode = sys.argv[1:4]
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(16, 4)


def train_step():
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


if mode == "crash":
    run = runlake.init("res", "resumable", root=root, run_id=run_id, flush_interval=60.0,
                       console=False, system_interval=0, config={"lr": 0.1})
    ckpt = CheckpointManager(run, os.path.join(root, "ckpt"))
    for step in range(13):
        run.log({"loss": train_step()}, step=step)
    ckpt.save({"model": model.state_dict(), "opt": opt.state_dict()}, 12)
    assert run.flush(), run.dropped
    for step in range(13, 15):
        run.log({"loss": train_step()}, step=step)  # buffered only: lost in the crash
    os.kill(os.getpid(), signal.SIGKILL)
else:
    # config passed again: a resumed attempt's run_start replaces the run's config in the store
    run = runlake.init("res", "resumable", root=root, resume=run_id, flush_interval=60.0,
                       console=False, system_interval=0, config={"lr": 0.1})
    ckpt = CheckpointManager(run, os.path.join(root, "ckpt"))
    state = ckpt.load_latest()
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    print(run.step + 1, run.attempt, flush=True)
    for _ in range(10):
        run.log({"loss": train_step()})  # continues at run.step + 1
    run.finish()
