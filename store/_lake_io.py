"""The lake's own small files and its data files, on a local filesystem or object storage.

A lake is a folder (``Path``) or an ``s3://bucket/prefix`` URL. runlake's own files
(``_runlake/lake.json``, reader leases) and the file operations of compaction and vacuum
(read a data file, its age, delete it) go through one of two classes with the same
methods, so :class:`runlake.store._lake_layout.LakeFiles` and its callers never branch
on the kind:

* :class:`LocalIO`: files, written atomically (a temp file renamed into place).
* :class:`ObjectIO`: objects through :class:`runlake.schemas.objects.ObjectStore` (one
  home for settings, retries and errors); a new file is created with ``put_new``, so two
  processes racing to create ``lake.json`` agree on one. Object storage has no folders:
  a "folder" exists once an object lies under it.

Delta tables get :func:`storage_options` (delta-rs reads and writes the data itself), and
Arrow readers a pyarrow S3 filesystem with the same settings (:meth:`ObjectIO.arrow`):
DuckDB's httpfs extension is never needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Union
from urllib.parse import urlparse

from runlake.schemas.objects import SCHEME, ObjectStore, is_url, split_url
from runlake.schemas.objects import storage_options as _storage_options

__all__ = ["LakeIO", "LocalIO", "ObjectIO", "io_for", "storage_options"]


def storage_options(path: Path | str) -> dict[str, str] | None:
    """delta-rs ``storage_options`` for a table at ``path`` (None for a local one)."""
    return _storage_options(str(path)) if is_url(path) else None


class LocalIO:
    """A lake folder on a local (or shared POSIX) filesystem."""

    url = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def join(self, rel: str) -> Path:
        return self.path / rel

    def read_text(self, rel: str) -> str | None:
        """The file's text, None if it is missing (OSError if unreadable)."""
        try:
            return (self.path / rel).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write(self, rel: str, text: str, *, new: bool = False) -> bool:
        """Write ``rel`` atomically; ``new``: only if it does not exist (False if it does)."""
        path = self.path / rel
        if new and path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return True

    def delete(self, rel: str) -> None:
        (self.path / rel).unlink(missing_ok=True)

    def has(self, rel_dir: str) -> bool:
        """Whether the folder ``rel_dir`` exists."""
        return (self.path / rel_dir).is_dir()

    def files(self, rel_dir: str, suffix: str = "") -> Iterator[tuple[str, float]]:
        """``(rel, mtime)`` of the files directly in ``rel_dir`` whose names end in
        ``suffix`` (none if the folder is missing)."""
        folder = self.path / rel_dir
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for e in entries:
            if e.name.endswith(suffix) and e.is_file(follow_symlinks=False):
                try:
                    yield f"{rel_dir}/{e.name}", e.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue

    def arrow(self, uris: list[str]) -> tuple[list[str], None]:
        """Paths and filesystem for pyarrow over data files listed by delta-rs."""
        return [u.removeprefix("file://") for u in uris], None

    def file_mtime(self, uri: str) -> float | None:
        try:
            return os.stat(uri.removeprefix("file://")).st_mtime
        except FileNotFoundError:
            return None

    def delete_file(self, uri: str) -> None:
        Path(uri.removeprefix("file://")).unlink(missing_ok=True)


class ObjectIO:
    """A lake at an ``s3://bucket/prefix`` URL."""

    url = True

    def __init__(self, url: str) -> None:
        self.store = ObjectStore(url)
        self.path = self.store.url
        self._fs = None

    def join(self, rel: str) -> str:
        return f"{self.path}/{rel}"

    def read_text(self, rel: str) -> str | None:
        if self.store.head(rel) is None:
            return None
        return self.store.get(rel).decode("utf-8")

    def write(self, rel: str, text: str, *, new: bool = False) -> bool:
        data = text.encode("utf-8")
        if new:
            return self.store.put_new(rel, data)
        self.store.put(rel, data)
        return True

    def delete(self, rel: str) -> None:
        self.store.delete(rel)

    def has(self, rel_dir: str) -> bool:
        return next(iter(self.store.list(rel_dir.rstrip("/") + "/")), None) is not None

    def files(self, rel_dir: str, suffix: str = "") -> Iterator[tuple[str, float]]:
        base = rel_dir.rstrip("/") + "/"
        for obj in self.store.list(base):
            if "/" not in obj.rel[len(base):] and obj.rel.endswith(suffix):
                yield obj.rel, obj.mtime

    def arrow(self, uris: list[str]):
        """``bucket/key`` paths and a pyarrow S3 filesystem (settings of the environment,
        as :func:`runlake.schemas.objects.storage_options` reads them)."""
        if self._fs is None:
            from pyarrow import fs

            opts = _storage_options(self.path)
            kw = {"region": opts["AWS_REGION"], "connect_timeout": 5.0,
                  "request_timeout": 30.0,
                  "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3)}
            if "AWS_ENDPOINT_URL" in opts:
                ep = urlparse(opts["AWS_ENDPOINT_URL"])
                kw["endpoint_override"] = ep.netloc + ep.path.rstrip("/")
                kw["scheme"] = ep.scheme or "https"
            for opt, name in (("AWS_ACCESS_KEY_ID", "access_key"),
                              ("AWS_SECRET_ACCESS_KEY", "secret_key"),
                              ("AWS_SESSION_TOKEN", "session_token")):
                if opt in opts:
                    kw[name] = opts[opt]
            self._fs = fs.S3FileSystem(**kw)
        return [u.removeprefix(SCHEME) for u in uris], self._fs

    def _rel(self, uri: str) -> str:
        bucket, key = split_url(uri)
        if bucket != self.store.bucket or not key.startswith(self.store.prefix):
            raise ValueError(f"{uri} is not inside the lake {self.path}")
        return key[len(self.store.prefix):].lstrip("/")

    def file_mtime(self, uri: str) -> float | None:
        info = self.store.head(self._rel(uri))
        return None if info is None else info.mtime

    def delete_file(self, uri: str) -> None:
        self.store.delete(self._rel(uri))


LakeIO = Union[LocalIO, ObjectIO]


_OBJECT_IO: dict[tuple, ObjectIO] = {}


def io_for(path: Path | str) -> LakeIO:
    """The I/O of the lake at ``path`` (an ``s3://`` URL, or a folder). One
    :class:`ObjectIO` per URL and settings in a process (a client takes ~50 ms to make)."""
    if not is_url(path):
        return LocalIO(Path(path))
    key = (str(path).rstrip("/"), tuple(sorted(_storage_options(str(path)).items())))
    io = _OBJECT_IO.get(key)
    if io is None:
        io = _OBJECT_IO[key] = ObjectIO(str(path))
    return io
