"""Mirroring a live run to Weights & Biases: ``runlake.init(..., wandb=True | {...})``.

Why it exists: teams that still share dashboards on W&B can keep them while runlake holds
the data. :class:`WandbMirror` is fed by the emitter's writer thread after each segment
write, like :class:`runlake.emitter.integrations.tensorboard.TensorBoardMirror`, so the
training thread never imports wandb, never waits for it and never calls into it. ``wandb``
is imported and ``wandb.init`` called at the first flush on a thread of the mirror's own
(``runlake-wandb-init``: it takes 1 s on a quiet machine, 4-8 s on a loaded one, and spawns
``wandb-core``; the writer keeps writing segments meanwhile); every later call into wandb
is made by the writer thread.

What reaches W&B, per event kind (W&B step = runlake step):

* ``metrics``: ``run.log(values, step=step)`` (``epoch`` as an ``epoch`` value); the
  ``system`` values as plain ``sys/...`` history keys at the current step (W&B's own
  system monitor and console capture are off by default: runlake samples and captures).
* ``histogram``: ``wandb.Histogram(np_histogram=(counts, edges))`` (over W&B's 512 bins,
  neighbouring bins are summed); ``media``: ``wandb.Image``/``Audio``/``Video``/``Table``
  from the blob, text as a string value, files saved into the W&B run's folder.
* ``update``: config (``allow_val_change``), summary, tags, notes, ``define_metric``
  (step metric, summary, hidden: W&B 0.31 has no ``goal``).
* ``alert``: ``run.alert``; ``run_end``: its summary, and at :meth:`WandbMirror.close` (after
  the last segment is sealed) ``finish(exit_code=0|1)``.

W&B keeps steps increasing: a value at a step below one already logged is not mirrored
(counted in :attr:`WandbMirror.skipped`, one warning). W&B's ``run.log`` costs 0.5-5 ms of
the writer thread per step (a round trip to ``wandb-core``), 1000x runlake's ``log``: so that
a fast loop can never make the writer fall behind (the segments would wait), the mirror works
at most as long as it waited (:data:`BUDGET`): a batch with more steps than that allows is
thinned to evenly spaced steps (counted, one warning); histograms, media, updates, alerts and
the summary are never thinned. A failure of wandb itself (``init`` or ``log`` raising) is
one warning and the mirror turns off; a value it cannot convert is skipped and counted. The
segments never depend on the mirror: they are written before it sees a batch and sealed
before it finishes the W&B run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

from runlake.emitter.integrations._wandb_values import MediaValues, number, rebin
from runlake.schemas.blobs import blob_path
from runlake.schemas.errors import ConfigError, RunlakeWarning
from runlake.schemas.metric_keys import system_key
from runlake.schemas.severity import severity_rank

__all__ = [
    "BUDGET",
    "INIT_TIMEOUT_S",
    "MAX_BATCH_S",
    "MAX_PENDING",
    "MIN_ROWS",
    "WANDB_INIT_ARGS",
    "WandbMirror",
    "check_option",
    "wandb_init_kwargs",
]

WANDB_INIT_ARGS = frozenset({
    "allow_val_change", "anonymous", "config", "config_exclude_keys", "config_include_keys",
    "dir", "entity", "fork_from", "force", "group", "id", "job_type", "mode", "monitor_gym",
    "name", "notes", "project", "reinit", "resume", "resume_from", "save_code", "settings",
    "sync_tensorboard", "tags", "tensorboard",
})
"""The keyword arguments of ``wandb.init`` a ``wandb={...}`` dict may hold (checked at
``runlake.init``, which must not import wandb to look them up)."""

MAX_PENDING = 100_000
"""Scalar events kept for W&B while ``wandb.init`` runs (references to written batches,
~50 MB at most); later ones are not mirrored, every other kind is kept."""
MIN_ROWS = 10
"""Steps a batch may always send (the last flushes of a run come close together)."""
MAX_BATCH_S = 1.0
"""The most seconds of W&B rows one batch may cost (a finish waits for at most that)."""
INIT_TIMEOUT_S = 30.0
"""How long ``close()`` waits for a ``wandb.init`` still running."""
BUDGET = 1.0
"""Seconds the mirror may spend handing history rows to W&B per second it waited since its
previous batch (1.0: half the writer thread's time at most; :meth:`WandbMirror._thin`)."""

_SETTINGS = {"console": "off", "x_disable_stats": True}
"""W&B settings the mirror defaults to: runlake captures the console and samples the system
(W&B's console capture would also run on the training thread at every print)."""

_LEVELS = ("INFO", "WARN", "ERROR")  # wandb.AlertLevel values, by runlake severity rank
_METRIC_ARGS = ("step_metric", "summary", "hidden")  # what define_metric takes (not "goal")


def wandb_init_kwargs(option: Any, *, project: str, name: str, run_id: str, config: dict,
                      tags: list[str], group: str | None, resumed: bool) -> dict[str, Any]:
    """The ``wandb.init`` keyword arguments for ``runlake.init(wandb=option)``.

    ``True`` mirrors into a W&B run with the run's project, name, id, config, tags and group;
    a dict's keys override those (``{"project": "team", "mode": "offline"}``).

    Raises:
        ConfigError: ``option`` is neither True nor a dict of ``wandb.init`` arguments.
    """
    out: dict[str, Any] = dict(project=project, name=name, id=run_id, config=config,
                               tags=list(tags), reinit="create_new")
    if group is not None:
        out["group"] = group
    if resumed:
        out["resume"] = "allow"
    out.update(check_option(option))
    return out


def check_option(option: Any) -> dict[str, Any]:
    """The ``wandb.init`` arguments a ``wandb=`` option overrides ({} for True).

    Raises:
        ConfigError: ``option`` is neither True nor a dict of ``wandb.init`` arguments, or
            ``import wandb`` gives ``runlake.wandb`` in this process (``install()``).
    """
    shim = _shim_message(sys.modules.get("wandb"))
    if shim:
        raise ConfigError(shim)
    if option is True:
        return {}
    if not isinstance(option, Mapping):
        raise ConfigError(f"wandb= must be True or a dict of wandb.init arguments, got {option!r}; "
                          f"pass e.g. wandb={{'project': 'team', 'mode': 'offline'}}")
    unknown = sorted(str(k) for k in option if k not in WANDB_INIT_ARGS)
    if unknown:
        raise ConfigError(f"wandb= has keys wandb.init does not take: {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(WANDB_INIT_ARGS))}")
    return dict(option)


def _shim_message(module: Any) -> str | None:
    """Why the mirror cannot use ``module`` as wandb (runlake's own surface), or None."""
    if module is None or getattr(module, "__name__", "wandb") == "wandb":
        return None
    return (f"wandb= mirrors to the real W&B, but `import wandb` gives {module.__name__} in this "
            f"process (runlake.wandb.install()): use one or the other")


class WandbMirror:
    """Forward a run's events to a W&B run, from the writer thread (see the module docstring).

    Args:
        init_kwargs: for ``wandb.init`` (:func:`wandb_init_kwargs`).
        run_dir: the run's folder, where media blobs live.
        budget: seconds of W&B rows per second waited (:data:`BUDGET`).
        max_pending: events kept while W&B starts (:data:`MAX_PENDING`).
    """

    def __init__(self, init_kwargs: Mapping[str, Any], run_dir: str | os.PathLike, *,
                 budget: float = BUDGET, max_pending: int = MAX_PENDING) -> None:
        self.init_kwargs = dict(init_kwargs)
        self.run_dir = Path(run_dir)
        self.budget = float(budget)
        self.max_pending = int(max_pending)
        self.row_cost_s = 2e-3
        """Seconds one W&B history row costs this writer thread (measured, moving average)."""
        self.run: Any = None
        """The W&B run, once ``wandb.init`` returned."""
        self.off: str | None = None
        """Why the mirror stopped (a wandb failure), or None."""
        self.skipped: Counter[str] = Counter()
        """Events or values not mirrored, by cause."""
        self._wandb: Any = None
        self._init: threading.Thread | None = None
        self._pending: list[Any] = []  # batches written while wandb.init runs
        self._since = time.monotonic()  # when the mirror last handed a batch to W&B
        self._step = 0  # the highest step logged to W&B
        self._row: dict[str, Any] = {}
        self._row_step: int | None = None
        self._media_values = MediaValues()
        self._finished = False
        self._exit_code = 0
        self._rows = 0  # history rows handed to W&B
        self._keep: set[int] | None = None  # this batch's metrics steps, when thinned

    # -- the writer thread's calls -------------------------------------------------------
    def write_events(self, events: Iterable[Any]) -> int:
        """Mirror ``events`` (one written batch); returns how many were forwarded.

        The first call starts ``wandb.init`` on a thread of its own (it takes 1-8 s: the
        writer must not wait for it to write segments); until it returns, batches are kept
        (up to :data:`MAX_PENDING` events) and handed over together.
        """
        if self.off is not None or self._finished:
            self._pending = []
            return 0
        if self._init is None:
            self._init = threading.Thread(target=self._start, name="runlake-wandb-init", daemon=True)
            self._init.start()
        if self.run is None:
            self._keep_pending(list(events))
            return 0
        if self._pending:
            events, self._pending = self._pending + list(events), []
        return self._forward(list(events))

    def _keep_pending(self, batch: list) -> None:
        """Keep ``batch`` for when W&B is up; past ``max_pending`` events only the kinds that
        are not scalar rows (updates, media, alerts, run_end...)."""
        room = self.max_pending - len(self._pending)
        if len(batch) > room:
            rest = [ev for ev in batch[max(room, 0):]
                    if ev.__struct_config__.tag not in ("metrics", "system")]
            self._skip("pending", f"more than {self.max_pending:,} events written while W&B starts: "
                                  f"the later scalars not mirrored",
                       len(batch) - max(room, 0) - len(rest))
            batch = batch[:max(room, 0)] + rest
        self._pending.extend(batch)

    def close(self) -> None:
        """Finish the W&B run with ``run_end``'s exit code (0 without one); call at run end,
        after the segments are sealed (it waits up to :data:`INIT_TIMEOUT_S` for W&B to start)."""
        if self._init is not None and self.run is None and self.off is None:
            self._init.join(INIT_TIMEOUT_S)
            if self.run is None and self.off is None:
                self._turn_off("wandb.init did not return", TimeoutError(f"{INIT_TIMEOUT_S:.0f} s"))
        if self.run is not None and not self._finished and self.off is None:
            if self._pending:
                self._forward(self._pending)
                self._pending = []
            try:
                self._commit()
                self._finished = True
                self.run.finish(exit_code=self._exit_code)
            except Exception as exc:
                self._turn_off("cannot finish the W&B run", exc)
        self._media_values.close()

    def _forward(self, events: list) -> int:
        idle = time.monotonic() - self._since
        self._keep = self._thin(events, idle)
        count, rows, t0 = 0, self._rows, time.monotonic()
        try:
            for ev in events:
                handler = self._HANDLERS.get(ev.__struct_config__.tag)
                if handler is not None and handler(self, ev) is not False:
                    count += 1
            self._commit()
        except Exception as exc:  # wandb itself failed: one warning, the mirror turns off
            self._turn_off("cannot log to W&B", exc)
        if self._rows > rows:
            spent = (time.monotonic() - t0) / (self._rows - rows)
            self.row_cost_s += 0.5 * (spent - self.row_cost_s)
        self._since = time.monotonic()
        return count

    def _thin(self, events: list, idle: float) -> set[int] | None:
        """The metrics steps of this batch to mirror (None: all of them).

        More than :data:`MIN_ROWS` steps and more than ``min(budget * idle, MAX_BATCH_S) /
        row_cost_s`` (``idle``: seconds since the mirror last handed a batch over): evenly
        spaced ones, the batch's first and last among them, the rest counted
        (``skipped["thinned"]``).
        """
        steps = list(dict.fromkeys(ev.step for ev in events if ev.__struct_config__.tag == "metrics"))
        allowed = max(MIN_ROWS, int(min(self.budget * idle, MAX_BATCH_S) / self.row_cost_s))
        if len(steps) <= allowed:
            return None
        last = len(steps) - 1
        keep = {steps[round(i * last / (allowed - 1))] for i in range(allowed)}
        self._skip("thinned", f"{len(steps):,} steps in {idle:.2f} s, more than W&B takes at "
                              f"{self.row_cost_s * 1e3:.2f} ms a row in half the writer's time: "
                              f"{len(keep):,} evenly spaced steps mirrored, the segments keep "
                              f"every step", len(steps) - len(keep))
        return keep

    # -- starting and failing ------------------------------------------------------------
    def _start(self) -> None:
        """``import wandb`` and ``wandb.init``, on the mirror's init thread."""
        kwargs = dict(self.init_kwargs)
        before = sys.excepthook, sys.exit
        try:
            import wandb

            shim = _shim_message(wandb)
            if shim:
                raise RuntimeError(shim)
            settings = kwargs.get("settings")
            if settings is None or isinstance(settings, Mapping):
                kwargs["settings"] = wandb.Settings(**{**_SETTINGS, **(settings or {})})
            self._wandb = wandb
            run = wandb.init(**kwargs)
        except Exception as exc:
            self._turn_off("wandb.init failed", exc)
            return
        finally:
            # wandb-core's first start hooks sys.excepthook and sys.exit (for its exit code):
            # runlake's own hooks end the run and pass finish() its exit code, so put them back.
            sys.excepthook, sys.exit = before
        self.run = run

    def _turn_off(self, what: str, exc: BaseException) -> None:
        self.off = f"{what}: {exc!r}"
        self._pending = []
        hint = " (pip install 'runlake[interop]')" if isinstance(exc, ImportError) else ""
        warnings.warn(f"runlake: the W&B mirror is off: {self.off}{hint}; the run and its "
                      f"segments are unaffected", RunlakeWarning, stacklevel=2)

    def _skip(self, cause: str, message: str, n: int = 1) -> bool:
        if not self.skipped[cause]:
            warnings.warn(f"runlake: W&B mirror: {message} (not mirrored; warned once, counted "
                          f"in the mirror's skipped[{cause!r}])", RunlakeWarning, stacklevel=2)
        self.skipped[cause] += n
        return False

    # -- history rows ------------------------------------------------------------------------
    def _put(self, step: int | None, values: Mapping[str, Any]) -> bool:
        """Add ``values`` to W&B's row at ``step`` (None: the current row)."""
        current = self._row_step if self._row_step is not None else self._step
        if step is None:
            step = current
        if step < current:
            return self._skip("step_backwards", f"a value at step {step} after step {current} "
                                                f"(W&B keeps steps increasing)")
        if step != self._row_step:
            self._commit()
            self._row_step = step
        for key, value in values.items():
            prev = self._row.get(key)
            if isinstance(prev, self._wandb.data_types.WBValue) and type(prev) is type(value):
                value = [prev, value]  # two images under one key at one step: W&B shows both
            elif isinstance(prev, list) and prev and type(prev[0]) is type(value):
                value = prev + [value]
            self._row[key] = value
        return True

    def _commit(self) -> None:
        """Hand the pending row to W&B (it stays open in W&B until a later step)."""
        if self._row and self._row_step is not None:
            self.run.log(self._row, step=self._row_step)
            self._step = self._row_step
            self._rows += 1
        self._row = {}

    # -- one handler per event kind --------------------------------------------------------
    def _metrics(self, ev: Any) -> bool:
        if self._keep is not None and ev.step not in self._keep:
            return False
        values = {k: x for k, v in ev.values.items() if (x := number(v)) is not None}
        if ev.epoch is not None and "epoch" not in values:
            values["epoch"] = ev.epoch
        return bool(values) and self._put(ev.step, values)

    def _system(self, ev: Any) -> bool:
        values = {system_key(k): x for k, v in ev.values.items() if (x := number(v)) is not None}
        current = self._row_step if self._row_step is not None else self._step
        return bool(values) and self._put(ev.step if ev.step is not None and ev.step >= current
                                          else None, values)

    def _histogram(self, ev: Any) -> bool:
        edges, counts = rebin(list(ev.edges), list(ev.counts))
        try:
            value = self._wandb.Histogram(np_histogram=(counts, edges))
        except Exception as exc:
            return self._skip("bad_histogram", f"histogram {ev.key!r}: {exc}")
        return self._put(ev.step, {ev.key: value})

    def _media(self, ev: Any) -> bool:
        path = blob_path(self.run_dir, ev.sha256)
        if not path.is_file():
            return self._skip("media_missing", f"the blob of {ev.key!r} is not at {path}")
        try:
            value = self._media_values.convert(self._wandb, self.run, ev, path)
        except Exception as exc:
            return self._skip(f"media_{ev.media}", f"cannot convert {ev.media} {ev.key!r}: {exc!r}")
        return value is None or self._put(ev.step, {ev.key: value})

    def _update(self, ev: Any) -> bool:
        run = self.run
        if ev.config:
            run.config.update(ev.config, allow_val_change=True)
        if ev.summary:
            run.summary.update(ev.summary)
        if ev.tags is not None:
            run.tags = tuple(ev.tags)
        if ev.notes is not None:
            run.notes = ev.notes
        for name, spec in ev.metrics.items():
            try:
                run.define_metric(name, **{k: spec[k] for k in _METRIC_ARGS if k in spec})
            except Exception as exc:
                self._skip("bad_metric", f"define_metric({name!r}): {exc}")
        return True

    def _alert(self, ev: Any) -> bool:
        text = ev.message + (f"\n{ev.suggestion}" if ev.suggestion else "")
        title = ev.alert if ev.key is None else f"{ev.alert}: {ev.key}"
        try:
            self.run.alert(title=title, text=text, level=_LEVELS[severity_rank(ev.severity)])
        except Exception as exc:  # W&B refuses some alerts (offline, rate limits): not fatal
            return self._skip("alert", f"cannot raise the alert {title!r}: {exc!r}")
        return True

    def _run_end(self, ev: Any) -> bool:
        self._commit()
        if ev.summary:
            self.run.summary.update(ev.summary)
        self._exit_code = 0 if ev.status == "finished" else 1  # finished in close(), after the seal
        return True

    _HANDLERS = {"metrics": _metrics, "system": _system, "histogram": _histogram,
                 "media": _media, "update": _update, "alert": _alert, "run_end": _run_end}
