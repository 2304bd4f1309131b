"""Assert on the events your own training code emits, without touching disk.

Like structlog's ``testing.capture_logs()``: inside :func:`capture`, every run created by
``runlake.init(...)`` (without an explicit ``sink=``) writes into memory, and the yielded
list receives its events as the writer flushes them. Events arrive at each flush, so call
``run.flush()`` or ``run.finish()`` before asserting; leaving the block finishes runs it
started that are still live. Events are the schema structs with floats as logged (NaN kept).

Example::

    from runlake.emitter.testing import capture

    def test_train_logs_loss():
        with capture() as events:
            train(steps=3)           # calls runlake.init(...) and run.log(...)
        losses = [e.values["loss"] for e in events if e.__struct_config__.tag == "metrics"]
        assert len(losses) == 3
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from runlake.emitter import lifecycle
from runlake.emitter.sink import _CAPTURES, MemorySink
from runlake.schemas.events import Event

__all__ = ["capture", "of_kind"]


@contextmanager
def capture() -> Iterator[list[Event]]:
    """Route runs created inside the block to memory; yield the list of their events."""
    events: list[Event] = []
    sink = MemorySink(events)
    before = set(map(id, lifecycle.live_runs()))
    _CAPTURES.append(sink)
    try:
        yield events
    finally:
        _CAPTURES.remove(sink)
        for run in lifecycle.live_runs():
            if id(run) not in before and getattr(run._writer, "sink", None) is sink:
                run.finish()


def of_kind(events: list[Event], kind: str) -> list[Event]:
    """The events of one kind ("metrics", "alert", ...), in order."""
    return [e for e in events if e.__struct_config__.tag == kind]
