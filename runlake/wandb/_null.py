"""The runlake side of a ``mode="disabled"`` W&B run: every call accepted, nothing recorded.

W&B's disabled mode returns a run with the full API that does nothing; here the
:class:`~runlake.wandb._run.WandbRun` is the same object as for a live run, over this
stand-in, so config, summary and step bookkeeping still behave (a script reading
``run.summary`` works) while no file is written and no thread started.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from runlake.emitter.environment import new_run_id

__all__ = ["NullRun"]


class NullRun:
    """Accepts the runlake ``Run`` calls the W&B surface makes, and records nothing."""

    attempt = 0

    def __init__(self, project: str | None, name: str | None, run_id: str | None) -> None:
        self.id = run_id or new_run_id()
        self.project = project or "disabled"
        self.name = name or self.id
        self.dir = Path(tempfile.gettempdir()) / "runlake-wandb-disabled" / self.id
        self.step = -1
        self.status: str | None = None

    def log(self, metrics: Any, step: int | None = None, **kwargs: Any) -> None:
        if step is not None and step > self.step:
            self.step = step

    def log_media(self, *args: Any, **kwargs: Any) -> None:
        return None

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    log_histogram = update = alert = log_checkpoint = log_dataset = log_data = _nothing
    log_sample = flush = _nothing

    def finish(self, status: str = "finished", **kwargs: Any) -> None:
        self.status = status
