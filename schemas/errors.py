"""The one error tree of runlake. Every error a user can meet derives from RunlakeError.

    RunlakeError
    ├── ConfigError          init()/CLI arguments that cannot work (root, names, options)
    │   └── RootError        the storage root is not a writable directory, or a name escapes it
    ├── EventValueError      a value passed to Run.log()/log_*() has the wrong type (also a TypeError)
    ├── RunStateError        the run is finished, or no run is current
    ├── StoreError           the DuckDB store cannot be opened, migrated or written
    │   └── StoreBusyError   another process holds the store's write lock past the retry window
    ├── QueryError           read-only SQL refused or failed (message says why)
    └── RunNotFoundError     a RUN reference matched no run, or several (ambiguous)

Warnings (training continues; drops are counted) are RunlakeWarning, a RuntimeWarning, so
``warnings.filterwarnings("error", category=runlake.RunlakeWarning)`` turns them into errors
in a user's own tests.

Messages say what was expected, what was received and how to fix it. The CLI prints
``runlake <command>: error: <message>`` on one line and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EventValueError",
    "QueryError",
    "RootError",
    "RunNotFoundError",
    "RunStateError",
    "RunlakeError",
    "RunlakeWarning",
    "StoreBusyError",
    "StoreError",
]


class RunlakeError(Exception):
    """Base of every runlake error."""


class ConfigError(RunlakeError, ValueError):
    pass


class RootError(ConfigError):
    pass


class EventValueError(RunlakeError, TypeError):
    pass


class RunStateError(RunlakeError, RuntimeError):
    pass


class StoreError(RunlakeError):
    pass


class StoreBusyError(StoreError):
    pass


class QueryError(RunlakeError):
    pass


class RunNotFoundError(RunlakeError, LookupError):
    pass


class RunlakeWarning(RuntimeWarning):
    """Something was dropped or degraded, and training goes on (the message says what)."""
