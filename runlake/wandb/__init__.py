"""``runlake.wandb``: run a W&B training script on runlake by changing one import line.

``import runlake.wandb as wandb`` gives W&B's module-level API - ``init``, ``log``,
``finish``, ``config``, ``summary``, ``run``, ``define_metric``, ``watch``, ``alert``,
``save`` - and its data types (``Histogram``, ``Image``, ``Audio``, ``Video``, ``Table``,
``Html``), recorded as ordinary runlake events: metrics at W&B's own steps, ``update``
events for config and summary changes and metric definitions, ``histogram`` and ``media``
events for the data types. What has no meaning locally is accepted and recorded, or refused
with an error naming the alternative; ``docs/migrate.md`` ("From W&B") lists every
argument and every difference. The real ``wandb`` package is never imported.

Example::

    import runlake.wandb as wandb

    wandb.init(project="mnist", config={"lr": 3e-4, "epochs": 10})
    for epoch in range(wandb.config.epochs):
        wandb.log({"acc": acc, "loss": loss})
    wandb.finish()

The underlying :class:`runlake.Run` is ``wandb.run.runlake`` (checkpoints, lineage...).
"""

from __future__ import annotations

import atexit as _atexit
import enum as _enum
import sys as _sys
from typing import Any as _Any

from runlake.wandb import _init, _types
from runlake.wandb._config import Config
from runlake.wandb._errors import Error
from runlake.wandb._null import NullRun as _NullRun
from runlake.wandb._run import WandbRun as Run
from runlake.wandb._shim import install
from runlake.wandb._types import Audio, Histogram, Html, Image, Table, Video

__all__ = [
    "AlertLevel",
    "Api",
    "Artifact",
    "Audio",
    "Config",
    "Error",
    "Graph",
    "Histogram",
    "Html",
    "Image",
    "Molecule",
    "Object3D",
    "Plotly",
    "Run",
    "Settings",
    "Table",
    "Video",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "install",
    "log",
    "log_artifact",
    "login",
    "mark_preempting",
    "require",
    "run",
    "save",
    "setup",
    "summary",
    "teardown",
    "unwatch",
    "use_artifact",
    "watch",
]

__version__ = "0.31.0+runlake"  # the W&B API this surface follows


class AlertLevel(_enum.Enum):
    """W&B's alert levels; ``alert(level=)`` maps them to runlake severities."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


class Settings(dict):
    """Accepts W&B's settings (``wandb.Settings(...)`` or a dict); none of them has a
    meaning for a local runlake run, so they are kept here and otherwise ignored."""

    def __init__(self, **kwargs: _Any) -> None:
        super().__init__(**kwargs)

    def __getattr__(self, key: str) -> _Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class _PreInit:
    """What ``wandb.config`` / ``wandb.summary`` are before ``init()``: any use is W&B's
    error, "You must call wandb.init() before wandb.<name>"."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _refuse(self, *args: _Any, **kwargs: _Any) -> _Any:
        raise Error(f"You must call wandb.init() before {self._name}")

    __getattr__ = __setattr__ = __getitem__ = __setitem__ = __contains__ = _refuse
    __iter__ = __len__ = _refuse

    def __repr__(self) -> str:
        return f"<{self._name} before wandb.init()>"


run: Run | None = None
config: _Any = _PreInit("wandb.config")
summary: _Any = _PreInit("wandb.summary")
_live: list[Run] = []
_hooks = {"installed": False, "excepthook": None}


def _activate(r: Run | None) -> None:
    module = _sys.modules[__name__]
    module.run = r
    module.config = r.config if r is not None else _PreInit("wandb.config")
    module.summary = r.summary if r is not None else _PreInit("wandb.summary")
    module.log = r.log if r is not None else _log  # the run's own closure: no extra call


def _finished(r: Run) -> None:
    if r in _live:
        _live.remove(r)
    if run is r:
        _activate(_live[-1] if _live else None)
    if not _live and _sys.excepthook is _excepthook:  # else two hooks could chain in a loop
        _sys.excepthook = _hooks["excepthook"] or _sys.__excepthook__
        _hooks["excepthook"] = None


def _at_exit() -> None:
    for r in reversed(list(_live)):
        r.finish()


def _excepthook(exc_type, exc, tb) -> None:
    for r in list(_live):
        try:
            r.flush_pending()  # the pending row and summary; runlake ends the run "failed"
        except Exception:  # the previous hook must run whatever happened here
            pass
    (_hooks["excepthook"] or _sys.__excepthook__)(exc_type, exc, tb)


def _install_hooks() -> None:
    """Registered after runlake's own (so they run first at exit): commit the pending row.
    The excepthook is removed again when the last run finishes."""
    if not _hooks["installed"]:
        _atexit.register(_at_exit)
        _hooks["installed"] = True
    if _sys.excepthook is not _excepthook:
        _hooks["excepthook"] = _sys.excepthook
        _sys.excepthook = _excepthook


def init(entity: str | None = None, project: str | None = None, dir: _Any = None,
         id: str | None = None, name: str | None = None, notes: str | None = None,
         tags: _Any = None, config: _Any = None, config_exclude_keys: _Any = None,
         config_include_keys: _Any = None, allow_val_change: bool | None = None,
         group: str | None = None, job_type: str | None = None, mode: str | None = None,
         force: bool | None = None, reinit: _Any = None, resume: _Any = None,
         resume_from: str | None = None, fork_from: str | None = None,
         save_code: bool | None = None, tensorboard: bool | None = None,
         sync_tensorboard: bool | None = None, monitor_gym: bool | None = None,
         settings: _Any = None, anonymous: _Any = None, magic: _Any = None,
         root: _Any = None, runlake: dict[str, _Any] | None = None) -> Run:
    """Start a run with W&B's arguments (the mapping: :mod:`runlake.wandb._init`).

    Extra to W&B: ``root=`` (the runlake storage root) and ``runlake=`` (a dict of further
    :func:`runlake.init` arguments, e.g. ``{"flush_interval": 5}``).

    Returns:
        The run (also ``wandb.run``); ``wandb.config`` and ``wandb.summary`` are its own.

    Raises:
        Error: an argument with no runlake meaning that changes results (the message names
            the alternative), or W&B's own misuse errors (``resume='must'`` without id).
        RunNotFoundError: ``resume='must'`` and the run does not exist.
    """
    if reinit not in _init._REINIT:
        raise Error(f"reinit must be one of {_init._REINIT}; got {reinit!r}")
    if _live:
        if reinit in (True, "finish_previous"):
            for r in reversed(list(_live)):
                r.finish()
        elif reinit != "create_new":
            if resume == "must":
                raise Error("Cannot resume a run while another run is active: finish it with "
                            "run.finish(), or pass reinit='create_new'")
            return _live[-1]
    rl, cfg, facts = _init.start(
        entity=entity, project=project, dir=dir, id=id, name=name, notes=notes, tags=tags,
        config=config, config_exclude_keys=config_exclude_keys,
        config_include_keys=config_include_keys, allow_val_change=allow_val_change,
        group=group, job_type=job_type, mode=mode, resume=resume, save_code=save_code,
        monitor_gym=monitor_gym, tensorboard=tensorboard, sync_tensorboard=sync_tensorboard,
        resume_from=resume_from, fork_from=fork_from, root=root, runlake=runlake)
    if rl is None:
        rl = _NullRun(project, name, id)
    r = Run(rl, config=cfg, entity=facts["entity"], job_type=facts["job_type"],
            notes=facts["notes"], mode=facts["mode"], resumed=facts["resumed"], tags=tags,
            on_finish=_finished)
    _live.append(r)
    _activate(r)
    if facts["mode"] != "disabled":
        _install_hooks()
    return r


def _current(what: str) -> Run:
    if run is None:
        raise Error(f"You must call wandb.init() before wandb.{what}()")
    return run


def log(data: dict[str, _Any], step: int | None = None, commit: bool | None = None) -> None:
    """``wandb.run.log(...)`` (W&B's step rules: :mod:`runlake.wandb._run`); while a run is
    live, ``wandb.log`` is that run's own ``log``."""
    _current("log").log(data, step, commit)


_log = log


def define_metric(name: str, step_metric: _Any = None, step_sync: bool | None = None,
                  hidden: bool | None = None, summary: str | None = None,
                  goal: str | None = None, overwrite: bool | None = None) -> _Any:
    """``wandb.run.define_metric(...)``."""
    return _current("define_metric").define_metric(
        name, step_metric=step_metric, step_sync=step_sync, hidden=hidden, summary=summary,
        goal=goal, overwrite=overwrite)


def watch(models: _Any, criterion: _Any = None, log: str | None = "gradients",
          log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
    """``wandb.run.watch(...)``: runlake's torch hooks at W&B's step."""
    _current("watch").watch(models, criterion, log=log, log_freq=log_freq, idx=idx,
                            log_graph=log_graph)


def unwatch(models: _Any = None) -> None:
    """``wandb.run.unwatch(...)``."""
    _current("unwatch").unwatch(models)


def alert(title: str, text: str, level: _Any = None, wait_duration: _Any = None) -> None:
    """``wandb.run.alert(...)``: an ``alert`` event (nothing is sent anywhere)."""
    _current("alert").alert(title, text, level=level, wait_duration=wait_duration)


def save(glob_str: _Any = None, base_path: str | None = None, policy: str = "live") -> list[str]:
    """``wandb.run.save(...)``: the matching files stored as ``file`` media blobs."""
    return _current("save").save(glob_str, base_path, policy)


def mark_preempting() -> None:
    """No-op (``wandb.run.mark_preempting``)."""
    _current("mark_preempting").mark_preempting()


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run (no-op when none is live); ``exit_code`` != 0 -> failed."""
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def require(*args: _Any, **kwargs: _Any) -> None:
    """No-op (W&B's feature flags; Lightning calls ``wandb.require("service")``)."""


def login(*args: _Any, **kwargs: _Any) -> bool:
    """No-op returning True: runlake needs no account or key."""
    return True


def setup(*args: _Any, **kwargs: _Any) -> None:
    """No-op: runlake has no service process to start."""


def teardown(exit_code: int | None = None) -> None:
    """Finish every live run (W&B's teardown)."""
    for r in reversed(list(_live)):
        r.finish(exit_code=exit_code)


def log_artifact(*args: _Any, **kwargs: _Any) -> None:
    """Refused: W&B artifacts have no runlake equivalent (the error names what to use)."""
    raise Error(_types_artifacts())


use_artifact = log_artifact


def _types_artifacts() -> str:
    from runlake.wandb._run import _ARTIFACTS

    return _ARTIFACTS


Artifact = _types.refused("Artifact", "record a saved model with "
                          "wandb.run.runlake.log_checkpoint(path), a dataset with "
                          "wandb.run.runlake.log_dataset(name)")
Api = _types.refused("Api", "runlake has no server API: query the store with "
                     "runlake.query(sql) or runlake.connect()")
Object3D = _types.refused("Object3D", "log the file with "
                          "wandb.run.runlake.log_media(key, path, media='file')")
Molecule = _types.refused("Molecule", "log the file with "
                          "wandb.run.runlake.log_media(key, path, media='file')")
Plotly = _types.refused("Plotly", "log the figure as an image (wandb.Image(fig) takes a "
                        "matplotlib figure) or as HTML (wandb.Html(fig.to_html()))")
Graph = _types.refused("Graph", "runlake does not record model graphs")


_NOT_HERE = {
    "plot": "log the data as a wandb.Table (or the points as metrics) and chart them in the "
            "dashboard",
    "plot_table": "log a wandb.Table",
    "sweep": "runlake does not schedule sweeps: run your own search and log each trial",
    "agent": "runlake does not schedule sweeps: run your own search and log each trial",
    "controller": "runlake does not schedule sweeps",
    "restore": "read files from the run folder (wandb.run.dir) or the media table",
    "log_model": "record the saved model with wandb.run.runlake.log_checkpoint(path)",
    "use_model": "load the checkpoint from its path (the checkpoints table)",
    "link_model": "runlake has no model registry: tag the checkpoint "
                  "(log_checkpoint(path, tags=['best']))",
    "Classes": "log class names in the config or a wandb.Table",
    "ImageMask": "log the mask as its own wandb.Image",
    "BoundingBoxes2D": "log the boxes as a wandb.Table",
    "box3d": "log the boxes as a wandb.Table",
}


def __getattr__(name: str) -> _Any:
    """W&B names with no runlake meaning: an AttributeError that says what to do instead."""
    if name in _NOT_HERE:
        raise AttributeError(f"runlake.wandb has no {name!r}: {_NOT_HERE[name]} "
                             f"(docs/migrate.md, 'From W&B')")
    raise AttributeError(f"module 'runlake.wandb' has no attribute {name!r}")
