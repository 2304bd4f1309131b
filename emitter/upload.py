"""Segments to object storage: a local spool, sealed every few seconds, uploaded by a thread.

``runlake.init(root="s3://bucket/prefix")`` (or ``RUNLAKE_DIR=s3://...``) changes where
the writer's sink lives, nothing else: the writer thread writes a normal local root, the
spool (:mod:`runlake.emitter.spool`), through :class:`SpoolSink`, a :class:`FileSink` that
also seals its segment every ``upload_interval`` seconds (``RUNLAKE_UPLOAD_INTERVAL``,
default 5) and hands each sealed file to an :class:`Uploader` thread. The uploader puts
sealed files oldest first with ``put_new`` at the same relative key
(``<prefix>/<project>/<run_id>/<writer>/<seq>.jsonl.zst``) and deletes each once confirmed,
so every object is one sealed segment, written once, never appended or replaced. Before
each round of segments it uploads the run's media blobs (``<run>/blobs/..``, written by
``log_media`` into the spool run folder), so a segment is never in the bucket before a
blob it names.

The training thread never touches the network: boto3 is imported, the client made and
every request sent on the uploader thread. When the endpoint is down, refuses the
credentials or has no such bucket, requests are retried a bounded number of times
(:class:`runlake.schemas.objects.ObjectStore`), then again after a backoff (1 s doubling to
30 s); one warning line says why, and segments wait in the spool. Past
``RUNLAKE_SPOOL_MAX_BYTES`` (default 1 GiB per writing process) of segments waiting, new
flushes are dropped and counted (``run.dropped["spool_full"]``, in heartbeats and
``run_end``) until uploads catch up. ``finish()`` waits up to ``RUNLAKE_UPLOAD_WAIT``
seconds (default 30) for the spool to drain, then says in one warning line what is left and
the ``runlake push`` command that uploads it after the process is gone.

Loss bound: SIGKILL of the process loses nothing that reached the spool once ``runlake
push`` runs on the node (so at most the flush interval, as with a local root); losing the
node loses at most ``upload_interval`` plus the upload time (plus whatever an unreachable
endpoint kept waiting in the spool).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runlake.emitter.run import FINISH_TIMEOUT_S
from runlake.emitter.sink import FileSink
from runlake.emitter.spool import (
    WriterLock, claim_spool, default_spool, sealed_segments, upload_blobs, upload_segment,
)
from runlake.emitter.writer import encode_batch
from runlake.schemas.errors import ConfigError, RootError, RunlakeWarning
from runlake.schemas.events import Alert, Event, Heartbeat, RunEnd, RunStart
from runlake.schemas.objects import ObjectStore, ObjectStoreError, split_url
from runlake.schemas.segments import OPEN_SUFFIX

__all__ = [
    "MAX_BACKOFF_S",
    "SPOOL_MAX_BYTES",
    "SpoolFull",
    "SpoolSettings",
    "SpoolSink",
    "UPLOAD_INTERVAL_S",
    "UPLOAD_WAIT_S",
    "Uploader",
    "spool_settings",
]

UPLOAD_INTERVAL_S = 5.0
"""Seconds between seals of the open spool segment (``RUNLAKE_UPLOAD_INTERVAL``)."""
SPOOL_MAX_BYTES = 1 << 30
"""Bytes of sealed, not yet uploaded segments per process before flushes are dropped
(``RUNLAKE_SPOOL_MAX_BYTES``)."""
UPLOAD_WAIT_S = 30.0
"""Seconds ``finish()`` waits for the spool to drain (``RUNLAKE_UPLOAD_WAIT``); capped
below the run's own finish timeout."""
MAX_BACKOFF_S = 30.0
"""Longest pause between upload attempts while the endpoint keeps failing."""


@dataclass(frozen=True)
class SpoolSettings:
    """Where a run with an object-storage root spools, and how it uploads (module doc)."""

    url: str
    spool: Path
    upload_interval: float = UPLOAD_INTERVAL_S
    max_bytes: int = SPOOL_MAX_BYTES
    wait_s: float = UPLOAD_WAIT_S


def _env_number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:
        what = "a number of seconds" if kind is float else "a number of bytes"
        raise ConfigError(f"{name} must be {what} > 0, got {raw!r}")
    return value


def spool_settings(url: str) -> SpoolSettings:
    """The settings of ``url`` from the environment; checked now, nothing sent anywhere.

    Raises:
        RootError: a malformed URL, or a spool folder that records another URL.
        ConfigError: a setting that is not a positive number, or boto3 missing.
    """
    try:
        split_url(url)
    except ObjectStoreError as exc:
        raise RootError(str(exc)) from None
    if importlib.util.find_spec("boto3") is None:
        raise ConfigError(f"root={url!r} needs boto3: pip install 'runlake[s3]'")
    wait = min(_env_number("RUNLAKE_UPLOAD_WAIT", UPLOAD_WAIT_S, float), FINISH_TIMEOUT_S - 10)
    return SpoolSettings(url.rstrip("/"), default_spool(url),
                         _env_number("RUNLAKE_UPLOAD_INTERVAL", UPLOAD_INTERVAL_S, float),
                         _env_number("RUNLAKE_SPOOL_MAX_BYTES", SPOOL_MAX_BYTES, int), wait)


_VITAL = (RunStart, RunEnd, Heartbeat, Alert)
"""Kinds still written past the spool bound (a few small events): the store keeps seeing
the run alive, its alerts, and its drop counts in heartbeats and ``run_end``."""


class SpoolFull(OSError):
    """Raised by :meth:`SpoolSink.write` past the spool bound: the writer counts
    :attr:`dropped` events of the flush as lost under :attr:`cause`."""

    cause = "spool_full"

    def __init__(self, message: str, dropped: int) -> None:
        super().__init__(message)
        self.dropped = dropped


class Uploader:
    """The thread that uploads one writer folder's sealed spool files (module docstring).

    Args:
        settings: the URL, spool folder and timings.
        directory: the writer folder inside the spool.
        store: the store to use (default: made on the thread, from the environment).
    """

    def __init__(self, settings: SpoolSettings, directory: Path, *,
                 store: ObjectStore | None = None) -> None:
        self.settings, self.directory, self._store = settings, directory, store
        self._cond = threading.Condition()
        self._waiting = 0
        self._kicked = self._closing = False
        self._done = threading.Event()
        self._drained = False
        self._lock: WriterLock | None = None
        self._conflicts: set[str] = set()
        self._episode: str | None = None  # the failure being warned about, until a success
        self.uploaded = 0
        self.uploaded_bytes = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"runlake-upload-{directory.name}")

    @property
    def waiting_bytes(self) -> int:
        """Bytes of sealed segments not yet confirmed uploaded."""
        return self._waiting

    def start(self, lock: WriterLock) -> None:
        """Start uploading; ``lock`` (the writer folder's) is released when done."""
        self._lock = lock
        self._thread.start()

    def added(self, size: int) -> None:
        """A segment of ``size`` bytes was sealed: count it, upload it soon."""
        with self._cond:
            self._waiting += size
            self._kicked = True
            self._cond.notify_all()

    def close(self) -> bool:
        """Upload what is left, waiting up to ``wait_s``; True when the spool drained."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._lock is None:
            return True  # never started (the sink failed to open)
        if self._done.wait(self.settings.wait_s) and self._drained:
            return True
        s = self.settings
        left = self._left()
        size = sum(p.stat().st_size for p in left if p.exists())
        where = self.directory.relative_to(s.spool)
        _warn(f"{len(left)} segment(s) ({size:,} bytes) of {where} were not uploaded to "
              f"{s.url} within {s.wait_s:g} s ({self.last_error or 'still uploading'}); they "
              f"stay in the spool: if this process ends first, run "
              f"`runlake push --spool {s.spool} --root {s.url}`")
        return False

    def _left(self) -> list[Path]:
        return sealed_segments(self.directory) + sorted(self.directory.glob(f"*{OPEN_SUFFIX}"))

    def _main(self) -> None:
        try:
            store = self._store or ObjectStore(self.settings.url)
            try:
                store.check()
            except ObjectStoreError as exc:
                self._failed(exc)
            delay, closing = 0.0, False
            while True:
                with self._cond:
                    if delay:  # backing off: only finish() cuts the pause short
                        self._cond.wait_for(lambda: self._closing and not closing, delay)
                    else:
                        self._cond.wait_for(lambda: self._kicked or self._closing,
                                            self.settings.upload_interval)
                    self._kicked = False
                    closing = self._closing
                try:
                    self._upload_all(store)
                except ObjectStoreError as exc:
                    self._failed(exc)
                    delay = min(max(delay * 2, 1.0), MAX_BACKOFF_S)
                    continue
                delay, self._episode = 0.0, None
                if closing:
                    break
        except Exception as exc:  # the thread must never die silently: say so, keep the spool
            s = self.settings
            self.last_error = f"the uploader stopped: {exc!r}"
            _warn(f"the uploader to {s.url} stopped: {exc!r}; segments stay in {s.spool} "
                  f"(run `runlake push --spool {s.spool} --root {s.url}`)")
        else:
            self._drained = not self._left()
            self._lock.release(remove=True)  # removes the folder only when nothing is left
        finally:
            self._done.set()

    def _upload_all(self, store: ObjectStore) -> None:
        try:
            segments = sealed_segments(self.directory)  # before the blobs: see upload_blobs
            if segments:
                _, _, conflicts = upload_blobs(store, self.settings.spool, self.directory.parent)
                for key in conflicts:
                    if key not in self._conflicts:
                        self._conflicts.add(key)
                        _warn(f"{store.url_of(key)} exists with another size; the blob "
                              f"{self.settings.spool / key} is kept, not uploaded")
            for path in segments:
                if path.name in self._conflicts:
                    continue
                try:
                    n = upload_segment(store, self.settings.spool, path)
                except OSError as exc:  # this spool file, not the endpoint: skip it, go on
                    self._conflicts.add(path.name)
                    _warn(f"cannot upload {path}: {exc}; it is kept, the others go on")
                    continue
                if n is None:
                    self._conflicts.add(path.name)
                    _warn(f"{store.url_of(path.relative_to(self.settings.spool).as_posix())} "
                          f"exists with another size; {path} is kept, not uploaded")
                elif n:
                    self.uploaded += 1
                    self.uploaded_bytes += n
        finally:
            left = 0
            for path in sealed_segments(self.directory):
                try:
                    left += path.stat().st_size
                except FileNotFoundError:
                    pass
            with self._cond:
                self._waiting = left

    def _failed(self, exc: ObjectStoreError) -> None:
        """One warning per failure episode (or when its cause changes), never a raise."""
        message = str(exc)
        cause = message.split(": ", 1)[-1].split(";")[0]  # without the URL and the request
        self.last_error = message
        if cause != self._episode:
            self._episode = cause
            s = self.settings
            _warn(f"cannot upload: {message}; segments wait in the spool {s.spool} "
                  f"(past {s.max_bytes:,} bytes new flushes are dropped and counted); "
                  f"retrying with backoff")


def _warn(message: str) -> None:
    """One line on the uploader thread: no user frame to point at, so no source line.

    A filter that turns RunlakeWarning into errors cannot raise into training from here:
    the message is printed to stderr instead."""
    try:
        warnings.warn_explicit(f"runlake: {message}", RunlakeWarning, "runlake-upload", 0,
                               module="runlake.emitter.upload")
    except Warning:
        print(f"runlake: {message}", file=sys.stderr)


class SpoolSink(FileSink):
    """A :class:`FileSink` in the spool that seals every ``upload_interval`` and feeds an
    :class:`Uploader` (module docstring).

    Args:
        directory, root, fsync, rotate_bytes, rotate_seconds: as for :class:`FileSink`
            (``root`` is the spool folder; segments are also sealed every
            ``settings.upload_interval`` seconds).
        settings: the spool's settings.
        uploader: the uploader of this writer folder (started by :meth:`open`).
    """

    def __init__(self, directory: Path, *, root: Path, settings: SpoolSettings,
                 uploader: Uploader, fsync: str = "flush", rotate_bytes: int = 64 << 20,
                 rotate_seconds: float = 3600.0) -> None:
        super().__init__(directory, root=root, fsync=fsync, rotate_bytes=rotate_bytes,
                         rotate_seconds=min(rotate_seconds, settings.upload_interval))
        self.settings, self.uploader = settings, uploader
        self._lock: WriterLock | None = None

    def open(self) -> None:
        """Create the writer folder (no links followed), lock it, open the first segment,
        start the uploader.

        Raises:
            OSError: the folder, lock or segment cannot be created; RootError: the spool
                belongs to another URL.
        """
        if self._lock is None:
            os.close(self._dir_fd(create=True))
            claim_spool(self.root, self.settings.url)
            lock = WriterLock.take(self.dir)
            try:
                super().open()
            except BaseException:
                lock.release(remove=True)
                raise
            self._lock = lock
            self.uploader.start(lock)
        else:
            super().open()

    def _open_bytes(self) -> int:
        return self._size if self.path is not None else 0

    def write(self, events: list[Event], data: bytes) -> None:
        """Append one frame, unless the spool is past its bound (:class:`SpoolFull`)."""
        held = self.uploader.waiting_bytes + self._open_bytes()
        if not data or held < self.settings.max_bytes:
            super().write(events, data)
            return
        vital = [ev for ev in events if ev.__class__ in _VITAL]
        if vital:
            data, vital, _ = encode_batch(vital, lambda ev, exc: None)
            super().write(vital, data)
        raise SpoolFull(
            f"the spool {self.root} holds {held:,} bytes not yet uploaded to "
            f"{self.settings.url} (RUNLAKE_SPOOL_MAX_BYTES={self.settings.max_bytes:,}); "
            f"dropping flushes (all but heartbeats, alerts and run start/end) until uploads "
            f"catch up", len(events) - len(vital))

    def seal(self) -> Path | None:
        size = self._open_bytes()
        sealed = super().seal()
        if sealed is not None:
            self.uploader.added(size)
        return sealed

    def tick(self) -> None:
        """Writer-thread hook: seal the open segment once it is ``upload_interval`` old,
        even when nothing new is written (so the loss bound holds while training idles)."""
        if self._open_bytes() and self._clock() - self._opened_at >= self.rotate_seconds:
            self.seal()

    def close(self) -> None:
        """Seal, then wait (bounded) for the uploader to drain the spool."""
        try:
            super().close()
        finally:
            self.uploader.close()
