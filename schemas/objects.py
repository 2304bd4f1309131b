"""Object storage (the S3 API): the one module that talks to a bucket.

A root, a spool's destination or a lake may be an ``s3://bucket/prefix`` URL. Every part of
runlake that reads or writes objects (the emitter's uploader, ingest's listing and reads,
the lake's own metadata and leases, benches, tests) goes through :class:`ObjectStore`, so
the settings, the retry policy and the error messages live here once. boto3 (the ``s3``
extra) is imported only when an :class:`ObjectStore` is made: a local-only install never
needs it.

Settings are the usual AWS environment variables, read when a store is made:
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for an S3-compatible server,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, and
``AWS_REGION``/``AWS_DEFAULT_REGION`` (default ``us-east-1``). :func:`storage_options`
turns the same settings into delta-rs's, so the lake and the segments never disagree on
where the bucket is.

Objects are immutable in runlake's use: segments are written once with :meth:`put_new`
(S3's ``If-None-Match: *``), which never replaces an object; only leases and small
metadata files are replaced, with :meth:`put_if_match` (``If-Match: <etag>``), so two
processes racing for one never both win.

Failures are bounded: each request is retried at most ``attempts`` times (botocore's
"standard" mode: throttling and 5xx answers back off), with ``timeout_s`` to connect and
to read, and then raises :class:`ObjectStoreError` with one line that names the URL and the
cause (a missing bucket, refused credentials, an unreachable endpoint).
"""

from __future__ import annotations

import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from runlake.schemas.errors import StoreError

__all__ = [
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "ObjectStoreError",
    "SCHEME",
    "is_url",
    "split_url",
    "storage_options",
]

SCHEME = "s3://"
"""The URL scheme of object-storage roots and lakes."""
_DEFAULT_REGION = "us-east-1"


class ObjectStoreError(StoreError):
    """A request to object storage failed after its retries (the message says why)."""


class ObjectMissing(ObjectStoreError):
    """The object is not (or no longer) there."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as listed: its key relative to the store's prefix, size, etag, mtime (s)."""

    rel: str
    size: int
    etag: str
    mtime: float


def is_url(root: Any) -> bool:
    """Whether ``root`` names object storage (``s3://...``) rather than a local path."""
    return isinstance(root, str) and root.startswith(SCHEME)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``; a clear error for a malformed URL."""
    if not is_url(url):
        raise ObjectStoreError(f"{url!r} is not an object-storage URL (expected s3://bucket/prefix)")
    bucket, _, prefix = url[len(SCHEME):].partition("/")
    prefix = prefix.strip("/")
    if not bucket or "\\" in bucket or bucket in (".", ".."):
        raise ObjectStoreError(f"{url!r} has no bucket name (expected s3://bucket/prefix)")
    _check_rel(prefix, url, allow_empty=True)
    return bucket, prefix


def _check_rel(rel: str, where: str, *, allow_empty: bool = False) -> None:
    parts = rel.split("/") if rel else []
    if not parts and not allow_empty:
        raise ObjectStoreError(f"empty object key under {where}")
    for part in parts:
        if part in ("", ".", "..") or "\x00" in part:
            raise ObjectStoreError(
                f"object key {rel!r} under {where} has an empty, '.', '..' or NUL part "
                "(keys never leave their prefix)")


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or _DEFAULT_REGION


def storage_options(url: str) -> dict[str, str]:
    """delta-rs ``storage_options`` for a lake at ``url``, from the same settings.

    Concurrent writers rely on S3's conditional writes (delta-rs 1.x's default for S3;
    no DynamoDB lock table), which AWS S3, MinIO, R2 and moto's server honour.
    """
    split_url(url)
    opts = {"AWS_REGION": _region()}
    endpoint = _endpoint()
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            opts[name] = os.environ[name]
    return opts


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {}) if isinstance(response, dict) else {}
    return str(err.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")


_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                "ExpiredToken", "InvalidToken"}


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(url: str, timeout_s: float, attempts: int):
    """A boto3 S3 client for the current settings, made once per process and settings.

    Making one costs ~0.4 s (botocore loads its service models each time), which an
    ingest pass would otherwise pay per store it opens; clients are thread-safe, and the
    key holds the pid (a forked child makes its own) and every setting that shapes it (a
    changed credential gets a new client).
    """
    key = (os.getpid(), _endpoint(), _region(), timeout_s, attempts,
           *(os.environ.get(n) for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_SESSION_TOKEN", "AWS_PROFILE")))
    with _CLIENTS_LOCK:  # boto3 sessions are not thread-safe while they make a client
        client = _CLIENTS.get(key)
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:  # the optional extra is missing
                raise ObjectStoreError(
                    f"{url}: object storage needs boto3: pip install 'runlake[s3]'") from exc
            config = Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                            retries={"max_attempts": attempts, "mode": "standard"},
                            s3={"addressing_style": "path"} if _endpoint() else None)
            client = boto3.session.Session().client(
                "s3", endpoint_url=_endpoint(), region_name=_region(), config=config)
            _CLIENTS[key] = client
        return client


class ObjectStore:
    """One bucket and key prefix (``s3://bucket/prefix``), with bounded retries.

    Safe to share between threads (boto3 clients are). Keys given to its methods are
    relative to the prefix and may not contain empty, ``.`` or ``..`` parts.
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self.bucket, self.prefix = split_url(url)
        self.url = SCHEME + self.bucket + (f"/{self.prefix}" if self.prefix else "")
        self._client = _client(self.url, timeout_s, attempts)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def key(self, rel: str) -> str:
        """The full object key of ``rel`` (checked: never outside the prefix)."""
        _check_rel(rel, self.url)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def url_of(self, rel: str) -> str:
        """``s3://bucket/prefix/rel``."""
        return f"{SCHEME}{self.bucket}/{self.key(rel)}"

    def _error(self, what: str, rel: str, exc: BaseException) -> ObjectStoreError:
        code = _code(exc)
        where = self.url_of(rel) if rel else self.url
        if code in ("NoSuchBucket",):
            return ObjectStoreError(f"{where}: bucket {self.bucket!r} does not exist "
                                    "(create it, or check the URL)")
        if code in ("NoSuchKey", "404"):
            return ObjectMissing(f"{where}: no such object ({what})")
        if code in _CREDENTIALS:
            return ObjectStoreError(f"{where}: the credentials were refused ({code}); check "
                                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
        name = type(exc).__name__
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                    "ConnectionClosedError") or isinstance(exc, OSError):
            return ObjectStoreError(f"{where}: the endpoint {_endpoint() or 'AWS S3'} is "
                                    f"unreachable ({name}); {what} failed after retries")
        return ObjectStoreError(f"{where}: {what} failed: {code or name}: {exc}")

    def _call(self, what: str, rel: str, fn, **kwargs):
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ObjectStoreError:
            raise
        except Exception as exc:  # botocore raises many unrelated classes
            raise self._error(what, rel, exc) from exc

    def check(self) -> None:
        """Fail with one clear line when the bucket is missing, refused or unreachable."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ObjectStoreError(f"{self.url}: bucket {self.bucket!r} does not exist "
                                       "(create it, or check the URL)") from exc
            raise self._error("checking the bucket", "", exc) from exc

    def put_new(self, rel: str, data: bytes) -> bool:
        """Write ``rel`` only if no object has that key; False (nothing written) if one has."""
        try:
            self._client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=data,
                                    IfNoneMatch="*")
            return True
        except Exception as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise self._error("put", rel, exc) from exc

    def put(self, rel: str, data: bytes) -> str:
        """Write (or replace) ``rel``; returns the new etag."""
        out = self._call("put", rel, self._client.put_object, Key=self.key(rel), Body=data)
        return out["ETag"]

    def put_if_match(self, rel: str, data: bytes, etag: str) -> str | None:
        """Replace ``rel`` only if its etag is still ``etag``; the new etag, or None if not."""
        try:
            out = self._client.put_object(Bucket=self.bucket, Key=self.key(rel), Body=data,
                                          IfMatch=etag)
            return out["ETag"]
        except Exception as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409",
                              "NoSuchKey", "404"):
                return None
            raise self._error("conditional put", rel, exc) from exc

    def get(self, rel: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``rel`` (to its end when ``end`` is None)."""
        kwargs: dict[str, Any] = {"Key": self.key(rel)}
        if start or end is not None:
            if end is not None and end <= start:
                return b""
            kwargs["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        out = self._call("get", rel, self._client.get_object, **kwargs)
        try:
            return out["Body"].read()
        except Exception as exc:
            raise self._error("get (reading the body)", rel, exc) from exc

    def head(self, rel: str) -> ObjectInfo | None:
        """The object's size and etag, or None if there is none."""
        try:
            out = self._client.head_object(Bucket=self.bucket, Key=self.key(rel))
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error("head", rel, exc) from exc
        return ObjectInfo(rel, int(out["ContentLength"]), out["ETag"],
                          out["LastModified"].timestamp())

    def _pages(self, rel_prefix: str, **extra: Any) -> Iterator[dict]:
        if rel_prefix:
            _check_rel(rel_prefix.rstrip("/"), self.url)
        token = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": self._base() + rel_prefix, **extra}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", rel_prefix, self._client.list_objects_v2, **kwargs)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def _base(self) -> str:
        return self.prefix + "/" if self.prefix else ""

    def list(self, rel_prefix: str = "", *, odd: list[str] | None = None
             ) -> Iterator[ObjectInfo]:
        """Every object under ``prefix/rel_prefix`` (keys relative to the store's prefix).

        Keys runlake never writes (``a//b``, ``a/./b``) are not yielded, never followed;
        their full keys are appended to ``odd`` when a list is given, so a caller can
        report them.
        """
        base = self._base()
        for page in self._pages(rel_prefix):
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(base):]
                if not rel or posixpath.normpath(rel) != rel:
                    if odd is not None:
                        odd.append(obj["Key"])
                    continue
                yield ObjectInfo(rel, int(obj["Size"]), obj["ETag"],
                                 obj["LastModified"].timestamp())

    def folders(self, rel_prefix: str = "") -> list[str]:
        """The names one level below ``prefix/rel_prefix`` that hold objects (S3 "common
        prefixes"), so a caller can skip a whole subtree without listing it."""
        base = self._base() + rel_prefix
        names = []
        for page in self._pages(rel_prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(base):].rstrip("/")
                if name:
                    names.append(name)
        return names

    def delete(self, rel: str) -> None:
        """Remove ``rel`` (no error if it is already gone)."""
        self._call("delete", rel, self._client.delete_object, Key=self.key(rel))
