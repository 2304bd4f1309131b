"""Integrations with training libraries: PyTorch, Lightning, TensorBoard, Python logging.

This package stays light: importing it imports none of torch, lightning or tensorboard.
Each integration lives in its own module and imports its library when it is imported:

* :mod:`.torch` (``runlake.torch``): ``watch``, ``Throughput``, ``track``,
  ``CheckpointManager``, ``init_distributed_run``;
* :mod:`.lightning` (``runlake.lightning``): ``RunlakeLogger``, ``RunlakeProgress``;
* :mod:`.tensorboard`: ``EventFileWriter``, ``TensorBoardMirror`` (live mirroring);
* :mod:`.logging`: the bridge from Python logging to ``log`` events.
"""

__all__: list[str] = []
