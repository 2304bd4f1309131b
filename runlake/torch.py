"""``runlake.torch``: model hooks, throughput, data lineage, checkpoints, distributed runs.

Importing it imports torch (``import runlake`` alone never does). See ``docs/torch.md``.

Example::

    import runlake
    from runlake.torch import CheckpointManager, Throughput, track, watch

    run = runlake.init("mnist", config=cfg)
    loader = track(DataLoader(train_set, batch_size=64, shuffle=True, num_workers=2), run)
    watch(model, run, every=50)
    ckpt = CheckpointManager(run, "ckpts", keep_last=3, metric="val/loss")
"""

from runlake.emitter.integrations.torch import *  # noqa: F401,F403  (names declared there)
from runlake.emitter.integrations.torch import __all__  # noqa: F401
