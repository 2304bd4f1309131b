"""One run for all ranks of a ``torch.distributed`` job.

Why it exists: every rank must write into the same run (its own writer directory, so no
file is shared), which needs one run id agreed by all ranks before any writes. When the
launcher provides none (``$RUNLAKE_RUN_ID`` / ``$TORCHELASTIC_RUN_ID`` / ``run_id=``), rank
0 creates the run and broadcasts its id with ``broadcast_object_list``; the other ranks
then join it.

Rank-0-only data: the ``config``, ``tags`` and ``group`` passed here are written in rank
0's ``run_start`` only (other ranks write a bare ``run_start`` that records their host,
rank and attempt). :class:`~runlake.emitter.integrations.checkpoints.CheckpointManager`
saves and records ``checkpoint`` events on rank 0 only, and :func:`track` registers
``dataset`` events on rank 0 only. Log ``sample`` events under ``if run.rank == 0`` (a
per-rank sample is usually a duplicate). Metrics, data lineage, system stats and
heartbeats come from every rank, tagged with their rank.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["init_distributed_run"]

_RANK0_ONLY = ("config", "tags", "group")


def init_distributed_run(project: str = "default", name: str | None = None, **init_kwargs: Any) -> Any:
    """``runlake.init`` for every rank of a distributed job, all writing one run.

    Call it after ``torch.distributed.init_process_group``. Without an initialized process
    group it is plain ``runlake.init``. ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` are set from
    the process group when the launcher did not set them (``torch.multiprocessing.spawn``),
    so the run records the right rank.

    Args:
        project, name: as for ``runlake.init``.
        **init_kwargs: passed to ``runlake.init`` (``config``, ``root``, ``resume``...);
            ``config``, ``tags`` and ``group`` are given to rank 0 only.

    Returns:
        This rank's :class:`runlake.Run`.

    Raises:
        Whatever ``runlake.init`` raises; a collective error if ranks disagree.
    """
    import torch.distributed as dist

    from runlake.emitter.initializer import init

    if not (dist.is_available() and dist.is_initialized()):
        return init(project, name, **init_kwargs)
    rank, world = dist.get_rank(), dist.get_world_size()
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(world))
    os.environ.setdefault("LOCAL_RANK", str(rank))
    if rank != 0:
        for key in _RANK0_ONLY:
            init_kwargs.pop(key, None)
    run = None
    if rank == 0:
        try:
            run = init(project, name, **init_kwargs)
        except BaseException:
            dist.broadcast_object_list([None], src=0)  # release the other ranks
            raise
    box = [run.id if run is not None else None]
    dist.broadcast_object_list(box, src=0)
    if rank != 0:
        if box[0] is None:
            from runlake.schemas.errors import RunStateError

            raise RunStateError("rank 0 failed to start the runlake run (see its error); no run to join")
        init_kwargs["run_id"] = box[0]
        if init_kwargs.get("resume") and isinstance(init_kwargs["resume"], str):
            init_kwargs["resume"] = box[0]
        run = init(project, name, **init_kwargs)
    return run
