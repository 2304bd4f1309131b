"""Which store a root uses, and where it lies: the one resolver every command calls.

A root holds at most one store: the DuckDB file ``<root>/runlake.duckdb`` (the default,
nothing to configure) or the lake folder ``<root>/runlake-lake/`` (one Delta table per
store table, plus ``_runlake/`` for runlake's own files). Which one is decided, first rule
that answers wins:

1. an explicit ``kind`` (the CLI's ``--lake``/``--duckdb``, ``ingest(kind=...)``);
2. ``$RUNLAKE_STORE`` (``lake`` or ``duckdb``);
3. the root's setting file ``<root>/runlake-store.json`` (``{"store": "lake"}``, written by
   ``runlake ingest --lake``);
4. what exists: only a lake folder -> the lake;
5. the DuckDB file.

A root whose choices disagree is refused with a :class:`StoreError` naming both paths and
what to run, never guessed: both stores exist and nothing says which, or rule 1 or 2 names
a kind that the root's setting contradicts (``runlake ingest --lake`` converts instead of
asking, see :mod:`runlake.store.convert`). An explicit ``db`` (``--db PATH``) is the store
itself: a ``.duckdb`` file, or a lake folder (a directory with ``_runlake/`` inside); one
not made yet is a lake when the flag or ``$RUNLAKE_STORE`` says so or it is named
``runlake-lake`` (and does not end in ``.duckdb``), else a DuckDB file.

Object storage: an ``s3://bucket/prefix`` root's store is always the lake at
``s3://bucket/prefix/runlake-lake`` (a URL string in :attr:`StoreLocation.path`). It has
no setting file (a root on a bucket has one store, so there is nothing to choose), and a
DuckDB store is refused for it unless ``--db LOCAL_PATH`` names one explicitly (a DuckDB
file cannot live on a bucket). ``--db s3://...`` names a lake by URL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runlake.schemas.errors import StoreError
from runlake.schemas.objects import is_url
from runlake.schemas.segments import STORE_FILE, resolve_root

__all__ = ["KINDS", "LAKE_DIR", "LAKE_META", "SETTING_FILE", "STORE_ENV", "StoreLocation",
           "lake_url", "locate", "read_setting", "write_setting"]

Kind = Literal["duckdb", "lake"]

KINDS: tuple[str, ...] = ("duckdb", "lake")
STORE_ENV = "RUNLAKE_STORE"
"""The environment variable choosing the store kind for every root (``lake``|``duckdb``)."""
LAKE_DIR = "runlake-lake"
"""The lake folder inside a root (the DuckDB file is :data:`~runlake.schemas.segments.STORE_FILE`)."""
LAKE_META = "_runlake"
"""The folder inside a lake that marks it as one (runlake's own files: commits, leases)."""
SETTING_FILE = "runlake-store.json"
"""The root's store setting: ``{"store": "lake"}`` or ``{"store": "duckdb"}``."""


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A store: its kind, its path (the ``.duckdb`` file or the lake folder), its root.

    ``root`` is None when the store was given by path alone (``--db`` without ``--root``).
    A lake on object storage has an ``s3://`` URL string as its path (and an s3 root).
    """

    kind: Kind
    path: Path | str
    root: Path | str | None = None

    def exists(self) -> bool:
        """Whether the store is there (a lake counts once it has its ``_runlake/``)."""
        if self.kind == "lake" and is_url(self.path):
            from runlake.store._lake_layout import LakeFiles

            return LakeFiles(self.path).exists()
        if self.kind == "lake":
            return (self.path / LAKE_META).is_dir()
        return self.path.is_file()


def _checked(kind: str, source: str) -> Kind:
    if kind not in KINDS:
        raise StoreError(f"{source} is {kind!r}: expected 'lake' or 'duckdb'")
    return kind  # type: ignore[return-value]


def _env_kind() -> Kind | None:
    value = os.environ.get(STORE_ENV, "").strip().lower()
    return _checked(value, f"${STORE_ENV}") if value else None


def read_setting(root: Path) -> Kind | None:
    path = root / SETTING_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read the store setting {path}: {exc.strerror or exc}; fix "
                         f"its permissions or delete it") from None
    try:
        value = json.loads(text)["store"]
        if value not in KINDS:
            raise ValueError(value)
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"the store setting {path} is not {{\"store\": \"lake\"}} or "
                         f"{{\"store\": \"duckdb\"}}: fix it or delete it") from None
    return value


def _given(path: Path, root: Path | None, kind: Kind | None) -> StoreLocation:
    """The store named by ``--db``: its kind is what lies there."""
    if path.is_dir():
        if not (path / LAKE_META).is_dir():
            raise StoreError(f"{path} is a folder but not a runlake lake (no {LAKE_META}/ "
                             f"inside): pass --db a .duckdb file or a lake folder")
        found: Kind = "lake"
    elif path.exists():
        found = "duckdb"
    elif kind is not None:  # a store to create: the flag says which,
        found = kind
    elif path.suffix == ".duckdb":  # else the file's ending,
        found = "duckdb"
    else:  # else the environment, else a root's lake folder by its name
        found = _env_kind() or ("lake" if path.name == LAKE_DIR else "duckdb")
    if kind is not None and kind != found:
        raise StoreError(f"--{kind} was given but {path} is a "
                         f"{'lake folder' if found == 'lake' else 'DuckDB file'}: drop "
                         f"--{kind}, or pass --db the {'lake' if kind == 'lake' else 'file'}")
    return StoreLocation(found, path, root)


def locate(root: str | Path | None = None, db: str | Path | None = None,
           kind: str | None = None) -> StoreLocation:
    """The store of ``root`` (or the one at ``db``), by the rules of this module's docstring.

    Args:
        root: the storage root (default ``$RUNLAKE_DIR``, else ``./runlake-data``).
        db: the store itself, overriding the root's (a ``.duckdb`` file or a lake folder).
        kind: ``"lake"`` or ``"duckdb"``, as chosen by a flag; None lets the root decide.

    Returns:
        A :class:`StoreLocation`; the store need not exist yet (ingest creates it).

    Raises:
        StoreError: the choices disagree, or a setting or ``$RUNLAKE_STORE`` is not valid
            (the message names the paths and what to run).

    Example:
        >>> locate("runlake-data").path  # doctest: +SKIP
        PosixPath('runlake-data/runlake.duckdb')
    """
    flag = _checked(kind, "the store kind") if kind is not None else None
    if is_url(db):
        if flag == "duckdb":
            raise StoreError(f"--duckdb was given but {db} is a lake URL (a DuckDB store is a "
                             f"local file): drop --duckdb, or pass --db a local .duckdb file")
        return StoreLocation("lake", str(db).rstrip("/"),
                             resolve_root(root) if root is not None else None)
    if db is not None:
        return _given(Path(db).expanduser(),
                      resolve_root(root) if root is not None else None, flag)
    base = resolve_root(root)
    if is_url(base):
        source = "--duckdb" if flag else f"{STORE_ENV}=duckdb"
        return _object_root(base, flag or _env_kind(), source)
    duck, lake = base / STORE_FILE, base / LAKE_DIR
    setting = read_setting(base)
    env = _env_kind()
    asked, source = (flag, f"--{flag}") if flag else (env, f"{STORE_ENV}={env}")
    if asked is not None and setting is not None and asked != setting:
        wanted, other = (lake, duck) if asked == "lake" else (duck, lake)
        run = ("run `runlake ingest --lake` to convert the store and change the setting"
               if asked == "lake" else f"edit or delete {base / SETTING_FILE}")
        raise StoreError(f"{source} asks for {wanted}, but {base / SETTING_FILE} says this "
                         f"root's store is {other}: drop {source} to use {other}, or {run}")
    chosen = asked or setting
    has_lake = (lake / LAKE_META).is_dir()
    if chosen is None:
        if has_lake and duck.exists():
            raise StoreError(
                f"the root {base} holds two stores, {duck} and {lake}, and nothing says which "
                f"to use: write {{\"store\": \"lake\"}} (or \"duckdb\") into "
                f"{base / SETTING_FILE} (`runlake ingest --lake` does), set {STORE_ENV}, or "
                f"remove the store you do not use")
        chosen = "lake" if has_lake else "duckdb"
    return StoreLocation(chosen, lake if chosen == "lake" else duck, base)


def lake_url(root: str) -> str:
    """The lake of an ``s3://`` root: ``<root>/runlake-lake``."""
    return f"{root.rstrip('/')}/{LAKE_DIR}"


def _object_root(root: str, asked: Kind | None, source: str) -> StoreLocation:
    """An ``s3://`` root's store: its lake (see the module docstring)."""
    if asked == "duckdb":
        raise StoreError(f"{source} asks for a DuckDB store, but the root {root} is on object "
                         f"storage, whose store is the lake {lake_url(root)}: drop {source}, "
                         f"or pass --db LOCAL_PATH.duckdb to keep a DuckDB file on this machine")
    return StoreLocation("lake", lake_url(root), root)


def write_setting(root: str | Path, kind: str) -> Path:
    """Record ``kind`` as the store of ``root`` (atomically: a crash leaves the old or the
    new setting, never half of one). Returns the setting file's path."""
    kind = _checked(kind, "the store kind")
    path = Path(root) / SETTING_FILE
    tmp = path.with_name(f".{SETTING_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"store": kind}) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
