"""Where a pass reads segments from: a local root folder, or an object-storage prefix.

Both kinds give ingest the same records (:class:`~runlake.ingest.discover.SegmentFile` and
:class:`~runlake.ingest.discover.Refused`, keyed by the segment's path relative to the
root) and the same way to read a segment's bytes by offset, so everything after reading
bytes (frames, ledger, quarantine, status) is one code path.

* :class:`LocalSource`: :func:`~runlake.ingest.discover.discover` and a descriptor opened
  with ``O_NOFOLLOW`` at every level (:func:`~runlake.ingest.discover.open_segment`).
* :class:`ObjectSource` (``s3://bucket/prefix``): one listing of the prefix instead of a
  folder walk, and ranged GETs. Every object is a sealed segment written once (the
  emitter's uploader never appends nor replaces), so ``sealed`` is True and the size is the
  listing's. A multipart upload that was never completed is not an object (S3 lists only
  completed ones), so a torn upload is never read. Keys that are not segment names are
  ignored like other files in a local root; a key in the layout's place that ingest does
  not take (a segment name at the wrong depth, an ``.open`` object) is :class:`Refused`,
  reported once. The lake (``<prefix>/runlake-lake/``) and dotted names are never listed
  as segments.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from runlake.ingest.discover import Refused, SegmentFile, discover, open_segment, read_at
from runlake.schemas.blobs import BLOBS_DIR
from runlake.schemas.objects import ObjectStore, is_url
from runlake.schemas.segments import OPEN_SUFFIX, segment_seq
from runlake.store.location import LAKE_DIR

__all__ = ["LocalSource", "ObjectSource", "Opened", "Source", "source_for"]

Owns = Union[Callable[[str], bool], None]

PREFETCH = 8
"""Objects fetched at once ahead of the pass (threads; boto3 clients are thread-safe)."""
PREFETCH_MAX_BYTES = 8 << 20
"""Objects with more unread bytes than this are not prefetched (memory stays bounded by
PREFETCH x this), but read by ranges as the pass reaches them."""


@dataclass
class Opened:
    """A segment opened for reading: ``read(n, offset)`` returns up to ``n`` bytes (fewer
    only at its end); ``close()`` when done."""

    sealed: bool
    size: int
    read: Callable[[int, int], bytes]
    close: Callable[[], None]


class LocalSource:
    """A root folder on a local or shared filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def discover(self, owns: Owns = None) -> tuple[list[SegmentFile], list[Refused]]:
        return discover(self.root, owns)

    def prefetch(self, todo: list[tuple[SegmentFile, int]]) -> None:
        """Nothing to do: local reads are not round trips."""

    def close(self) -> None:
        """Nothing to release."""

    def open(self, seg: SegmentFile) -> Opened | None:
        """None when the segment vanished; raises UnsafeEntry/OSError like open_segment."""
        opened = open_segment(self.root, seg)
        if opened is None:
            return None
        fd, sealed, size = opened
        return Opened(sealed, size, lambda n, offset: read_at(fd, n, offset),
                      lambda: os.close(fd))


class ObjectSource:
    """An ``s3://bucket/prefix`` root: its objects are the sealed segments."""

    def __init__(self, url: str, store: ObjectStore | None = None) -> None:
        self.store = store or ObjectStore(url)
        self.url = self.store.url
        self._pool: ThreadPoolExecutor | None = None
        self._queue: list[tuple[SegmentFile, int]] = []
        self._ahead: dict[str, tuple[int, Future]] = {}

    def __str__(self) -> str:
        return self.url

    def discover(self, owns: Owns = None) -> tuple[list[SegmentFile], list[Refused]]:
        """One listing of the prefix, sorted by (project, run, writer, seq).

        Raises:
            ObjectStoreError: the bucket is missing, refused or unreachable (one line).
        """
        found: list[SegmentFile] = []
        refused: list[Refused] = []
        odd: list[str] = []
        # one delimited listing of the top level, so the lake's (ever growing) objects and
        # hidden folders are never listed; then each project folder in full
        objects = (obj for top in self.store.folders()
                   if top != LAKE_DIR and not top.startswith(".")
                   for obj in self.store.list(top + "/", odd=odd))
        for obj in objects:
            parts = obj.rel.split("/")
            if any(p.startswith(".") for p in parts):
                continue  # hidden names (never segments, as in a local root)
            if len(parts) > 3 and parts[2] == BLOBS_DIR:
                continue  # a run's media blobs (schemas.blobs), never a writer folder
            seq = segment_seq(parts[-1])
            if seq is None:
                continue  # not a segment name: ignored, like other files in a local root
            names = (*parts[:-1], "", "", "")[:3]
            if owns is not None and not owns(names[1]):
                continue
            if len(parts) != 4:
                refused.append(Refused(obj.rel, *names, (
                    f"{self.store.url_of(obj.rel)} is named like a segment but is not at "
                    f"<project>/<run>/<writer>/<seq>.jsonl.zst under the root; not read "
                    f"(move it there, or delete it)")))
                continue
            if parts[-1].endswith(OPEN_SUFFIX):
                refused.append(Refused(obj.rel[:-len(OPEN_SUFFIX)], *names, (
                    f"{self.store.url_of(obj.rel)} is an open segment: objects under an s3 "
                    f"root are sealed segments written once; not read (`runlake push` "
                    f"uploads a spool's segments sealed)")))
                continue
            found.append(SegmentFile(self.store.url_of(obj.rel), obj.rel, *parts[:3], seq,
                                     True, obj.size))
        for key in odd if owns is None else ():  # no run owns it: only unsharded reports
            if segment_seq(key.rsplit("/", 1)[-1]) is not None:
                refused.append(Refused(key, "", "", "", (
                    f"s3://{self.store.bucket}/{key} has an empty or '.' part in its key: "
                    f"runlake never writes such keys and does not read it (delete it)")))
        found.sort(key=lambda s: (s.project, s.run_id, s.writer, s.seq))
        keys = {s.key for s in found}
        return found, [r for r in refused if r.key not in keys]

    def prefetch(self, todo: list[tuple[SegmentFile, int]]) -> None:
        """Start fetching the unread bytes of these segments (``(segment, offset)``, in
        the order the pass reads them), :data:`PREFETCH` at a time: a pass is one GET per
        object, and each GET is a round trip, so fetching them one after another spent
        most of a pass waiting (150 objects on a local S3 server: 2.4 s of 4.3 s).
        Objects over :data:`PREFETCH_MAX_BYTES` are read by ranges when their turn comes."""
        self.close()
        self._queue = [(seg, start) for seg, start in todo
                       if seg.size - start <= PREFETCH_MAX_BYTES and seg.size > start]
        self._queue.reverse()  # popped from the end: the pass's order
        self._pool = ThreadPoolExecutor(PREFETCH, thread_name_prefix="runlake-get")
        for _ in range(PREFETCH):
            self._submit_next()

    def _submit_next(self) -> None:
        if self._pool is not None and self._queue:
            seg, start = self._queue.pop()
            self._ahead[seg.key] = (start, self._pool.submit(self.store.get, seg.key, start))

    def close(self) -> None:
        """Stop prefetching (end of a pass)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool, self._queue, self._ahead = None, [], {}

    def open(self, seg: SegmentFile) -> Opened:
        """Reads are served from the prefetched bytes, else ranged GETs (a vanished object
        raises ObjectMissing on read)."""
        store, key = self.store, seg.key
        ahead = self._ahead.pop(key, None)
        if ahead is not None:
            self._submit_next()
        got: dict[str, tuple[int, bytes]] = {}

        def read(n: int, offset: int) -> bytes:
            if n <= 0:
                return b""
            if ahead is not None and "data" not in got:
                got["data"] = (ahead[0], ahead[1].result())  # ObjectMissing surfaces here
            if "data" in got:
                base, data = got["data"]
                if base <= offset and offset + n <= base + len(data):
                    return data[offset - base:offset - base + n]
            return store.get(key, offset, offset + n)

        return Opened(True, seg.size, read, lambda: None)


Source = Union[LocalSource, ObjectSource]


def source_for(root: str | Path) -> Source:
    """The source of ``root``: an :class:`ObjectSource` for an ``s3://`` URL, else local."""
    return ObjectSource(root) if is_url(root) else LocalSource(Path(root))
