"""Sharded ingest: which ingest process owns which run (``runlake ingest --shard I/N``).

N ingest processes (on one machine or many) split a root's runs between them and commit to
one lake at once. A run belongs to exactly one shard, :func:`shard_of`, computed from its
run id alone, so every writer (rank) of a run goes to the same shard and every key of the
state tables (``runs`` by run id, ``writers`` by run id and writer, ``ingest_ledger`` by
segment, whose path names the run) and every frame key (run id, writer, seq, checksum) has
exactly one owner: two shards never write rows for the same key, and a segment copied into
another project (same run id) is still deduplicated by the one shard that owns the run. The
project is not hashed for that reason. Limitation: one run's ranks are never split across
shards, so a single huge run is ingested by one process.

Each shard commits as its own Delta application, :func:`app_id` (``shard-I-of-N``;
unsharded ingest is ``runlake-ingest``), so the lake's exactly-once protocol (chunks,
``_commits``, recovery) runs per shard without the shards ever touching each other's rows
(:mod:`runlake.store.lake`). The lake records N (:mod:`runlake.store._lake_shards`), and an
exclusive lease per shard keeps a second process of the same shard from loading anything.

Filtering happens at the run-folder level of discovery: a shard never lists the writer
folders or ``lstat``s the segments of another shard's runs.
"""

from __future__ import annotations

import re
import zlib
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runlake.schemas.errors import ConfigError, StoreError

__all__ = ["Shard", "app_id", "parse_shard", "shard_of", "sharded_backend"]

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_MAX_SHARDS = 4096


def shard_of(run_id: str, n: int) -> int:
    """The shard (1..n) that owns run ``run_id``: ``crc32(run_id) % n + 1``.

    crc32 is stable across processes, machines and Python versions (``hash()`` is not)."""
    return zlib.crc32(run_id.encode("utf-8", "surrogatepass")) % n + 1


def app_id(i: int, n: int) -> str:
    """The Delta application id of shard ``i`` of ``n``."""
    return f"shard-{i}-of-{n}"


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``i`` of ``n`` (1 <= i <= n)."""

    i: int
    n: int

    @property
    def app(self) -> str:
        return app_id(self.i, self.n)

    @property
    def label(self) -> str:
        return f"{self.i}/{self.n}"

    def owns(self, run_id: str) -> bool:
        """Whether this shard ingests run ``run_id``. Entries outside any run (a linked
        project folder, reported with run id ``""``) belong to shard 1 (crc32 of "" is 0)."""
        return shard_of(run_id, self.n) == self.i


def parse_shard(text: str) -> Shard:
    """``"I/N"`` as a :class:`Shard`.

    Raises:
        ConfigError: not two whole numbers ``I/N`` with ``1 <= I <= N`` (one line saying
            what was given and what is expected).
    """
    m = _SPEC.fullmatch(str(text))
    hint = ("expected I/N with whole numbers 1 <= I <= N, e.g. --shard 1/2 and --shard 2/2 "
            "for two ingest processes")
    if m is None:
        raise ConfigError(f"--shard {text!r} is not of the form I/N: {hint}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise ConfigError(f"--shard {text!r}: the shard count N must be at least 1; {hint}")
    if n > _MAX_SHARDS:
        raise ConfigError(f"--shard {text!r}: at most {_MAX_SHARDS} shards; {hint}")
    if not 1 <= i <= n:
        raise ConfigError(f"--shard {text!r}: shard {i} does not exist among {n} (shards are "
                          f"numbered 1 to {n}); {hint}")
    return Shard(i, n)


@contextmanager
def sharded_backend(root: Path, db: str | Path | None, shard: Shard,
                    wait_s: float | None = None) -> Iterator[Any]:
    """The lake backend of ``shard``, held for the block: the root's ingest lock shared
    (other shards run at once; unsharded ingest and ``runlake compact`` wait), then the
    shard's lease in the lake (:class:`runlake.store._lake_shards.ShardLease`), whose
    check fences every write of the backend.

    Raises:
        StoreBusyError: another process holds this shard (after ``wait_s``), or an
            unsharded ingest holds the root.
        StoreError: the root's store is a DuckDB file (one writer only; convert it first).
    """
    from runlake.ingest.lock import IngestLock
    from runlake.schemas.segments import STORE_FILE
    from runlake.store import locate
    from runlake.store._lake_shards import ShardLease
    from runlake.store.lake import LakeBackend

    from runlake.schemas.objects import is_url

    remote = is_url(str(root))  # a bucket has no lock file: the lake's leases suffice
    with nullcontext() if remote else IngestLock(root, shared=True):
        location = locate(root, db, "lake")
        if not remote and db is None and (root / STORE_FILE).exists() \
                and not location.exists():
            raise StoreError(
                f"the root {root}'s store is the DuckDB file {root / STORE_FILE}, which takes "
                f"one writer: run `runlake ingest --lake --root {root}` once (it converts the "
                f"file into a lake), then start the shards")
        backend = LakeBackend(location, app=shard.app, shards=shard.n)
        backend.create()  # the lake first: a lease in _runlake/ must not look like a lake
        with ShardLease(location.path, shard.app, wait_s=wait_s) as lease:
            backend.fence = lease.check
            yield backend
