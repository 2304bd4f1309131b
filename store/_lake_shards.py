"""Shards of one lake: the shard count it is ingested with, and one lease per shard.

Sharded ingest (:mod:`runlake.ingest.shard`) runs N processes, each its own Delta
application ``shard-I-of-N``, into one lake. Two facts keep them exactly-once together:

* ``_runlake/shards.json`` records N, written once by the first sharded ingest (created
  exclusively: two first shards racing agree on one file). Ingest with another N, or
  unsharded ingest on a sharded lake, is refused (:func:`check_shards`): with another N a
  run could have two owners, and two owners of a state-table key would each append their
  own "latest" row. To change N, stop every ingester of the lake, remove the file, start
  the new shards: every ingest process numbers its chunks above every chunk already in
  ``_commits`` (:meth:`runlake.store.lake.LakeBackend.prepare`), so the new owner's rows
  are the latest ones.
* ``_runlake/shards/shard-I-of-N.lease`` is held by the one process ingesting shard I/N
  (:class:`ShardLease`). A second one waits up to ``wait_s`` and then gives up with a
  :class:`StoreBusyError` naming the holder's host and pid. On a local (or shared POSIX)
  lake the lease is an ``fcntl.flock``: the kernel releases it when its process dies
  (SIGKILL included), and it cannot be lost while the process lives. On an ``s3://`` lake
  it is an object (host, pid, token, expiry) created with ``put_new`` and renewed every
  TTL/3 with ``put_if_match``; a lease that did not change for TTL (the waiter's own
  clock, so clock skew between hosts does not matter), or whose expiry is more than TTL
  past, is taken over with ``put_if_match`` on the etag seen. The holder checks its lease
  before every append of a chunk (:meth:`ShardLease.check`) and stops once less than a
  margin of TTL/3 is left since its last confirmed renewal: a holder that was paused or
  cut off never commits after another has taken over (its half-written chunk stays
  invisible and the new holder's ``prepare()`` deletes it).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import socket
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from runlake.schemas.errors import ConfigError, StoreBusyError, StoreError

__all__ = ["ANY_SHARDS", "LEASE_ENV", "LEASE_TTL_S", "SHARDS_FILE", "ShardLease",
           "check_shards", "lease_ttl", "retry_conflicts"]

ANY_SHARDS = 0
"""``LakeBackend(shards=ANY_SHARDS)``: no shard-count check (``runlake compact``, which
holds the root's lock exclusively, so no shard of a local root runs meanwhile)."""
CONFLICT_ATTEMPTS = 8
"""Tries of one Delta commit that conflicts with another shard's (backoff 0.05 s .. 3 s)."""
SHARDS_FILE = "_runlake/shards.json"
"""Where a lake records the shard count it is ingested with (relative to the lake)."""
LEASES = "_runlake/shards"
LEASE_TTL_S = 30.0
"""Default lifetime of an object-storage shard lease without renewal (seconds)."""
LEASE_ENV = "RUNLAKE_SHARD_LEASE_S"
_HOST = socket.gethostname()


def lease_ttl() -> float:
    """The shard lease TTL: ``$RUNLAKE_SHARD_LEASE_S`` or :data:`LEASE_TTL_S`."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return LEASE_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if not ttl > 0:
        raise ConfigError(f"{LEASE_ENV}={raw!r} is not a positive number of seconds "
                          f"(the shard lease TTL; default {LEASE_TTL_S:g})")
    return ttl


def _is_url(lake: Any) -> bool:
    from runlake.schemas.objects import is_url

    return is_url(str(lake))


def _store(lake: str):
    from runlake.schemas.objects import ObjectStore

    return ObjectStore(str(lake))


def _recorded(lake: Any) -> tuple[int | None, str]:
    """The N in the lake's shards.json (None: no file) and the file's name for messages."""
    if _is_url(lake):
        store = _store(lake)
        where = store.url_of(SHARDS_FILE)
        from runlake.schemas.objects import ObjectMissing

        try:
            raw = store.get(SHARDS_FILE)
        except ObjectMissing:
            return None, where
    else:
        path = Path(lake) / SHARDS_FILE
        where = str(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, where
    try:
        return int(json.loads(raw)["shards"]), where
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"cannot read {where}: the lake's shard record is damaged; stop every "
                         f"ingester of the lake, remove that file and start them again") from None


def _record(lake: Any, n: int) -> bool:
    """Create shards.json saying N (only if absent); False when another process did first."""
    data = (json.dumps({"shards": n, "since": time.time(), "by": f"{_HOST}:{os.getpid()}"})
            + "\n").encode()
    if _is_url(lake):
        return _store(lake).put_new(SHARDS_FILE, data)
    path = Path(lake) / SHARDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".shards.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)  # atomic and exclusive: the first of two racing shards wins
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def check_shards(lake: Any, n: int | None) -> None:
    """Refuse ingest with ``n`` shards (None: unsharded) where the lake says otherwise;
    record ``n`` on a lake ingested sharded for the first time.

    Raises:
        StoreError: one line naming the lake, the N it is ingested with and what to run.
    """
    have, where = _recorded(lake)
    if have is None and n is not None:
        if _record(lake, n):
            return
        have, where = _recorded(lake)
    if have == n:
        return
    how = (f"stop every ingester of this lake, remove {where} and start them again if you "
           f"mean to change it")
    if n is None:
        raise StoreError(f"the lake {lake} is ingested in {have} shards ({where}): run "
                         f"`runlake ingest --shard I/{have}` for each I in 1..{have}, not "
                         f"unsharded ingest ({how})")
    raise StoreError(f"the lake {lake} is ingested in {have} shards ({where}), not {n}: run "
                     f"`runlake ingest --shard I/{have}` ({how})")


def retry_conflicts(dt, write: Callable[[], Any], fence: Callable[[], None] | None = None):
    """Run ``write`` (one Delta commit on ``dt``); on a commit conflict with a concurrent
    writer (another shard's delete or compaction), bring ``dt`` up to date and try again,
    at most :data:`CONFLICT_ATTEMPTS` times with a growing, jittered pause. A conflicting
    commit did not happen, so trying again never writes twice. ``fence`` runs before each
    try (the shard lease's check)."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(CONFLICT_ATTEMPTS):
        if fence is not None:
            fence()
        try:
            return write()
        except CommitFailedError:
            if attempt == CONFLICT_ATTEMPTS - 1:
                raise
        time.sleep(min(3.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
        dt.update_incremental()


def _holder_text(info: dict) -> str:
    since = info.get("since")
    age = f", for {time.time() - float(since):.0f}s" if isinstance(since, (int, float)) else ""
    return f"host {info.get('host', '?')} pid {info.get('pid', '?')}{age}"


class ShardLease:
    """The exclusive lease of one shard of one lake, held as a context manager.

    Args:
        lake: the lake's folder or ``s3://`` URL.
        app: the shard's application id (``shard-I-of-N``).
        wait_s: how long to wait for another holder (None: 3 s on a local lake, TTL + 5 s
            on object storage: long enough to take over the lease of a killed holder).
        ttl_s: object storage only: the lease's lifetime without renewal.

    Raises:
        StoreBusyError: another process still holds the shard after ``wait_s`` (the message
            names its host and pid).
    """

    def __init__(self, lake: Any, app: str, *, wait_s: float | None = None,
                 ttl_s: float | None = None) -> None:
        self.lake = lake
        self.app = app
        self.rel = f"{LEASES}/{app}.lease"
        self.remote = _is_url(lake)
        self.ttl = lease_ttl() if ttl_s is None else float(ttl_s)
        self.wait_s = (wait_s if wait_s is not None
                       else (self.ttl + 5.0 if self.remote else 3.0))
        self.token = uuid.uuid4().hex
        self._since = time.time()
        self._fd: int | None = None
        self._store = None
        self._etag: str | None = None
        self._valid_until = 0.0  # monotonic: last confirmed renewal's start + TTL
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- holding ------------------------------------------------------------------------
    def __enter__(self) -> "ShardLease":
        if self.remote:
            self._acquire_remote()
        else:
            self._acquire_local()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _info(self) -> dict:
        return {"host": _HOST, "pid": os.getpid(), "token": self.token, "app": self.app,
                "since": self._since, "expires": time.time() + self.ttl}

    def _busy(self, holder: str) -> StoreBusyError:
        return StoreBusyError(
            f"shard {self.app} of the lake {self.lake} is held by {holder} (lease "
            f"{self._where()}); waited {self.wait_s:g}s. Another `runlake ingest --shard` of "
            f"the same shard is running: stop it, or give this one another shard")

    def _where(self) -> str:
        return self._store.url_of(self.rel) if self._store is not None else \
            str(Path(self.lake) / self.rel)

    def _acquire_local(self) -> None:
        path = Path(self.lake) / self.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            what = "a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or exc)
            raise StoreError(f"cannot open the shard lease {path}: {what}; remove it (ingest "
                             f"creates it again)") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"the shard lease {path} is not a regular file: remove it")
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    try:
                        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
                    except ValueError:
                        info = {}
                    os.close(fd)
                    raise self._busy(_holder_text(info)) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self._info()).encode(), 0)
        self._fd = fd

    def _acquire_remote(self) -> None:
        self._store = store = _store(self.lake)
        deadline = time.monotonic() + self.wait_s
        seen: tuple[str, float] | None = None  # (etag, monotonic time first seen)
        while True:
            started = time.monotonic()
            body = json.dumps(self._info()).encode()
            if store.put_new(self.rel, body):
                self._held(store.head(self.rel), started)
                return
            head = store.head(self.rel)
            if head is None:
                continue  # released meanwhile: try again at once
            if seen is None or seen[0] != head.etag:
                seen = (head.etag, started)
            info = self._read_remote()
            stale = started - seen[1] >= self.ttl or \
                time.time() > float(info.get("expires", time.time())) + self.ttl
            if stale:
                etag = store.put_if_match(self.rel, body, head.etag)
                if etag is not None:
                    self._held(None, started, etag)
                    return
                seen = None
                continue
            if time.monotonic() >= deadline:
                raise self._busy(_holder_text(info))
            time.sleep(min(0.5, max(0.05, self.ttl / 20)))

    def _read_remote(self) -> dict:
        from runlake.schemas.objects import ObjectMissing

        try:
            return json.loads(self._store.get(self.rel))
        except (ObjectMissing, ValueError):
            return {}

    def _held(self, head, started: float, etag: str | None = None) -> None:
        self._etag = etag or (head.etag if head is not None else None)
        self._valid_until = started + self.ttl
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                        name=f"runlake-lease-{self.app}")
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            started = time.monotonic()
            try:
                etag = self._store.put_if_match(self.rel, json.dumps(self._info()).encode(),
                                                self._etag)
            except StoreError as exc:  # unreachable for now: the lease runs out unless renewed
                if time.monotonic() > self._valid_until:
                    self._lose(f"it could not be renewed ({exc})")
                continue
            if etag is None:
                self._lose("another ingester took it over (this one was paused or cut off "
                           "for longer than the lease TTL)")
                return
            with self._lock:
                self._etag = etag
                self._valid_until = started + self.ttl

    def _lose(self, why: str) -> None:
        with self._lock:
            self._lost = why

    def check(self) -> None:
        """Raise unless the lease surely stays ours for the next TTL/3 (an append and a
        commit fit in that margin). Called before each append of a chunk."""
        if self._fd is not None or not self.remote:
            return  # a flock cannot be lost while this process lives
        with self._lock:
            lost = self._lost
            left = self._valid_until - time.monotonic()
        if lost is None and left < self.ttl / 3:
            lost = f"it was last renewed {self.ttl - left:.0f}s ago (TTL {self.ttl:g}s)"
        if lost is not None:
            raise StoreError(f"lost the lease of shard {self.app} of the lake {self.lake}: "
                             f"{lost}; this chunk was not committed (nothing is lost: the "
                             f"shard's next holder loads it); run ingest again")

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self._lost is None and self._etag is not None:
                try:  # a conditional delete is not in the S3 API: expire it instead
                    gone = json.dumps({**self._info(), "expires": 0, "released": True})
                    self._store.put_if_match(self.rel, gone.encode(), self._etag)
                except StoreError:
                    pass  # it runs out after TTL
