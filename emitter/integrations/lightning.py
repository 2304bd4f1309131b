"""PyTorch Lightning integration: a ``Logger`` writing a runlake run, and a progress callback.

Why it exists: Lightning users configure tracking with ``Trainer(logger=...)`` and expect
no other change. :class:`RunlakeLogger` implements Lightning's ``Logger``:

* the run is created lazily on rank 0 (Lightning calls loggers on rank 0 only), on the
  first of ``log_hyperparams`` (whose params become the run's ``config``), ``log_metrics``
  or a use of ``experiment`` (reading the property alone, as Lightning does during setup,
  does not start it); its id is fixed at construction so ``version`` (used by
  ``ModelCheckpoint`` for its folder) never starts the run early;
* ``log_metrics(metrics, step)`` -> ``run.log`` at Lightning's ``global_step``, with the
  ``epoch`` entry Lightning adds used as the event's epoch;
* ``after_save_checkpoint`` records every save of ``ModelCheckpoint`` as a ``checkpoint``
  event: the file just written, at the step it was saved (``last.ckpt``, overwritten each
  time, gets one event per save), with its sha256 and size, tags ``best``/``last``/``top_k``
  and ``metrics`` holding the monitored score and Lightning's ``epoch`` (the epoch of the
  latest metrics Lightning logged). A recorded file that is gone (``save_top_k`` replaced
  it, ``last.ckpt`` moved) gets a ``checkpoint`` event tagged ``deleted`` with the step,
  size and sha256 it was recorded with; Lightning removes files just after notifying the
  logger, so the deletion is seen at the next save, log call or ``finalize`` (local files
  only: on a remote file system saves are recorded, deletions are not). The files that
  still exist are, per ``uri``, the newest row not tagged ``deleted``;
* ``save()`` (which Lightning calls after every ``log_metrics``) only looks for deleted
  checkpoints: the run's writer thread flushes on its own interval, so training never
  waits for a flush here;
* ``finalize("success")`` flushes (Lightning calls it after every ``fit``/``test``, so the
  run stays open for the next stage; it ends when the process exits or on
  ``logger.experiment.finish()``); ``finalize("failed")`` ends the run as failed.

Hyperparameters logged after the run started cannot change its ``config`` (``run_start``
is written once); they are kept as a ``log`` event at level WARNING (logger
``runlake.lightning``, written straight to the run, whatever the logging configuration)
and a warning says so.

:class:`RunlakeProgress` is a callback adding ``perf/step_ms`` and ``perf/samples_per_s``
every ``every`` training batches and setting the run's ``total_steps`` from
``trainer.estimated_stepping_batches`` (for the ETA in heartbeats).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from argparse import Namespace
from typing import Any, NamedTuple

from lightning.fabric.utilities.logger import _convert_params
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from runlake.emitter.environment import new_run_id, run_id_from_env
from runlake.emitter.integrations.logging import RunlakeHandler
from runlake.emitter.integrations.throughput import log_at
from runlake.emitter.records import file_facts
from runlake.schemas.errors import RunlakeWarning
from runlake.schemas.segments import resolve_root

__all__ = ["RunlakeLogger", "RunlakeProgress"]

_log = logging.getLogger("runlake.lightning")


class _Saved(NamedTuple):
    """What was recorded for one checkpoint file: to notice rewrites and deletions."""

    signature: tuple[int, int, int]  # (inode, size, mtime_ns)
    step: int | None
    bytes: int | None
    sha256: str | None


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


class RunlakeLogger(Logger):
    """Lightning ``Logger`` recording into a runlake run.

    Args:
        project: runlake project.
        name: run name (default: the run id).
        run: an existing live Run to log into instead of creating one.
        root: storage root (default ``$RUNLAKE_DIR``, else ``./runlake-data``).
        **init_kwargs: passed to ``runlake.init`` (``config``, ``tags``, ``group``,
            ``run_id``, ``resume``...). ``config`` is merged under the hyperparameters.

    Example::

        trainer = L.Trainer(logger=RunlakeLogger("mnist", config={"seed": 0}),
                            callbacks=[RunlakeProgress()])
    """

    def __init__(self, project: str = "default", name: str | None = None, *, run: Any = None,
                 root: str | os.PathLike | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        self._project = project
        self._run_name = name
        self._run = run
        self._root = resolve_root(root) if run is None else run.root
        self._init_kwargs = init_kwargs
        self._run_id = run.id if run is not None else (init_kwargs.pop("run_id", None) or run_id_from_env() or new_run_id())
        self._saved: dict[str, _Saved] = {}  # local checkpoint files recorded and not yet deleted
        self._epoch: int | None = None  # Lightning's epoch in the latest log_metrics call

    # -- identity (never starts the run) ------------------------------------------------------
    @property
    def name(self) -> str:
        return self._project

    @property
    def version(self) -> str:
        return self._run_id

    @property
    def save_dir(self) -> str:
        return str(self._root)

    @property
    def root_dir(self) -> str:
        return str(self._root)

    @property
    def log_dir(self) -> str:
        return str(self._root / self._project / self._run_id)

    # -- the run ---------------------------------------------------------------------------
    def _start(self, config: dict[str, Any] | None = None) -> Any:
        if self._run is None:
            from runlake.emitter.initializer import init

            kwargs = dict(self._init_kwargs)
            merged = dict(kwargs.pop("config", None) or {})
            merged.update(config or {})
            self._run = init(self._project, self._run_name, config=merged, root=self._root,
                             run_id=self._run_id, **kwargs)
        return self._run

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The :class:`runlake.Run`; before it started, a handle that starts it on first use.

        Lightning touches ``experiment`` before ``log_hyperparams``; returning the handle
        lets the hyperparameters still become the run's config.
        """
        return self._run if self._run is not None else _LazyRun(self)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        params = _convert_params(params) or {}
        params = json.loads(json.dumps(params, default=str))
        if self._run is None:
            self._start(params)
            return
        warnings.warn("runlake: hyperparameters logged after the run started are kept as a log "
                      "event, not in the run's config", RunlakeWarning, stacklevel=2)
        record = _log.makeRecord(
            _log.name, logging.WARNING, __file__, 0, "hyperparameters logged after the run started "
            "(not in the run's config): %s", (json.dumps(params, sort_keys=True),), None)
        RunlakeHandler(self._run).handle(record)  # not through logging: its levels must not drop it

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        run = self._start()
        values = dict(metrics)
        epoch = values.pop("epoch", None)
        if epoch is not None:
            self._epoch = int(epoch)
        run.log(values, step=step, epoch=self._epoch if epoch is not None else None)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Record the file ``ModelCheckpoint`` just saved (and any other it rewrote or removed)."""
        run = self._start()
        self._record_deleted()
        cb = checkpoint_callback
        just_saved = getattr(cb, "_last_checkpoint_saved", "") or ""
        step = getattr(cb, "_last_global_step_saved", None)
        best = getattr(cb, "best_model_path", "") or ""
        last = getattr(cb, "last_model_path", "") or ""
        top_k = dict(getattr(cb, "best_k_models", None) or {})
        monitor = getattr(cb, "monitor", None)
        for path in dict.fromkeys(p for p in (just_saved, best, last, *top_k) if p):
            local = _is_local(path)
            sig = _signature(path) if local else None
            if local and sig is None:
                continue
            known = self._saved.get(path)
            if path != just_saved and (not local or (known is not None and known.signature == sig)):
                continue  # not written by this save
            tags = [t for t, hit in (("best", path == best), ("last", path == last),
                                     ("top_k", path in top_k)) if hit]
            metrics: dict[str, float] = {}
            score = top_k.get(path, getattr(cb, "best_model_score", None) if path == best else None)
            if monitor and score is not None:
                metrics[monitor] = float(score)
            if self._epoch is not None:
                metrics["epoch"] = float(self._epoch)
            size, sha = file_facts(path, want_hash=True) if local else (None, None)
            run.log_checkpoint(path, step=step, metrics=metrics, bytes=size, sha256=sha, tags=tags)
            if local:
                self._saved[path] = _Saved(sig, step, size, sha)

    def _record_deleted(self) -> None:
        """A ``deleted`` checkpoint event for each recorded local file that is gone."""
        if self._run is None or not self._saved or self._run._ended:
            return
        for path, saved in list(self._saved.items()):
            if _signature(path) is None:
                del self._saved[path]
                self._run.log_checkpoint(path, step=saved.step, bytes=saved.bytes,
                                         sha256=saved.sha256, tags=["deleted"])

    @rank_zero_only
    def save(self) -> None:
        self._record_deleted()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is None:
            return
        self._record_deleted()
        if status == "failed":
            self._run.finish("failed")
        else:
            self._run.flush()


class _LazyRun:
    """Stands for the logger's run until first used; then forwards to the real Run."""

    __slots__ = ("_logger",)

    def __init__(self, logger: RunlakeLogger) -> None:
        object.__setattr__(self, "_logger", logger)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger._start(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._logger._start(), name, value)

    def __repr__(self) -> str:
        return f"<runlake run {self._logger.version} (not started yet)>"


class RunlakeProgress(Callback):
    """Adds step time, samples/s and total steps to the :class:`RunlakeLogger`'s run.

    Args:
        every: training batches per logged window.
    """

    def __init__(self, every: int = 20) -> None:
        self.every = max(1, int(every))
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._busy = 0.0
        self._samples = 0
        self._window = None

    @staticmethod
    def _run(trainer: Any) -> Any:
        for logger in trainer.loggers:
            if isinstance(logger, RunlakeLogger):
                return logger.experiment
        return None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        run = self._run(trainer) if trainer.is_global_zero else None
        total = trainer.estimated_stepping_batches
        if run is not None and isinstance(total, (int, float)) and total != float("inf"):
            run.total_steps = int(total)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()
        if self._window is None:
            self._window = self._t0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        t = time.perf_counter()
        self._busy += t - self._t0
        self._n += 1
        self._samples += _batch_size(batch)
        if self._n < self.every or not trainer.is_global_zero:
            return
        run = self._run(trainer)
        wall = t - self._window
        values = {"perf/step_ms": self._busy / self._n * 1e3}
        if wall > 0 and self._samples:
            values["perf/samples_per_s"] = self._samples / wall
        self._reset()
        self._window = t
        if run is not None:
            log_at(run, values, trainer.global_step)


def _batch_size(batch: Any) -> int:
    if hasattr(batch, "shape") and len(batch.shape):
        return int(batch.shape[0])
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 0
