"""``runlake.lightning``: a PyTorch Lightning ``Logger`` and progress callback.

Importing it imports ``lightning`` (install it with ``pip install lightning``). See
``docs/torch.md``.

Example::

    from runlake.lightning import RunlakeLogger, RunlakeProgress

    trainer = L.Trainer(max_epochs=3, logger=RunlakeLogger("mnist"), callbacks=[RunlakeProgress()])
"""

from runlake.emitter.integrations.lightning import RunlakeLogger, RunlakeProgress

__all__ = ["RunlakeLogger", "RunlakeProgress"]
