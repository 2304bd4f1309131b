"""Save 8 MB checkpoints in a loop until killed (used by the SIGKILL atomicity test).

Prints "saving" once the first checkpoint of this process is durable.
"""
import sys

import torch

from runlake.torch import CheckpointManager

mgr = CheckpointManager(None, sys.argv[1], keep_last=2, keep_best=0)
start = (mgr.latest().step + 1) if mgr.latest() else 0
for step in range(start, start + 100_000):
    mgr.save({"big": torch.randn(1_000_000, dtype=torch.float64), "step": step}, step)
    if step == start:
        print("saving", flush=True)
