"""``wandb.init`` -> ``runlake.init``: every W&B argument mapped, recorded or refused.

The mapping (docs/migrate.md "From W&B" shows it as a table):

* ``project`` (else ``$WANDB_PROJECT``, else ``uncategorized``, W&B's default), ``name``,
  ``group`` (``$WANDB_RUN_GROUP``), ``tags`` (``$WANDB_TAGS``), ``config`` -> the same
  runlake arguments; ``id`` (``$WANDB_RUN_ID``) -> ``run_id``.
* ``notes`` (``$WANDB_NOTES``) -> an ``update`` event right after the start.
* ``dir`` (``$WANDB_DIR``): W&B writes ``<dir>/wandb/``; runlake writes ``<dir>/runlake-data``
  unless ``$RUNLAKE_DIR`` (or ``root=``, a runlake extra) says where the root is.
* ``mode`` (``$WANDB_MODE``; ``$WANDB_DISABLED``): ``"disabled"`` -> a run object with the
  same API that records nothing; ``"online"``, ``"offline"``, ``"shared"`` -> the same local
  run (runlake never uploads; mirror to W&B with ``runlake.init(wandb=True)``).
* ``resume`` (``$WANDB_RESUME``): ``"allow"``/``True``/``"auto"`` resume ``id`` when that run
  exists, else start it; ``"must"`` needs ``id`` and an existing run (else
  ``RunNotFoundError``); ``"never"`` refuses an ``id`` that exists; ``True``/``"auto"``
  without ``id`` resume the latest run of the project with this ``name``.
* ``reinit``: ``True``/``"finish_previous"`` finish the live run first; ``"create_new"``
  keeps it live beside the new one; ``False``/``"return_previous"``/``"default"``/None
  return the live run (W&B's script default).
* ``entity``, ``job_type``, ``save_code``, ``monitor_gym`` are recorded under the config
  key ``_wandb``; ``allow_val_change`` is the config's default; ``config_exclude_keys`` /
  ``config_include_keys`` filter the config; ``settings``, ``magic``, ``anonymous``,
  ``force``, ``tensorboard=False``, ``sync_tensorboard=False`` are accepted and ignored.
* Refused, naming the alternative: ``sync_tensorboard=True``/``tensorboard=True``,
  ``resume_from``, ``fork_from``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from runlake.emitter.initializer import init as _runlake_init
from runlake.emitter.resume import writer_dirs
from runlake.emitter.sink import active_capture
from runlake.schemas.errors import ConfigError
from runlake.wandb._config import Config, as_mapping
from runlake.wandb._errors import Error

__all__ = ["MODES", "RESUMES", "start"]

MODES = ("online", "offline", "shared", "disabled", "dryrun", "run")
RESUMES = (True, False, None, "allow", "must", "never", "auto")
_REINIT = (None, True, False, "default", "return_previous", "finish_previous", "create_new")


def _env_tags() -> list[str]:
    return [t.strip() for t in os.environ.get("WANDB_TAGS", "").split(",") if t.strip()]


def _root(root: Any, dir: Any) -> Any:
    if root is not None or os.environ.get("RUNLAKE_DIR"):
        return root
    dir = dir if dir is not None else os.environ.get("WANDB_DIR")
    return None if dir is None else Path(dir) / "runlake-data"


def _mode(mode: Any) -> str:
    if mode is None:
        mode = os.environ.get("WANDB_MODE") or None
    if mode is None and os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
        mode = "disabled"
    mode = "online" if mode is None else str(mode)
    if mode not in MODES:
        raise Error(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return "disabled" if mode == "disabled" else "offline" if mode == "dryrun" else mode


def _resume(resume: Any, run_id: str | None, project_dir: Path | None) -> bool | str:
    """W&B's resume value as runlake's ``resume=`` (False, True or a must-exist run id)."""
    if resume is None:
        resume = os.environ.get("WANDB_RESUME") or False
    if resume not in RESUMES:
        raise Error(f"resume must be one of 'allow', 'must', 'never', 'auto', True or False; "
                    f"got {resume!r}")
    if resume == "must":
        if run_id is None:
            raise Error("resume='must' needs the run's id: wandb.init(id=..., resume='must')")
        return run_id
    if resume == "never":
        if run_id is not None and project_dir is not None and writer_dirs(project_dir / run_id):
            raise Error(f"resume='never' but run {run_id!r} already exists in {project_dir}; "
                        f"pass another id or resume='allow'")
        return False
    if resume in ("allow",) and run_id is None:
        return False
    return bool(resume)


def start(*, entity: Any = None, project: Any = None, dir: Any = None, id: Any = None,
          name: Any = None, notes: Any = None, tags: Iterable[str] | None = None,
          config: Any = None, config_exclude_keys: Iterable[str] | None = None,
          config_include_keys: Iterable[str] | None = None, allow_val_change: bool | None = None,
          group: Any = None, job_type: Any = None, mode: Any = None, resume: Any = None,
          save_code: Any = None, monitor_gym: Any = None, tensorboard: Any = None,
          sync_tensorboard: Any = None, resume_from: Any = None, fork_from: Any = None,
          root: Any = None, runlake: dict[str, Any] | None = None,
          **ignored: Any) -> tuple[Any, Config, dict[str, Any]]:
    """Start the runlake run for ``wandb.init``; returns ``(runlake run or None when
    disabled, its Config, the facts the W&B run object keeps)``."""
    if sync_tensorboard or tensorboard:
        raise Error("sync_tensorboard has no runlake equivalent: import TensorBoard files with "
                    "`runlake import tensorboard LOGDIR`, or mirror into TensorBoard with "
                    "runlake.init(tensorboard=True)")
    if resume_from is not None or fork_from is not None:
        raise Error("resume_from/fork_from (rewinding or forking a run at a step) have no runlake "
                    "equivalent: resume the run with wandb.init(id=..., resume='allow'), or "
                    "start a new run")
    mode = _mode(mode)
    values = as_mapping(config)
    if config_include_keys:
        values = {k: v for k, v in values.items() if k in set(config_include_keys)}
    if config_exclude_keys:
        values = {k: v for k, v in values.items() if k not in set(config_exclude_keys)}
    job_type = job_type if job_type is not None else os.environ.get("WANDB_JOB_TYPE")
    meta = {k: v for k, v in (("entity", entity if entity is not None else
                                os.environ.get("WANDB_ENTITY")), ("job_type", job_type),
                               ("save_code", save_code), ("monitor_gym", monitor_gym),
                               ("mode", mode)) if v is not None}
    facts = dict(entity=meta.get("entity"), job_type=job_type, mode=mode,
                 notes=notes if notes is not None else os.environ.get("WANDB_NOTES"))
    cfg = Config(values, allow_val_change=bool(allow_val_change))
    if mode == "disabled":
        return None, cfg, dict(facts, resumed=False)
    project = project if project is not None else os.environ.get("WANDB_PROJECT", "uncategorized")
    run_id = id if id is not None else os.environ.get("WANDB_RUN_ID")
    group = group if group is not None else os.environ.get("WANDB_RUN_GROUP")
    tags = list(tags) if tags is not None else _env_tags()
    root = _root(root, dir)
    on_disk = active_capture() is None and not (runlake or {}).get("sink")
    project_dir = None
    if on_disk:
        from runlake.schemas.segments import resolve_root

        project_dir = resolve_root(root).absolute() / str(project) if not _is_url(root) else None
    rl_resume = _resume(resume, run_id, project_dir)
    try:
        rl = _runlake_init(project=project, name=name, config={**values, "_wandb": meta},
                           tags=tags, group=group, root=root, run_id=run_id, resume=rl_resume,
                           **(runlake or {}))
    except TypeError as exc:
        raise ConfigError(f"wandb.init(runlake=...): {exc}") from None
    cfg = Config(values, allow_val_change=bool(allow_val_change),
                 emit=lambda changes: rl.update(config=changes))
    if facts["notes"] is not None:
        rl.update(notes=str(facts["notes"]))
    return rl, cfg, dict(facts, resumed=rl.attempt > 0)


def _is_url(root: Any) -> bool:
    return isinstance(root, str) and "://" in root
