"""What a :class:`runlake.emitter.run.Run` is built from, and the type of its ``log``.

``init()`` decides everything once - where events go, which checks and periodic tasks run
on the writer thread - and hands it to ``Run`` as one :class:`WriterSetup`; the run builds
its writer from it (collaborators given at construction, never wired into private
attributes afterwards). ``Run.log`` stays a closure for speed; :class:`LogFn` gives type
checkers its signature (a Protocol costs nothing at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

__all__ = ["LogFn", "Mirrors", "WriterSetup", "mirrors"]


class LogFn(Protocol):
    """The signature of :attr:`Run.log`: record scalars at a step (default: highest + 1).

    Raises:
        EventValueError: a key or value of the wrong type (strict mode).
        RunStateError: the run is finished.
    """

    def __call__(self, metrics: Mapping[str, Any], step: int | None = None, *,
                 epoch: int | None = None) -> None: ...


@dataclass(frozen=True)
class WriterSetup:
    """Where a run's events go and what runs on its writer thread, chosen once by ``init()``.

    Attributes:
        sink: takes the encoded frames (:class:`runlake.emitter.sink.FileSink`, ``MemorySink``).
        flush_interval: seconds between flushes.
        online_checks: NaN/Inf and exploding-loss alerts per flush (:mod:`checks`).
        heartbeat_interval: seconds between heartbeats.
        sampler: a :class:`runlake.emitter.system.SystemSampler`, or None (no system events).
        system_interval: seconds between system samples.
        console_interval: seconds between console progress blocks, or None (off).
        mirror: an extra copy target of each written batch (TensorBoard, W&B: :func:`mirrors`),
            or None.
        capture_logging: forward Python logging records while this run is current.
        capture_console: tee ``sys.stdout``/``sys.stderr`` into ``log`` events
            (:mod:`runlake.emitter.capture`).
    """

    sink: Any
    flush_interval: float = 1.0
    online_checks: bool = True
    heartbeat_interval: float = 10.0
    sampler: Any = None
    system_interval: float = 10.0
    console_interval: float | None = None
    mirror: Any = None
    capture_logging: bool = False
    capture_console: bool = False


class Mirrors:
    """Several mirrors fed the same batches (``tensorboard=`` and ``wandb=`` together).

    Each gets every batch even when another raises; the first error is re-raised after all
    were called, so the writer warns and counts it as it does for a single mirror.
    """

    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    def write_events(self, events: list) -> None:
        self._each("write_events", events)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args: Any) -> None:
        error: Exception | None = None
        for target in self.targets:
            try:
                getattr(target, method)(*args)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error


def mirrors(*targets: Any) -> Any:
    """The ``WriterSetup.mirror`` for ``targets`` (None entries ignored): None, the one
    mirror, or a :class:`Mirrors` fan-out."""
    given = [t for t in targets if t is not None]
    return None if not given else given[0] if len(given) == 1 else Mirrors(*given)
