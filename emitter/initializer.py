"""``runlake.init``: validate the setup once, then start a run and its writer thread.

Everything that can be wrong with the setup - an unwritable root, a name that would escape
it, a config that is not JSON, an unknown option - fails here with a clear error, before
training starts. After ``init()`` returns, emitter problems never raise into training
(they become warnings and counted drops).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from runlake.emitter.capture import capture_setting
from runlake.emitter.console import console_interval
from runlake.emitter.environment import git_info, host_info, new_run_id, ranks, run_id_from_env
from runlake.emitter.jsonable import jsonable
from runlake.emitter.resume import ResumePoint, find_latest_run, resume_point
from runlake.emitter.run import Run
from runlake.emitter.sink import FSYNC_POLICIES, FileSink, active_capture
from runlake.emitter.system import SystemSampler
from runlake.emitter.values import describe, truncate, user_stacklevel
from runlake.emitter.wiring import WriterSetup, mirrors
from runlake.schemas.errors import ConfigError, RootError, RunlakeWarning, RunNotFoundError
from runlake.schemas.objects import is_url
from runlake.schemas.segments import check_name, new_writer_id, resolve_root

__all__ = ["init"]

_SAFE = re.compile(r"[^A-Za-z0-9._=+-]")


def _name(value: Any, what: str) -> str:
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise RootError(str(exc)) from None


def _positive(value: Any, what: str, *, allow_zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}") from None
    if not (x > 0 or (allow_zero and x == 0)):
        raise ConfigError(f"{what} must be > 0, got {value!r}")
    return x


def _config(config: Any, strict: bool) -> dict:
    """The config as a JSON object; strict=False repairs (and warns once per cause)."""
    warned: set[str] = set()

    def fix(cause: str, message: str) -> None:
        if cause not in warned:
            warned.add(cause)
            warnings.warn(f"runlake: {message}", RunlakeWarning, stacklevel=user_stacklevel())

    out = jsonable({} if config is None else config, strict=strict, what="config", on_fix=fix)
    if isinstance(out, dict):
        return out
    message = f"config must be a mapping (or dataclass/namespace), got {describe(config)}"
    if strict:
        raise ConfigError(f"{message}; pass e.g. config={{'lr': 3e-4}}")
    fix("config", f"{message}; stored under the key 'value'")
    return {"value": out}


def _spool_settings(root: Any):
    """The spool settings when the root (``root=``, else ``$RUNLAKE_DIR``) is an ``s3://``
    URL, else None. Only then is :mod:`runlake.emitter.upload` imported (boto3 later, on
    its uploader thread)."""
    given = root if root is not None else os.environ.get("RUNLAKE_DIR")
    if isinstance(given, os.PathLike) and os.fspath(given).startswith("s3:/"):
        raise RootError(f"root={given!r}: a Path cannot hold a URL (it keeps one '/'); pass "
                        f"the s3://bucket/prefix URL as a string")
    if not isinstance(given, str) or not is_url(given):
        return None
    from runlake.emitter.upload import spool_settings

    return spool_settings(given)


def _check_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RootError(
            f"cannot create the storage root {root}: {exc.strerror or exc}; pass root= or set "
            f"RUNLAKE_DIR to a writable directory"
        ) from None
    if not root.is_dir():
        raise RootError(f"storage root {root} exists but is not a directory; pass another root=")
    probe = root / f".runlake-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RootError(
            f"storage root {root} is not writable ({exc.strerror or exc}); pass root= or set "
            f"RUNLAKE_DIR to a writable directory"
        ) from None


def init(
    project: str = "default",
    name: str | None = None,
    *,
    config: Mapping[str, Any] | Any = None,
    tags: Iterable[str] = (),
    group: str | None = None,
    root: str | os.PathLike | None = None,
    run_id: str | None = None,
    resume: bool | str = False,
    flush_interval: float = 1.0,
    strict: bool = True,
    fsync: str = "flush",
    total_steps: int | None = None,
    heartbeat_interval: float = 10.0,
    system_interval: float = 10.0,
    console: bool | float | None = None,
    capture_logging: bool = True,
    capture_console: bool | None = None,
    online_checks: bool = True,
    rotate_bytes: int = 64 << 20,
    rotate_seconds: float = 3600.0,
    sink: Any = None,
    tensorboard: bool | str | os.PathLike = False,
    wandb: bool | Mapping[str, Any] = False,
) -> Run:
    """Start a run (or resume one) and its background writer.

    Args:
        project: folder under the root grouping runs.
        name: display name (default: the run id); may repeat across runs.
        config: hyperparameters (a mapping, dataclass or argparse namespace; JSON-able).
        root: storage root (default ``$RUNLAKE_DIR``, else ``./runlake-data``); an
            ``s3://bucket/prefix`` URL spools segments locally and uploads them from a
            background thread (:mod:`runlake.emitter.upload`; ``run.root`` is the spool).
        run_id: shared by every rank of one run (default: ``$RUNLAKE_RUN_ID``, then
            ``$TORCHELASTIC_RUN_ID``, else a new time-sortable id).
        resume: False; True (resume ``run_id``, else the latest run of this project with
            this name, else start fresh); or a run id that must exist. A resumed attempt
            keeps the run's name, group, config and tags unless they are passed again.
        flush_interval: seconds between flushes (one zstd frame each).
        strict: raise on bad values (default) or drop and count them.
        fsync: "flush" (every flush), "rotate" (when sealing) or "never".
        total_steps: enables ETA in heartbeats and the console block.
        heartbeat_interval, system_interval: seconds between heartbeat / system events
            (0 disables the system sampler).
        console: None (progress block every 30 s if stderr is a TTY), seconds, or False.
        capture_logging: forward Python logging records to ``log`` events while live.
        capture_console: tee stdout/stderr into ``log`` events (``console.stdout`` /
            ``console.stderr``) while live; None = on unless ``RUNLAKE_CAPTURE_CONSOLE=0``
            (:mod:`runlake.emitter.capture`).
        online_checks: NaN/Inf and exploding-loss alerts, evaluated per flush.
        rotate_bytes, rotate_seconds: seal the open segment past this size / age.
        tensorboard: also mirror metrics and system values into TensorBoard event files:
            True = ``<root>/tensorboard/<project>``, or a log directory; each run writes
            to ``<logdir>/<name>-<run id>`` (needs the ``tensorboard`` package).
        wandb: also mirror the run to a W&B run from the writer thread (rank 0 only):
            True = the run's project, name, id, config and tags; or a dict of
            ``wandb.init`` arguments overriding those (``{"project": "team"}``; needs the
            ``wandb`` package: :mod:`runlake.emitter.integrations.wandb_mirror`).
        sink: where events go; None = segment files under the root (tests pass a
            :class:`runlake.emitter.sink.MemorySink`).

    Returns:
        The live :class:`Run`, also the module-level current run.

    Raises:
        RootError: the root is not a writable directory, or project/run_id would escape it.
        ConfigError: an invalid option, or (strict) a config that is not JSON-able.
        RunNotFoundError: ``resume`` names a run that does not exist.
    """
    if fsync not in FSYNC_POLICIES:
        raise ConfigError(f"fsync must be one of {FSYNC_POLICIES}, got {fsync!r}")
    flush_interval = _positive(flush_interval, "flush_interval")
    heartbeat_interval = _positive(heartbeat_interval, "heartbeat_interval")
    system_interval = _positive(system_interval, "system_interval", allow_zero=True)
    rotate_seconds = _positive(rotate_seconds, "rotate_seconds")
    if not isinstance(rotate_bytes, int) or rotate_bytes <= 0:
        raise ConfigError(f"rotate_bytes must be a positive int, got {rotate_bytes!r}")
    if total_steps is not None and (not isinstance(total_steps, int) or total_steps < 0):
        raise ConfigError(f"total_steps must be a non-negative int or None, got {total_steps!r}")
    capture_console = capture_setting(capture_console)
    if not isinstance(resume, (bool, str)):
        raise ConfigError(f"resume must be False, True or a run id, got {resume!r}")
    if tensorboard is not False and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard= needs the tensorboard package: pip install 'runlake[tensorboard]'")
    if wandb is not False and importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb= needs the wandb package: pip install 'runlake[interop]'")
    if wandb is not False:
        from runlake.emitter.integrations.wandb_mirror import check_option

        check_option(wandb)
    project = _name(project, "project")
    config_json = _config(config, strict)
    tags = [str(t) for t in ([tags] if isinstance(tags, str) else tags)]
    tags_given = bool(tags)
    r = ranks()
    spool = _spool_settings(root)
    if spool is not None:
        if resume:
            raise ConfigError(f"resume= needs a local root for now (root is {spool.url}); pass "
                              f"run_id= to add this process's writer to an existing run")
        if tensorboard is True:
            raise ConfigError(f"tensorboard=True writes under the root, which is {spool.url}: "
                              f"pass tensorboard='<local log directory>'")
    root_path = resolve_root(root).absolute() if spool is None else spool.spool
    sink = sink if sink is not None else active_capture()
    on_disk = sink is None
    if on_disk:
        _check_root(root_path)

    if isinstance(resume, str):
        run_id = resume
    run_id = run_id or run_id_from_env()
    if resume and run_id is None and name is not None and on_disk:
        run_id = find_latest_run(root_path / project, name)
    if run_id is not None:
        run_id = _name(run_id, "run_id")
    point = ResumePoint(0, None, 0, None)
    if resume and run_id is not None:
        run_dir = root_path / project / run_id
        if on_disk and run_dir.is_dir():
            point = resume_point(run_dir, r.rank)
        elif isinstance(resume, str):
            raise RunNotFoundError(
                f"cannot resume run {run_id!r}: no folder {run_dir}; check the id and root "
                f"(pass resume=True to start a fresh run when none exists)"
            )
    run_id = run_id or new_run_id()
    if name is None:
        name = point.name or run_id
    if group is None:
        group = point.group
    if config is None and point.config:
        config_json = point.config  # a resumed attempt keeps the run's config unless given anew
    if not tags_given:
        tags = list(point.tags)
    if not isinstance(name, str) or not name or len(name) > 256 or "\n" in name:
        raise ConfigError(f"name must be a one-line string of 1-256 characters, got {name!r}")

    writer_id = new_writer_id(r.rank, point.attempt)
    run_dir = root_path / project / run_id
    if on_disk:
        if spool is None:
            sink = FileSink(run_dir / writer_id, root=root_path, fsync=fsync,
                            rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds)
        else:
            from runlake.emitter.upload import SpoolSink, Uploader

            sink = SpoolSink(run_dir / writer_id, root=root_path, settings=spool,
                             uploader=Uploader(spool, run_dir / writer_id), fsync=fsync,
                             rotate_bytes=rotate_bytes, rotate_seconds=rotate_seconds)
        try:
            sink.open()
        except OSError as exc:
            raise RootError(
                f"cannot create segment in {run_dir / writer_id}: {exc.strerror or exc}") from None
    mirror = None
    if tensorboard is not False:
        from runlake.emitter.integrations.tensorboard import TensorBoardMirror

        logdir = root_path / "tensorboard" / project if tensorboard is True else Path(tensorboard)
        mirror = TensorBoardMirror(logdir, f"{_SAFE.sub('_', name)}-{run_id}", r.rank, run_dir=run_dir)
    if wandb is not False and r.rank == 0:
        from runlake.emitter.integrations.wandb_mirror import WandbMirror, wandb_init_kwargs

        mirror = mirrors(mirror, WandbMirror(wandb_init_kwargs(
            wandb, project=project, name=name, run_id=run_id, config=config_json, tags=tags,
            group=group, resumed=point.attempt > 0), run_dir))
    setup = WriterSetup(
        sink=sink, flush_interval=flush_interval, online_checks=online_checks,
        heartbeat_interval=heartbeat_interval,
        sampler=SystemSampler() if system_interval else None, system_interval=system_interval,
        console_interval=console_interval(console), mirror=mirror,
        capture_logging=capture_logging, capture_console=capture_console,
    )
    start = dict(
        project=project, name=name, group=None if group is None else str(group),
        config=config_json, tags=tags, git=git_info(), host=host_info(),
        argv=[truncate(a, 4096) for a in sys.argv], world_size=r.world_size,
        local_rank=r.local_rank, attempt=point.attempt, resumed_from=point.resumed_from,
        start_step=point.start_step, total_steps=total_steps, heartbeat_s=heartbeat_interval,
    )
    return Run(run_id=run_id, name=name, project=project, root=root_path, writer=writer_id,
               rank=r.rank, world_size=r.world_size, attempt=point.attempt,
               start_step=point.start_step, total_steps=total_steps, strict=strict,
               setup=setup, start=start)
