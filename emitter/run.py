"""The ``Run``: the object training code logs to.

Hot path: ``Run.log`` is a closure built once per run (every choice made at construction,
every name a local). For a dict of plain floats whose keys were seen before it does:
``sum`` of the values (a float result proves they are all numbers without a Python loop),
a C-level subset test of the keys, ``dict.copy``, a sequence number, ``time.time_ns``, one
msgspec struct and one ``list.append``; no locks, no I/O. Anything else - new keys, ints,
numpy/torch scalars, nested dicts, bad input - goes through
:func:`runlake.emitter.values.coerce_metrics` once, which either converts, raises a clear
:class:`EventValueError` (strict) or drops and counts (``strict=False``). A value the fast
path lets through without converting (a float subclass or ``Fraction``: ``0.0 + x`` is a
float) is converted by the writer thread, value by value (:func:`values.clean_values`).

With ``strict=False`` no argument of any type makes a logging call raise: each bad key,
value, step or argument is one warning per cause and a count in ``run.dropped``, the rest
of the event kept (:mod:`records`). ``step=None`` is one past the *highest* step logged
(``run.step``): after ``step=1`` following step 10 the next automatic step is 11.

Every other event kind goes through :meth:`Run._emit`, which also enforces the buffer cap
(beyond it events are dropped and counted, never allowed to eat the machine's memory).

Wiring: a ``Run`` is given everything it writes through at construction (a
:class:`WriterSetup`: the sink, the online checks, the periodic tasks, the console block, a
mirror, the logging bridge) and builds its writer thread from it; no other module sets its
private attributes. ``Run.log`` is typed by the :class:`LogFn` protocol, so type checkers
see its signature while it stays a closure (a Protocol costs nothing at run time).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

from runlake.emitter import lifecycle, records
from runlake.emitter.capture import ConsoleCapture
from runlake.emitter.checks import OnlineChecks
from runlake.emitter.console import Progress
from runlake.emitter.jsonable import jsonable
from runlake.emitter.other_kinds import OtherKinds
from runlake.emitter.periodic import HeartbeatTask, SystemTask
from runlake.emitter.values import coerce_metrics, describe, truncate, user_stacklevel
from runlake.emitter.wiring import LogFn, WriterSetup
from runlake.emitter.writer import Periodic, Writer
from runlake.schemas.errors import EventValueError, RunlakeWarning, RunStateError
from runlake.schemas.events import Event, Metrics, RunEnd, RunStart

__all__ = ["BUFFER_CAP", "FLUSH_AT", "Run"]

FLUSH_AT = 50_000
"""Buffered events that wake the writer before its interval is up."""
BUFFER_CAP = 2_000_000
"""Buffered events beyond which new events are dropped (and counted)."""
FINISH_TIMEOUT_S = 60.0

_STATUSES = ("finished", "failed", "killed")


_I64, _I32 = 2**63, 2**31
_I64_MIN, _I32_MIN = -_I64, -_I32  # constants, so the hot path negates nothing


class Run(OtherKinds):
    """One process's view of a run; create it with :func:`runlake.init`.

    Attributes:
        id, name, project: identity of the run.
        root: the storage root; dir: ``<root>/<project>/<id>``.
        writer: this process's writer id; rank, world_size, attempt: where it sits.
        step: the highest step logged (``start_step - 1`` before the first ``log``);
            ``log()`` without a step records ``step + 1``.
        dropped: events or values dropped so far, by cause.

    Constructing one starts it: ``start`` (the ``run_start`` fields) is its first event,
    the writer thread starts, the run becomes the current one and, with
    ``setup.capture_logging``, Python logging is forwarded to it.
    """

    log: LogFn

    def __init__(
        self,
        *,
        run_id: str,
        name: str,
        project: str,
        root: Path,
        writer: str,
        rank: int,
        world_size: int,
        attempt: int,
        start_step: int,
        total_steps: int | None,
        strict: bool,
        setup: WriterSetup,
        start: Mapping[str, Any],
    ) -> None:
        self.id, self.name, self.project = run_id, name, project
        self.root = root
        self.dir = root / project / run_id
        self.writer, self.rank, self.world_size, self.attempt = writer, rank, world_size, attempt
        self.start_step = start_step
        self.total_steps = total_steps
        self.strict = strict
        self.step = start_step - 1
        self.epoch: int | None = None
        self.status: str | None = None
        self._buf: list[Event] = []
        self._seq = itertools.count()
        self._known: set[str] = set()
        self._pressure_at = FLUSH_AT
        self._drops_main: Counter[str] = Counter()
        self._drops_writer: Counter[str] = Counter()
        self._warned: set[str] = set()
        self._end_lock = threading.Lock()
        self._ended = False
        self._items = 0
        self._augmented = 0
        self._checks = (OnlineChecks(self._make_alert, self._emit_many, self._warn)
                        if setup.online_checks else None)
        self._heartbeat = HeartbeatTask(self, setup.heartbeat_interval, self._envelope,
                                        self._default_step)
        periodic = [Periodic("heartbeat", setup.heartbeat_interval, self._heartbeat)]
        self._system = None
        if setup.sampler is not None:
            self._system = SystemTask(setup.sampler, self._envelope, self._default_step)
            periodic.append(Periodic("system", setup.system_interval, self._system))
        if setup.console_interval is not None:
            block = Progress(self.progress)
            periodic.append(Periodic("console", setup.console_interval, lambda now: block.print()))
        self._console = None
        if setup.capture_console:
            self._console = ConsoleCapture(self._envelope, self._default_step, self._writer_failure)
            periodic.append(Periodic("console_capture", setup.flush_interval, self._console.drain))
        self._writer: Writer | None = Writer(
            self._buf, setup.sink, flush_interval=setup.flush_interval,
            on_failure=self._writer_failure,
            review=self._checks.review if self._checks is not None else None,
            periodic=periodic, name=f"runlake-writer-{run_id}")
        self._writer.mirror = setup.mirror
        self._writer.on_swap = self._swapped
        self.log = self._make_log()
        self._buf.append(RunStart(*self._envelope(), **start))
        self._writer.start()
        self._writer.wake.set()  # write run_start now: the run is visible to ingest right away
        lifecycle.register(self)
        self._handler = None
        if setup.capture_logging:
            from runlake.emitter.integrations.logging import RunlakeHandler

            self._handler = RunlakeHandler(self, current_only=True).attach()
        if self._console is not None:
            self._console.start(self._writer.ident)

    # -- hot path ----------------------------------------------------------------------------
    def _make_log(self) -> Callable[..., None]:
        run = self
        buf = self._buf
        append = buf.append
        issuperset = self._known.issuperset
        next_seq = self._seq.__next__
        time_ns = time.time_ns
        slow = self._slow_values
        pressure = self._pressure
        run_id, writer, rank = self.id, self.writer, self.rank
        step_arg, epoch_arg = records.step_arg, records.epoch_arg
        top = _I64 - 1
        _float, _dict, _int = float, dict, int

        def log(metrics: Mapping[str, Any], step: int | None = None, *, epoch: int | None = None):
            """Record scalars at a step (default: the highest step so far + 1). Returns None.

            Raises:
                EventValueError: a key or value of the wrong type (strict mode).
                RunStateError: the run is finished.
            """
            try:
                s = sum(metrics.values(), 0.0)
            except Exception:  # not numbers, not a dict, 10**400: the slow path says which
                s = None
            if s.__class__ is _float and metrics.__class__ is _dict and issuperset(metrics):
                values = metrics.copy()
            else:
                values = slow(metrics)
            if step is None:
                step = run.step + 1
            elif step.__class__ is not _int or not _I64_MIN <= step < _I64:
                step = step_arg(run, step)  # converts, or repairs
            if step > run.step:  # run.step is the highest step: out-of-order never rewinds it
                if step > top:  # only an automatic step past int64's maximum gets here
                    step = step_arg(run, step)
                run.step = step
            if epoch is not None:
                if epoch.__class__ is not _int or not _I32_MIN <= epoch < _I32:
                    epoch = epoch_arg(run, epoch)
                run.epoch = epoch
            if len(buf) >= run._pressure_at and pressure():
                return
            append(Metrics(1, run_id, writer, next_seq(), time_ns(), rank, step, values, epoch))

        return log

    def _slow_values(self, metrics: Any) -> dict[str, float]:
        values = coerce_metrics(metrics, strict=self.strict, on_drop=self._drop)
        self._known.update(values)
        return values

    def _pressure(self) -> bool:
        """Called when the buffer passed its threshold: wake the writer, or drop past the cap."""
        n = len(self._buf)
        if n >= BUFFER_CAP:
            self._drop("buffer_full", f"more than {BUFFER_CAP:,} events waiting for the writer; "
                       f"dropping new events until it catches up")
            return True
        self._pressure_at = n + FLUSH_AT
        if self._writer is not None:
            self._writer.wake.set()
        return False

    def _swapped(self) -> None:
        """The writer took the buffer: the next wake-up is one ``FLUSH_AT`` away again."""
        self._pressure_at = FLUSH_AT

    def progress(self) -> dict[str, Any]:
        """The counters the console progress block shows (read on the writer thread)."""
        losses = {}
        if self._checks is not None:
            losses = {k: v for k, v in self._checks.latest.items() if "loss" in k.lower()}
        return {"run_id": self.id, "step": self.step, "epoch": self.epoch,
                "total_steps": self.total_steps, "items": self._items,
                "augmented": self._augmented, "losses": losses,
                "system": self._system.latest if self._system is not None else {},
                "steps_per_s": self._heartbeat.rate, "eta_s": self._heartbeat.eta,
                "dropped": self.dropped}

    # -- shared plumbing ---------------------------------------------------------------------
    def _envelope(self) -> tuple:
        return (1, self.id, self.writer, next(self._seq), time.time_ns(), self.rank)

    def _emit(self, cls: type[Event], **fields: Any) -> None:
        """Append one event; the envelope (and its seq) is taken only once it will be kept."""
        if self._ended:
            self._closed()
        if len(self._buf) >= self._pressure_at and self._pressure():
            return
        self._buf.append(cls(*self._envelope(), **fields))

    def _emit_many(self, events: list[Event]) -> None:
        self._buf.extend(events)

    def _warn(self, cause: str, message: str) -> None:
        if cause in self._warned:
            return
        self._warned.add(cause)
        warnings.warn(f"runlake: {message}", RunlakeWarning, stacklevel=user_stacklevel())

    def _drop(self, cause: str, message: str, n: int = 1) -> None:
        self._drops_main[cause] += n
        self._warn(cause, message + " (warned once per cause; counted in run.dropped)")

    def _writer_failure(self, cause: str, message: str, n: int) -> None:
        if n:
            self._drops_writer[cause] += n
        self._warn(cause, message + " (training continues; drops counted in run.dropped)")

    @property
    def dropped(self) -> dict[str, int]:
        """Events or values dropped, by cause (bad_value, bad_key, io_error, buffer_full...)."""
        out = Counter(self._drops_main)
        out.update(self._drops_writer)
        return dict(out)

    def _default_step(self) -> int | None:
        return self.step if self.step >= 0 else None

    # -- flushing and ending -----------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything logged so far; True when it is on disk (fsynced by policy).

        Returns False when the writer could not write everything (see ``run.dropped``) or
        did not finish within ``timeout`` seconds.
        """
        if self._ended or self._writer is None:
            return self.status in _STATUSES and not self._drops_writer
        if self._console is not None:
            self._emit_many(self._console.drain())
        return self._writer.flush(timeout)

    def finish(self, status: str = "finished", *, summary: Mapping[str, Any] | None = None,
               exit_reason: str | None = None) -> None:
        """End the run: write ``run_end``, flush, seal the segment. Idempotent.

        Raises:
            EventValueError: an unknown status.
        """
        if status not in _STATUSES:
            raise EventValueError(f"status must be one of {_STATUSES}, got {status!r}")
        self._end(status, exit_reason=exit_reason, summary=summary)

    def _end(self, status: str, *, exit_reason: str | None = None,
             traceback_text: str | None = None, summary: Mapping[str, Any] | None = None) -> None:
        with self._end_lock:
            if self._ended:
                return
            self._ended = True
        self.status = status
        self.log = self._closed
        if self._handler is not None:
            self._handler.detach()
        if self._console is not None:
            self._emit_many(self._console.stop(traceback_text))
        lifecycle.unregister(self)
        summary = jsonable(summary or {}, strict=False, what="summary", on_fix=self._warn)
        if not isinstance(summary, dict):
            self._warn("bad_summary", f"summary must be a mapping, got {describe(summary)}; "
                       f"stored under 'value'")
            summary = {"value": summary}
        seq = next(self._seq)
        end = RunEnd(1, self.id, self.writer, seq, time.time_ns(), self.rank, status=status,
                     exit_reason=None if exit_reason is None else truncate(exit_reason),
                     traceback=None if traceback_text is None else truncate(traceback_text),
                     summary=summary, step=self._default_step(), events=seq + 1,
                     dropped=self.dropped)
        if self._writer is not None:
            self._writer.stop([end], FINISH_TIMEOUT_S)

    def _detach_after_fork(self) -> None:
        """In a forked child: never write to the parent's segments; logging becomes a no-op."""
        self._ended = True
        self.status = "forked"
        self._writer = None
        self._handler = None
        if self._console is not None:
            self._console.detach()
        pid = os.getpid()

        def ignored(*args: Any, **kwargs: Any) -> None:
            self._warn("forked", f"run {self.id} was started in another process; events logged "
                       f"in forked child {pid} are ignored (call runlake.init() in the child to "
                       f"record them)")

        self.log = ignored
        self._emit = ignored  # log_data, alert, ... and the logging bridge

    def _closed(self, *args: Any, **kwargs: Any) -> None:
        raise RunStateError(
            f"run {self.id} is finished ({self.status}); start a new one with runlake.init()"
        )

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.finish()
        else:
            import traceback

            status = "killed" if issubclass(exc_type, KeyboardInterrupt) else "failed"
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self._end(status, exit_reason=f"{exc_type.__name__}: {exc}", traceback_text=text)
        return False

    def __repr__(self) -> str:
        state = self.status or "live"
        return f"<runlake.Run {self.project}/{self.id} name={self.name!r} step={self.step} {state}>"
