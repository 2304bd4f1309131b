"""The PyTorch integration in one namespace (imported as :mod:`runlake.torch`).

Importing this module imports torch; ``import runlake`` never does.

* :func:`watch`: gradient / weight / update statistics from optimizer hooks.
* :class:`Throughput`: step time, samples/s, tokens/s per window of steps.
* :func:`track`: data lineage (item ids, split, epoch, augmentation) from a DataLoader.
* :class:`CheckpointManager`: atomic checkpoints, retention, ``latest`` pointer, resume.
* :func:`init_distributed_run`: one run shared by every rank of a distributed job.
"""

from __future__ import annotations

import torch  # noqa: F401  (fail here, clearly, when torch is not installed)

from runlake.emitter.integrations.checkpoints import CheckpointInfo, CheckpointManager
from runlake.emitter.integrations.data import TrackedDataset, TrackedLoader, track
from runlake.emitter.integrations.distributed import init_distributed_run
from runlake.emitter.integrations.throughput import Throughput
from runlake.emitter.integrations.watch import WatchHandle, watch

__all__ = [
    "CheckpointInfo",
    "CheckpointManager",
    "Throughput",
    "TrackedDataset",
    "TrackedLoader",
    "WatchHandle",
    "init_distributed_run",
    "track",
    "watch",
]
