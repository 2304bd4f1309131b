"""The one error ``runlake.wandb`` raises for W&B-level misuse: ``wandb.Error``.

W&B scripts catch ``wandb.Error``; here it is also a :class:`runlake.RunlakeError`, so
runlake code catches it too. Errors from runlake itself (a bad root, a run that does not
exist) keep their own runlake types (``RootError``, ``RunNotFoundError``...).
"""

from __future__ import annotations

from runlake.schemas.errors import RunlakeError

__all__ = ["Error"]


class Error(RunlakeError):
    """A W&B call runlake cannot honour, or misuse W&B itself refuses (the message says
    what to do instead)."""
