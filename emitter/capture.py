"""Console capture: what the training process prints becomes ``log`` events of its run.

While a run is live, ``sys.stdout`` and ``sys.stderr`` are replaced by a tee that still
writes every piece of text to the stream it replaced (the terminal sees exactly what it
would have seen) and appends the same object to a list. That is all the training thread
pays: one Python call, the original ``write`` and a ``list.append`` (about 0.2 µs per
``print()``, bench/bench_console.py). Everything else happens on the run's writer thread,
as a periodic task every flush interval (and in ``run.flush()`` / ``run.finish()``):
decoding bytes, splitting complete lines, keeping only the text after the last ``\\r`` of a
line (tqdm redraws its bar with ``\\r``), grouping tracebacks, building the events.

The events: ``Log(logger="console.stdout" | "console.stderr", level="INFO")``, the rank in
the envelope like every event (every rank captures into the one run), the run's current step
and the drain's time (up to one flush interval after the print; the lines of a burst 1 µs
apart, so the store's ``ORDER BY ts`` keeps their order). Both streams are INFO:
stderr carries progress bars and every level of Python logging's default output, so its
stream says nothing about severity. A traceback (``Traceback (most recent call last):`` up
to the exception line, chained ones included) is one ``ERROR`` event. The traceback of the
exception that ends the run (uncaught, or leaving ``with run:``) is recorded whole as one
such event when the run ends: the interpreter prints it only after the run has ended.

Rules that keep training safe:

* The original write runs first: a write the stream refuses (``TypeError`` for bytes,
  ``ValueError`` when closed) raises as it would have and captures nothing.
* ``sys.stdout.buffer.write(b"...")`` is captured too, decoded with the stream's encoding
  and ``errors="replace"`` (non-UTF-8 bytes become U+FFFD, never an error).
* ``flush``, ``isatty``, ``fileno``, ``encoding`` and every other attribute are the original
  stream's. Writes to the file descriptor itself (``os.write(1, ...)``, C extensions,
  child processes) are not seen: the tee is Python-level.
* What the writer threads print (the console progress block, warnings raised on them) is
  passed through, never captured: no recursion.
* Someone replacing ``sys.stdout`` after us (pytest's capsys, ``contextlib.redirect_stdout``)
  is left alone: at the end a stream is restored only if it is still our tee; otherwise the
  tee stays in their chain as a plain pass-through.
* Several live runs share one tee per stream; lines go to the newest live run (the current
  one, as Python logging's records do). In a forked child the capture detaches like the run.
* A line longer than :data:`runlake.emitter.values.MAX_TEXT_CHARS` is truncated (counted in
  ``run.dropped["console_truncated"]``); empty lines are not recorded.
"""

from __future__ import annotations

import codecs
import os
import sys
import threading
from typing import Any, Callable

from runlake.emitter.values import MAX_TEXT_CHARS, safe_str, truncate
from runlake.schemas.errors import ConfigError
from runlake.schemas.events import Event, Log

__all__ = ["CAPTURE_ENV", "ConsoleCapture", "STREAM_LOGGERS", "TRUNCATED_CAUSE",
           "capture_setting"]

CAPTURE_ENV = "RUNLAKE_CAPTURE_CONSOLE"
STREAM_LOGGERS = {"stdout": "console.stdout", "stderr": "console.stderr"}
"""The ``logger`` of the events of each captured stream."""
TRUNCATED_CAUSE = "console_truncated"

_TB_HEAD = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception, another exception occurred:",
            "The above exception was the direct cause of the following exception:")
_TS_STEP_NS = 1000
_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}

_QUIET: set[int] = set()
"""Idents of the runs' writer threads: what they print passes through uncaptured."""
_LOCK = threading.RLock()
"""Guards installing and removing tees (never taken on a write); re-entrant, since a
signal handler ending the run may interrupt the thread holding it."""


def capture_setting(value: bool | None, environ=os.environ) -> bool:
    """The ``capture_console`` option of ``init()``: True/False as given, None -> the
    ``RUNLAKE_CAPTURE_CONSOLE`` environment variable (``0``/``false``/``no``/``off`` turn
    capture off), default on.

    Raises:
        ConfigError: a value that is neither a bool nor None, or an unknown variable value.
    """
    if value is not None:
        if not isinstance(value, bool):
            raise ConfigError(f"capture_console must be True, False or None, got {value!r}")
        return value
    raw = environ.get(CAPTURE_ENV, "").strip().lower()
    if not raw or raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise ConfigError(f"{CAPTURE_ENV}={environ[CAPTURE_ENV]!r} is not understood: set it to "
                      f"0 (no console capture) or 1, or unset it")


def _teeing(write: Callable[[Any], Any], append: Callable[[Any], None]) -> Callable[[Any], Any]:
    """A ``write`` that writes through, then keeps the object (unless a writer thread wrote)."""
    quiet, ident = _QUIET, threading.get_ident

    def tee_write(s):
        n = write(s)
        if ident() not in quiet:
            append(s)
        return n

    return tee_write


class _Tee:
    """Stands in for one stream (or its ``.buffer``): ``write`` tees, the rest is the original's.

    ``write`` and ``flush`` are instance attributes (a closure, or the original's bound
    method when nobody captures), so ``print()`` pays no method lookup through
    ``__getattr__``.
    """

    def __init__(self, original: Any, name: str, owners: list | None = None, *,
                 binary: bool = False) -> None:
        self._original = original
        self._name = name
        self._binary = binary
        self._owners: list[ConsoleCapture] = [] if owners is None else owners
        """The live captures using this tee, oldest first (shared with the buffer's tee)."""
        self._buffer_tee: _Tee | None = None
        self.flush = getattr(original, "flush", lambda: None)
        self.write = original.write

    def _point(self) -> None:
        """Send writes to the newest owner's pending list, or straight through if none."""
        if self._owners:
            self.write = _teeing(self._original.write,
                                 self._owners[-1]._streams[self._name].pending.append)
        else:
            self.write = self._original.write
        if self._buffer_tee is not None:
            self._buffer_tee._point()

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    @property
    def buffer(self) -> "_Tee":
        """The original's binary buffer, teed into the same pending list."""
        if self._binary:
            raise AttributeError("buffer")
        original = self._original.buffer
        tee = self._buffer_tee
        if tee is None or tee._original is not original:
            tee = self._buffer_tee = _Tee(original, self._name, self._owners, binary=True)
            tee._point()
        return tee

    def __getattr__(self, name: str) -> Any:
        if name == "_original":  # not yet set (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._original, name)

    def __repr__(self) -> str:
        return f"<runlake console tee of {self._original!r}>"


class _Traceback(str):
    """A grouped traceback among a stream's lines: one ERROR event (a str subclass, so the
    lines of a drain need no tuple each)."""


class _Stream:
    """One stream's text on its way to events: pending writes, the unfinished line, and an
    unfinished traceback. Used on the writer thread (and at flush/finish), under the lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: list[Any] = []
        self.partial = ""
        self.skipping = False
        """The unfinished line passed the cap: drop the rest of it up to its newline."""
        self.group: list[str] | None = None
        self.group_done = False
        self._decoder: Any = None
        self.encoding = "utf-8"

    def _text(self) -> str:
        pending = self.pending
        items = pending.copy()
        del pending[: len(items)]  # two C calls under the GIL: appends in between survive
        try:
            text = "".join(items)  # the common case: all str
        except TypeError:
            text = "".join(map(self._decode, items))
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (errors="surrogateescape" streams)
                text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return text

    def _decode(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, (bytes, bytearray, memoryview)):
            if self._decoder is None:
                try:
                    self._decoder = codecs.getincrementaldecoder(self.encoding)("replace")
                except LookupError:
                    self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            return self._decoder.decode(bytes(item))
        return safe_str(item)  # a stream that accepts other objects (it did not raise)

    def take(self, final: bool) -> tuple[list[str], int]:
        """The complete lines (a :class:`_Traceback` for a grouped traceback), and how
        many were truncated."""
        text = self._text()
        if self.skipping:
            cut = text.find("\n")
            if cut < 0:
                text = ""
            else:
                text, self.skipping = text[cut + 1:], False
        text = self.partial + text
        lines = text.split("\n")
        partial = lines.pop()
        if final:
            lines.append(partial)
            partial = ""
        check = len(text) > MAX_TEXT_CHARS
        if self.group is None and "\r" not in text and _TB_HEAD not in text:
            out = [line for line in lines if line and not line.isspace()]
        else:
            out, check = [], True
            for line in lines:
                self._line(_last_redraw(line), out)
        if "\r" in partial:  # a progress bar redrawn in place: keep its latest state only
            i = partial.rstrip("\r").rfind("\r")
            if i > 0:
                partial = partial[i:]
        if len(partial) > MAX_TEXT_CHARS:
            self._line(partial, out)
            partial, self.skipping = "", True
        self.partial = partial
        if self.group is not None and (final or self.group_done
                                       or sum(map(len, self.group)) > MAX_TEXT_CHARS):
            self._close_group(out)
        truncated = 0
        if check:
            for i, message in enumerate(out):
                if len(message) > MAX_TEXT_CHARS:
                    out[i] = message.__class__(truncate(message))
                    truncated += 1
        return out, truncated

    def _line(self, line: str, out: list[str]) -> None:
        group = self.group
        if group is not None:
            if not self.group_done:
                group.append(line)
                if line and not line[0].isspace() and line.rstrip() != _TB_HEAD:
                    self.group_done = True  # the exception line
                return
            if not line.strip() or line.rstrip() in _CHAINED:
                group.append(line)
                self.group_done = not line.strip()
                return
            self._close_group(out)
        if line.rstrip() == _TB_HEAD:
            self.group, self.group_done = [line], False
        elif line.strip():
            out.append(line)

    def _close_group(self, out: list[str]) -> None:
        group = self.group or []
        while group and not group[-1].strip():
            group.pop()
        if group:
            out.append(_Traceback("\n".join(group)))
        self.group, self.group_done = None, False


def _last_redraw(line: str) -> str:
    """The text after the last ``\\r`` of a line (a trailing ``\\r\\n`` is a line end)."""
    line = line.rstrip("\r")
    i = line.rfind("\r")
    return line if i < 0 else line[i + 1:]


class ConsoleCapture:
    """One run's capture of ``sys.stdout``/``sys.stderr`` (module docstring).

    Args:
        envelope: the run's envelope factory (a fresh ``seq`` each call).
        default_step: the step an event without one is recorded at.
        on_failure: ``(cause, message, n)``: lines cut at the cap, or a failure at the
            end (the run warns and counts; :meth:`Run._writer_failure`).
        streams: which ``sys`` streams to capture.

    Call :meth:`start` once the writer thread runs, :meth:`drain` from it periodically,
    :meth:`stop` at the run's end (it returns the last events), :meth:`detach` in a fork.
    """

    def __init__(self, envelope: Callable[[], tuple], default_step: Callable[[], int | None],
                 on_failure: Callable[[str, str, int], None],
                 streams: tuple[str, ...] = ("stdout", "stderr")) -> None:
        self._envelope, self._default_step, self._on_failure = envelope, default_step, on_failure
        self._streams = {name: _Stream(name) for name in streams}
        self._tees: dict[str, _Tee] = {}
        self._quiet: int | None = None
        self._lock = threading.RLock()
        self._last_ts = 0
        """The ``ts`` of the last line: each line gets a later microsecond (the store keeps
        microseconds and orders a run's logs by ``ts``, so a burst keeps its order)."""

    @property
    def installed(self) -> bool:
        return bool(self._tees)

    def start(self, writer_ident: int | None) -> "ConsoleCapture":
        """Install (or join) the tees; what ``writer_ident`` prints is not captured."""
        with _LOCK:
            if writer_ident is not None:
                self._quiet = writer_ident
                _QUIET.add(writer_ident)
            for name, stream in self._streams.items():
                current = getattr(sys, name, None)
                if current is None:
                    continue  # no such stream (pythonw, a daemon with closed fds)
                tee = current if isinstance(current, _Tee) else _Tee(current, name)
                stream.encoding = getattr(tee._original, "encoding", None) or "utf-8"
                tee._owners.append(self)
                tee._point()
                self._tees[name] = tee
                if current is not tee:
                    setattr(sys, name, tee)
        return self

    def _remove(self) -> None:
        for name, tee in self._tees.items():
            if self in tee._owners:
                tee._owners.remove(self)
            tee._point()
            if not tee._owners and getattr(sys, name, None) is tee:
                setattr(sys, name, tee._original)
        self._tees = {}
        if self._quiet is not None:
            _QUIET.discard(self._quiet)
            self._quiet = None

    def drain(self, now: float | None = None, *, final: bool = False) -> list[Event]:
        """The events for the lines completed since the last drain (writer thread)."""
        with self._lock:
            found: list[tuple[str, list[str]]] = []
            truncated = 0
            for name, stream in self._streams.items():
                lines, cut = stream.take(final)
                truncated += cut
                if lines:
                    found.append((STREAM_LOGGERS[name], lines))
            if truncated:
                self._on_failure(TRUNCATED_CAUSE, f"{truncated} console line(s) longer than "
                                  f"{MAX_TEXT_CHARS:,} characters were truncated", truncated)
            if not found:
                return []
            step, envelope, events = self._default_step(), self._envelope, []
            last = self._last_ts
            for logger, lines in found:
                for m in lines:
                    v, run_id, writer, seq, ts, rank = envelope()
                    last = ts if ts >= last + _TS_STEP_NS else last + _TS_STEP_NS
                    if m.__class__ is str:
                        events.append(Log(v, run_id, writer, seq, last, rank, "INFO", m, 20,
                                          logger, step))
                    else:
                        events.append(Log(v, run_id, writer, seq, last, rank, "ERROR", str(m),
                                          40, logger, step))
            self._last_ts = last
            return events

    def stop(self, traceback_text: str | None = None) -> list[Event]:
        """Restore the streams (where still ours) and return the last events; with the
        traceback that ends the run, one more ``console.stderr`` ERROR event holding it.
        Never raises: the run's ``run_end`` must follow."""
        try:
            with _LOCK:
                self._remove()
            events = self.drain(final=True)
            if traceback_text and "stderr" in self._streams:
                text = traceback_text.rstrip("\n")
                text = truncate(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
                v, run_id, writer, seq, ts, rank = self._envelope()
                ts = self._last_ts = max(ts, self._last_ts + _TS_STEP_NS)
                events.append(Log(v, run_id, writer, seq, ts, rank, level="ERROR", message=text,
                                  levelno=40, logger=STREAM_LOGGERS["stderr"],
                                  step=self._default_step()))
        except Exception as exc:  # a bug here must not cost the run its end
            self._on_failure("console_error", f"console capture failed at the end: {exc!r}", 0)
            return []
        return events

    def detach(self) -> None:
        """In a forked child: stop capturing, without a lock a parent thread may have held."""
        self._lock = threading.RLock()
        self._remove()
        for stream in self._streams.values():
            stream.pending.clear()
