"""``runlake.wandb.install()``: let libraries that ``import wandb`` themselves use runlake.

Lightning's ``WandbLogger``, Hugging Face's ``report_to="wandb"`` and similar integrations
import ``wandb`` inside their own code, so changing the script's import line is not enough.
``install()`` puts this package into ``sys.modules`` under the names those integrations
import (``wandb``, ``wandb.sdk``, ``wandb.sdk.lib`` with ``RunDisabled``, ``wandb.wandb_run``
with ``Run``) for this process only. Nothing is installed on disk; a real ``wandb`` already
imported in the process is an error (the two cannot share the name).
"""

from __future__ import annotations

import sys
import types

from runlake.wandb._errors import Error

__all__ = ["install"]


def install() -> None:
    """Make ``import wandb`` return ``runlake.wandb`` in this process. Idempotent.

    Raises:
        Error: the real ``wandb`` was imported before.
    """
    import runlake.wandb as surface

    current = sys.modules.get("wandb")
    if current is surface:
        return
    if current is not None:
        raise Error("the real wandb package is already imported in this process: call "
                    "runlake.wandb.install() before anything imports wandb")
    lib = types.ModuleType("wandb.sdk.lib")
    lib.RunDisabled = type("RunDisabled", (), {"__doc__": "Never instantiated: disabled runs "
                                               "are runlake.wandb.Run objects too."})
    sdk = types.ModuleType("wandb.sdk")
    sdk.lib = lib
    wandb_run = types.ModuleType("wandb.wandb_run")
    wandb_run.Run = surface.Run
    sys.modules.update({"wandb": surface, "wandb.sdk": sdk, "wandb.sdk.lib": lib,
                        "wandb.wandb_run": wandb_run})
