"""Bridge from Python's ``logging`` to ``log`` events.

:class:`RunlakeHandler` turns each record into a ``log`` event (level name and number,
logger name, message with exception text, the run's current step). ``runlake.init(...,
capture_logging=True)`` attaches one to the root logger for the run's lifetime and removes
it at ``finish()``. That handler forwards a record only while its run is the current run
(the newest live one), so with several runs open in one process each line lands in one
run. Nothing is installed at import time, and the root logger's level is left alone
(records below it are filtered by logging before they reach the handler).
Messages longer than :data:`runlake.emitter.values.MAX_TEXT_CHARS` are truncated.
"""

from __future__ import annotations

import logging

from runlake.emitter import lifecycle
from runlake.emitter.values import truncate

__all__ = ["RunlakeHandler"]


class RunlakeHandler(logging.Handler):
    """A logging handler writing records of any logger to one run as ``log`` events.

    Example::

        handler = RunlakeHandler(run).attach(logging.getLogger("my.trainer"))
        ...
        handler.detach()
    """

    def __init__(self, run, level: int = logging.NOTSET, *, current_only: bool = False) -> None:
        super().__init__(level)
        self.run = run
        self.current_only = current_only
        """Forward only while ``run`` is the process's current run."""
        self._logger: logging.Logger | None = None

    def attach(self, logger: logging.Logger | None = None) -> "RunlakeHandler":
        """Add this handler to ``logger`` (default: the root logger). Returns self."""
        self._logger = logger if logger is not None else logging.getLogger()
        self._logger.addHandler(self)
        return self

    def detach(self) -> None:
        """Remove this handler from the logger it was attached to (no-op if not attached)."""
        if self._logger is not None:
            self._logger.removeHandler(self)
            self._logger = None

    def emit(self, record: logging.LogRecord) -> None:
        from runlake.schemas.events import Log

        run = self.run
        if run._ended or (self.current_only and lifecycle.current() is not run):
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                if not record.exc_text:
                    record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                message = f"{message}\n{record.exc_text}"
            if record.stack_info:
                message = f"{message}\n{record.stack_info}"
            run._emit(
                Log,
                level=record.levelname,
                message=truncate(message),
                levelno=record.levelno,
                logger=record.name,
                step=run.step if run.step >= 0 else None,
            )
        except Exception:  # logging's contract: report via handleError, never raise
            self.handleError(record)
