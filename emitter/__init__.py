"""The training-side API: runs, the background writer, segment files, samplers, checks.

Imports only :mod:`runlake.schemas`, msgspec, zstandard and the stdlib (psutil if present);
torch is used only when already imported by the training code.
"""

from runlake.emitter.initializer import init
from runlake.emitter.run import Run
from runlake.emitter.sink import FileSink, MemorySink
from runlake.emitter.wiring import LogFn

__all__ = ["FileSink", "LogFn", "MemorySink", "Run", "init"]
