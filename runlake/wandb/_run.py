"""``wandb.Run`` over a runlake :class:`~runlake.Run`: W&B's step, summary and config rules.

Steps, exactly as W&B 0.31 counts them (``_step``; runlake's ``step`` is the same number):
``log(d)`` adds ``d`` to the current row and commits it (the step moves on by one);
``log(d, commit=False)`` only adds; ``log(d, step=s)`` with ``s`` above the current step
first commits the pending row at the current step, then makes ``s`` current and adds
``d`` without committing (``commit=True`` commits it); ``s`` below the current step is
dropped with a warning (W&B's message and rule). A committed row is one ``metrics`` event
at its step; the last pending row is committed by ``finish()`` (and at interpreter exit or
on an uncaught exception).

Values: numbers (and numpy/torch scalars) are metrics; nested dicts are flattened with
``"."`` (W&B stores the path and shows ``a.b``); ``Histogram``/``Image``/``Audio``/
``Video``/``Table``/``Html`` become ``histogram``/``media`` events at the current step, as
does a list of media; numpy/torch arrays of more than 32 values become a 32-bucket
histogram (W&B's rule), smaller ones and every other value (text, lists, None) are kept in
the summary only, with one warning per key (runlake's metrics are numbers).

Hot path (:meth:`WandbRun._make_log`): ``log(d)`` of floats under keys already seen with
no ``define_metric`` rule and no pending row is one C-level subset test, one ``sum``, one
``Run.log`` call and one ``dict.update`` of the summary's last values. Everything else goes
through :meth:`WandbRun._log_slow` once per call; which keys a rule matches is cached
(:class:`~runlake.wandb._rules.Rules`), never matched per call.
"""

from __future__ import annotations

import glob as _glob
import os
import warnings
from typing import Any, Callable, Mapping

from runlake.emitter.values import is_tensor, tensor_item, user_stacklevel
from runlake.schemas.errors import RunlakeWarning
from runlake.schemas.severity import severity_from_level
from runlake.wandb._config import Config
from runlake.wandb._errors import Error
from runlake.wandb._rules import Aggregate, Rule, Rules, parse_rule
from runlake.wandb._summary import Summary, SummaryState, recorded
from runlake.wandb._types import Histogram, Media

__all__ = ["WandbRun"]

_ARTIFACTS = ("W&B artifacts have no runlake equivalent: record a saved model with "
              "run.runlake.log_checkpoint(path) or a dataset with run.runlake.log_dataset(name)")


class WandbRun:
    """What ``wandb.init()`` returns: ``log``, ``config``, ``summary``, ``define_metric``,
    ``watch``, ``alert``, ``finish``... over a live runlake run (``run.runlake``)."""

    log: Callable[..., None]

    def __init__(self, rl: Any, *, config: Config, entity: str | None, job_type: str | None,
                 notes: str | None, mode: str, resumed: bool, tags: Any = (),
                 on_finish: Callable[["WandbRun"], None] | None = None) -> None:
        self.runlake = rl
        self._tags = tuple(str(t) for t in (tags or ()))  # init's: already in run_start
        self.entity, self.job_type, self.mode, self.resumed = entity, job_type, mode, resumed
        self._notes = notes
        self.config = config
        self._state = SummaryState()
        self.summary = Summary(self._state, self._summary_set)
        self._rules = Rules()
        self._plain: set[str] = set()
        self._pending: dict[str, Any] = {}
        self._plain_pending = True  # the pending row holds plain keys only, no summary is dirty
        self._hold = False  # a pending row or explicit summary values: log() takes the slow path
        self._cur = rl.step + 1
        self._warned: set[str] = set()
        self._watches: list[Any] = []
        self._finished = False
        self._on_finish = on_finish
        self.log = self._make_log()

    # -- identity ----------------------------------------------------------------------------
    id = property(lambda self: self.runlake.id)
    project = property(lambda self: self.runlake.project)
    group = property(lambda self: getattr(self.runlake, "group", None))
    dir = property(lambda self: str(self.runlake.dir))
    url = property(lambda self: None, doc="None: runlake runs are local (see the dashboard)")
    offline = property(lambda self: True)
    disabled = property(lambda self: self.mode == "disabled")
    step = property(lambda self: self._cur, doc="W&B's current step (``_step`` of the next row)")

    @property
    def name(self) -> str:
        return self.runlake.name

    @name.setter
    def name(self, value: str) -> None:
        raise Error("runlake names a run once, at start: pass wandb.init(name=...) instead of "
                    "setting run.name")

    @property
    def path(self) -> str:
        return f"{self.entity or 'local'}/{self.project}/{self.id}"

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str) -> None:
        self._notes = str(value)
        self.runlake.update(notes=self._notes)

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: Any) -> None:
        self._tags = tuple(str(t) for t in value)
        self.runlake.update(tags=list(self._tags))

    # -- log ---------------------------------------------------------------------------------
    def _make_log(self) -> Callable[..., None]:
        run = self
        rl = self.runlake
        plain = self._plain.issuperset
        last_update = self._state.values.update
        slow = self._log_slow
        _float, _dict, _int = float, dict, int

        def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
            """Log a row of values at W&B's current step (module docstring: the rules)."""
            if step is None and commit is None and not run._hold and data.__class__ is _dict \
                    and plain(data):
                try:
                    s = sum(data.values(), 0.0)
                except Exception:
                    s = None
                if s.__class__ is _float:
                    cur = run._cur
                    rl.log(data, cur)
                    self._cur = cur + 1
                    last_update(data)
                    return
            elif step.__class__ is _int and step > run._cur and commit is None \
                    and run._plain_pending and data.__class__ is _dict and plain(data):
                try:  # log(d, step=s), s rising: commit the pending row, d becomes pending
                    s = sum(data.values(), 0.0)
                except Exception:
                    s = None
                if s.__class__ is _float:
                    pending = run._pending
                    if pending:
                        rl.log(pending, run._cur)
                        last_update(pending)
                    self._pending = data.copy()
                    self._cur = step
                    self._hold = True
                    return
            slow(data, step, commit)

        return log

    def _log_slow(self, data: Any, step: Any, commit: Any) -> None:
        if self._finished:
            raise Error(f"run {self.id} is finished; start another with wandb.init()")
        if not isinstance(data, Mapping):
            raise TypeError("wandb.log must be passed a dictionary")
        if any(not isinstance(k, str) for k in data):
            raise TypeError("Key values passed to `wandb.log` must be strings.")
        if step is not None:
            step = _as_step(step)
            if step < self._cur:
                warnings.warn(f"wandb: Tried to log to step {step} that is less than the current "
                              f"step {self._cur}. Steps must be monotonically increasing, so "
                              f"this data will be ignored.", RunlakeWarning,
                              stacklevel=user_stacklevel())
                return
            if step > self._cur:
                self._commit(advance=False)
                self._cur = step
        self._merge(self._pending, data, "")
        if (step is None and commit is None) or commit:
            self._commit(advance=True)
        self._hold = bool(self._pending or self._state.dirty)
        self._plain_pending = not self._state.dirty and self._plain.issuperset(self._pending)

    def _merge(self, row: dict[str, Any], data: Mapping[str, Any], prefix: str) -> None:
        values = self._state.values
        for k, v in data.items():
            key = prefix + k
            cls = v.__class__
            if cls is float or cls is int or cls is bool:
                row[key] = v
            elif isinstance(v, Media):
                values[key] = v._log(self.runlake, key, self._cur)
            elif isinstance(v, Mapping):
                self._merge(row, v, key + ".")
            elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Media) for x in v):
                values[key] = [x._log(self.runlake, key, self._cur) for x in v]
            elif is_tensor(v) or (hasattr(v, "shape") and hasattr(v, "tolist")):
                size = getattr(v, "size", None)
                n = size() if callable(size) else size
                n = n if isinstance(n, int) else getattr(v, "numel", lambda: 1)()
                if n == 1:
                    row[key] = tensor_item(v)
                elif n > 32:
                    values[key] = Histogram(v, num_bins=32)._log(self.runlake, key, self._cur)
                else:
                    self._non_metric(key, v.tolist())
            elif isinstance(v, (int, float)):  # subclasses: IntEnum, numpy.float64
                row[key] = float(v)
            else:
                self._non_metric(key, v)

    def _non_metric(self, key: str, value: Any) -> None:
        self._state.set(key, value)
        self._state.dirty.pop(key, None)  # a logged value, not an explicit one: run_end has it
        self._state.pinned.discard(key)
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"runlake.wandb: {key!r} is a {type(value).__name__}, not a number: "
                          f"kept in the summary only (runlake's metrics are numbers; log text "
                          f"with run.runlake.log_media(key, text, media='text'))", RunlakeWarning,
                          stacklevel=user_stacklevel())

    def _commit(self, *, advance: bool) -> None:
        row = self._pending
        if row:
            self._pending = {}
            rules, state = self._rules, self._state
            if rules:
                for key in list(row):
                    rule = rules.rule(key)
                    if rule is None:
                        continue
                    sm = rule.step_metric
                    if rule.step_sync and sm not in row and sm in state.values:
                        row[sm] = state.values[sm]
                    if rule.summary:
                        self._aggregate(key, rule, row[key])
            self.runlake.log(row, self._cur)
            state.values.update(row)
            self._plain.update(k for k in row if rules.rule(k) is None) if rules else \
                self._plain.update(row)
        if advance:
            self._cur += 1
        if self._state.dirty:
            self._flush_summary()

    def _aggregate(self, key: str, rule: Rule, value: Any) -> None:
        state = self._state
        state.pinned.discard(key)
        if "none" in rule.summary:
            state.dropped.add(key)
            return
        state.dropped.discard(key)
        agg = state.aggs.get(key)
        if agg is None or agg.ops != rule.summary:
            agg = state.aggs[key] = Aggregate(rule.summary)
        agg.add(float(value))

    def _summary_set(self) -> None:
        self._plain_pending = False
        self._hold = True  # the next log() writes the explicit values (one update event)

    def _flush_summary(self) -> None:
        dirty, self._state.dirty = self._state.dirty, {}
        if dirty:
            self.runlake.update(summary=recorded(dirty))

    # -- define_metric, watch, alert, save ---------------------------------------------------
    def define_metric(self, name: str, step_metric: Any = None, step_sync: bool | None = None,
                      hidden: bool | None = None, summary: str | None = None,
                      goal: str | None = None, overwrite: bool | None = None) -> Rule:
        """Declare how a metric (or a ``"prefix*"`` glob) is read: x axis, summary, hidden.

        Returns the rule (``.name``, ``.step_metric``, ``.summary``...); recorded as an
        ``update`` event's ``metrics``.
        """
        rule = parse_rule(name, step_metric, step_sync, summary, goal, hidden,
                          self._rules.by_name.get(name), overwrite)
        self._rules.add(rule)
        self._plain.clear()  # which keys are plain is decided again, once per key
        self._plain_pending = not self._pending
        self.runlake.update(metrics={rule.name: rule.as_event()})
        return rule

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        """``runlake.torch.watch`` on each model: gradient/weight statistics every
        ``log_freq`` optimizer steps, with histograms unless ``log=None``; at W&B's step."""
        if log_graph:
            raise Error("watch(log_graph=True): runlake does not record model graphs; drop "
                        "the argument")
        if log not in (None, "gradients", "parameters", "all"):
            raise ValueError(f"log must be one of 'gradients', 'parameters', 'all' or None, "
                             f"got {log!r}")
        from runlake.emitter.integrations.watch import watch as _watch

        for model in models if isinstance(models, (list, tuple)) else [models]:
            self._watches.append(_watch(model, self.runlake, every=log_freq,
                                        log_histograms=log is not None,
                                        step_fn=lambda: self._cur))

    def unwatch(self, models: Any = None) -> None:
        """Remove the hooks ``watch`` installed (all of them)."""
        for handle in self._watches:
            handle.remove()
        self._watches.clear()

    def alert(self, title: str, text: str, level: Any = None,
              wait_duration: Any = None) -> None:
        """An ``alert`` event: ``"<title>: <text>"``, W&B's level mapped to a severity
        (INFO -> info, WARN -> warning, ERROR -> critical). Nothing is sent anywhere."""
        severity = severity_from_level(level or "INFO", default=None)
        if severity is None:
            raise ValueError(f"level must be an AlertLevel or one of INFO, WARN, ERROR; got "
                             f"{level!r}")
        self.runlake.alert(f"{title}: {text}", severity=severity, kind="wandb",
                           step=self._cur)

    def save(self, glob_str: str | os.PathLike | None = None, base_path: str | None = None,
             policy: str = "live") -> list[str]:
        """Store the matching files as ``file`` media blobs (key ``files``, name relative
        to ``base_path``); returns their paths. W&B's upload policy has no meaning here."""
        if glob_str is None:
            return []
        pattern = os.fspath(glob_str)
        base = base_path if base_path is not None else os.path.dirname(pattern) or "."
        saved = []
        for path in sorted(_glob.glob(pattern, recursive=True)):
            if os.path.isfile(path):
                self.runlake.log_media("files", path, media="file", step=self._cur,
                                       name=os.path.relpath(path, base))
                saved.append(path)
        return saved

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        raise Error(_ARTIFACTS)

    use_artifact = log_model = use_model = link_model = log_artifact

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        """No-op: runlake records the git commit (and dirty state) of every run."""
        return None

    def mark_preempting(self) -> None:
        """No-op: a resumed runlake run continues by itself (``resume='allow'``)."""

    # -- finish ------------------------------------------------------------------------------
    def flush_pending(self) -> None:
        """Commit the pending row and write the summary (an uncaught exception calls it)."""
        if self._finished:
            return
        self._commit(advance=False)
        final = recorded(self._state.final())
        if final:
            self.runlake.update(summary=final)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Commit the pending row, write the summary into ``run_end`` and end the run
        (``exit_code`` other than 0 -> status ``failed``). Idempotent."""
        if self._finished:
            return
        self._commit(advance=False)
        self._finished = True
        self.unwatch()
        summary = recorded(self._state.final())  # a deleted key went out as null already
        failed = exit_code not in (None, 0)
        self.runlake.finish("failed" if failed else "finished", summary=summary,
                            exit_reason=f"exit code {exit_code}" if failed else None)
        self.log = self._closed
        if self._on_finish is not None:
            self._on_finish(self)

    def _closed(self, *args: Any, **kwargs: Any) -> None:
        raise Error(f"run {self.id} is finished; start another with wandb.init()")

    def __enter__(self) -> "WandbRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None or self._finished:
            self.finish()
            return False
        self.flush_pending()  # then runlake ends the run failed/killed with the traceback
        self._finished = True
        self.unwatch()
        self.runlake.__exit__(exc_type, exc, tb)
        self.log = self._closed
        if self._on_finish is not None:
            self._on_finish(self)
        return False

    def __repr__(self) -> str:
        return f"<runlake.wandb.Run {self.project}/{self.id} step={self._cur}>"


def _as_step(step: Any) -> int:
    if is_tensor(step):
        step = tensor_item(step)
    if isinstance(step, bool) or not isinstance(step, int):
        if isinstance(step, float) and step.is_integer():
            return int(step)
        raise TypeError(f"step must be an int, got {type(step).__name__} {step!r}")
    return int(step)
