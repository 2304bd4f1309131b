"""Process-level hooks that make sure every live run writes ``run_end``.

Installed on the first ``init()`` (never at import time) and removed when the last live
run ends, if nobody replaced them in between:

* ``sys.excepthook`` - an uncaught exception ends live runs with status ``failed`` and the
  traceback (``KeyboardInterrupt`` -> ``killed``), then calls the previous hook.
* ``SIGTERM`` (main thread only) - live runs end with status ``killed``, then the previous
  handler runs; when that was the default action the signal is re-raised so the process
  still dies with SIGTERM's exit status.
* ``atexit`` - runs still live at interpreter exit end with status ``finished``.

* ``os.register_at_fork`` - in a forked child (DataLoader workers) every inherited run is
  detached: its logging methods become no-ops that warn once, and no hook of the child
  writes to the parent's segments (the writer thread does not survive a fork anyway).

A SIGKILLed process runs none of these: what its writer had flushed stays readable and the
store reports the run as crashed once its heartbeat stops.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import traceback
from typing import Any

__all__ = ["current", "live_runs", "register", "unregister"]

_LIVE: list[Any] = []
_LOCK = threading.RLock()
_STATE: dict[str, Any] = {"atexit": False, "excepthook": None, "sigterm": None, "fork": False}


def live_runs() -> list[Any]:
    """Runs started and not yet finished, oldest first."""
    return list(_LIVE)


def current() -> Any | None:
    """The most recently started run that is still live."""
    return _LIVE[-1] if _LIVE else None


def register(run: Any, *, hooks: bool = True) -> None:
    with _LOCK:
        _LIVE.append(run)
        if hooks:
            _install()


def unregister(run: Any) -> None:
    with _LOCK:
        if run in _LIVE:
            _LIVE.remove(run)
        if not _LIVE:
            _uninstall()


def _end_all(status: str, *, exit_reason: str | None, tb: str | None = None) -> None:
    for run in reversed(list(_LIVE)):
        run._end(status, exit_reason=exit_reason, traceback_text=tb)


def _excepthook(exc_type, exc, tb) -> None:
    status = "killed" if issubclass(exc_type, KeyboardInterrupt) else "failed"
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    try:
        _end_all(status, exit_reason=f"{exc_type.__name__}: {exc}", tb=text)
    finally:
        previous = _STATE["excepthook"] or sys.__excepthook__
        previous(exc_type, exc, tb)


def _on_sigterm(signum, frame) -> None:
    previous = _STATE["sigterm"]
    _end_all("killed", exit_reason="SIGTERM")
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL or previous is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _at_exit() -> None:
    _end_all("finished", exit_reason="interpreter exit")


def _after_fork_in_child() -> None:
    runs = list(_LIVE)
    _LIVE.clear()
    for run in runs:
        run._detach_after_fork()


def _install() -> None:
    if not _STATE["atexit"]:
        atexit.register(_at_exit)
        _STATE["atexit"] = True
    if not _STATE["fork"] and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _STATE["fork"] = True
    if sys.excepthook is not _excepthook:
        _STATE["excepthook"] = sys.excepthook
        sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        current_handler = signal.getsignal(signal.SIGTERM)
        if current_handler is not _on_sigterm:
            _STATE["sigterm"] = current_handler
            signal.signal(signal.SIGTERM, _on_sigterm)


def _uninstall() -> None:
    if sys.excepthook is _excepthook:
        sys.excepthook = _STATE["excepthook"] or sys.__excepthook__
        _STATE["excepthook"] = None
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            previous = _STATE["sigterm"]
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            _STATE["sigterm"] = None
