"""Converting a DuckDB-file store into a lake, losing nothing (``runlake ingest --lake``).

Every table the spec declares is copied row for row from the DuckDB file into a new lake:
the event tables, quarantine, the frame keys (``ingest_frames``), the state tables (runs,
writers and, last, ``ingest_ledger``) as ordinary lake chunks, and the derived
``anomalies`` through the lake's own replace. The ledger and frame keys come across
unchanged, so the next ingest pass continues exactly where the DuckDB file stopped: no
segment byte is read twice and no frame loaded twice. A store of an older schema converts
too: a column it lacks (``ingest_ledger.seq_lo`` before migration 2) becomes NULL, which is
what today's code reads as "made known on the next pass", exactly as when it migrates the
file; a table it lacks is empty. The DuckDB file is only read (a write-ahead log a crashed
writer left is replayed in memory by DuckDB, not written).

Crash safety: the lake is built in a hidden sibling ``.<lake>.converting`` and checked
(row counts per table, and the file unchanged since the copy began) before it is renamed
into place with a marker ``_runlake/converted.json`` naming the file it came from. Then the
root's setting (``{"store": "lake"}``) is written and the file is renamed ``<name>.old``.
Killed before the rename, the root is as it was (the next conversion removes the sibling);
killed after it, :func:`finish` recognises the lake by its marker and completes the last
two steps. Caller: the process holding the root's ingest lock.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pyarrow as pa

from runlake.schemas.errors import StoreError
from runlake.store.chunk import Chunk
from runlake.store.rebuild import old_path, remove_store, temp_sibling
from runlake.store.spec import TABLES, arrow_schema

if TYPE_CHECKING:
    import duckdb

    from runlake.store.backend import Backend
    from runlake.store.location import StoreLocation

__all__ = ["BATCH_ROWS", "Converted", "MARKER", "convert", "copy_tables", "finish",
           "read_tables"]

BATCH_ROWS = 1_000_000
"""Rows of an event table per lake chunk while copying (bounds memory)."""

MARKER = "_runlake/converted.json"
"""Inside the lake: which DuckDB file it was converted from (path, size, mtime, rows)."""

_ORDER = ("event", "state")  # event tables first; state tables in the last chunk, ledger last


@dataclass(frozen=True, slots=True)
class Converted:
    """A finished conversion: the lake, where the DuckDB file went, the rows copied."""

    lake: Path
    old: Path
    rows: dict[str, int]


def _schema_version(con: duckdb.DuckDBPyConnection, db: Path) -> int:
    from runlake.store.migrations import LATEST

    try:
        (version,) = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except Exception as exc:  # duckdb.CatalogException: no such table
        raise StoreError(f"{db} is not a runlake store (no schema_migrations table): "
                         f"{' '.join(str(exc).split())}") from None
    if version is not None and version > LATEST:
        raise StoreError(f"{db} was written by a newer runlake (schema version {version}, this "
                         f"one knows {LATEST}): upgrade runlake, then run `runlake ingest "
                         f"--lake` again")
    return version or 0


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main'").fetchall():
        found.setdefault(table, set()).add(column)
    return found


def _select(name: str, present: set[str]) -> str:
    """The spec's columns of ``name`` from the file; NULL for one an older schema lacks."""
    cols = []
    for c in TABLES[name].columns:
        duck = "VARCHAR" if c.duck == "JSON" else c.duck
        ref = f'"{c.name}"' if c.name in present else "NULL"
        cols.append(f'CAST({ref} AS {duck}) AS "{c.name}"')
    return f"SELECT {', '.join(cols)} FROM {name}"


def read_tables(con: duckdb.DuckDBPyConnection, db: Path, batch_rows: int = BATCH_ROWS
                ) -> Iterator[tuple[str, pa.Table]]:
    """``(table, rows)`` batches of every spec table in the DuckDB store ``con``, shaped as
    the spec's plain Arrow schema; event tables first, state tables after, ledger last,
    ``anomalies`` at the very end. An empty table yields nothing."""
    _schema_version(con, db)
    present = _columns(con)
    names = [t.name for kind in _ORDER for t in TABLES.values() if t.kind == kind]
    names.sort(key=lambda n: n == "ingest_ledger")
    names += [t.name for t in TABLES.values() if t.kind == "derived"]
    for name in names:
        if name not in present:
            continue  # a table of a later migration: empty in this store
        schema = arrow_schema(name, plain=True)
        reader = con.sql(_select(name, present[name])).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield name, pa.Table.from_batches([batch]).cast(schema)


def _empty_chunk(tables: dict[str, pa.Table]) -> Chunk:
    """A chunk whose ``tables_out()`` is exactly ``tables`` (rows kept as they are: their
    ``updated_at``/``detected_at`` too)."""
    return Chunk(tables, [], [], None, None, [])


def copy_tables(
    con: duckdb.DuckDBPyConnection,
    db: Path,
    backend: Backend,
    write_derived: Callable[[str, pa.Table], None],
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Commit every row of the DuckDB store ``con`` into the empty ``backend``.

    Event tables go in chunks of up to ``batch_rows`` rows, the state tables together in
    the last chunk (ledger last); derived tables through ``write_derived(table, rows)``.
    Returns the rows copied per table.
    """
    rows: dict[str, int] = {}
    state: dict[str, list[pa.Table]] = {}
    derived: dict[str, list[pa.Table]] = {}
    for name, table in read_tables(con, db, batch_rows):
        rows[name] = rows.get(name, 0) + table.num_rows
        kind = TABLES[name].kind
        if kind == "event":
            backend.commit(_empty_chunk({name: table}))
        else:
            (state if kind == "state" else derived).setdefault(name, []).append(table)
    if state:
        backend.commit(_empty_chunk({n: pa.concat_tables(t) for n, t in state.items()}))
    for name, tables in derived.items():
        write_derived(name, pa.concat_tables(tables))
    return rows


def _counts(backend: Backend) -> dict[str, int]:
    with backend.reader() as con:
        return {n: con.execute(f"SELECT count(*) FROM {n}").fetchone()[0] for n in TABLES}


def _identity(db: Path) -> dict:
    """What says the file is the one converted: its path, size and modification time."""
    st = db.stat()
    return {"from": str(db.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _wal_size(db: Path) -> int | None:
    wal = Path(f"{db}.wal")
    return wal.stat().st_size if wal.exists() else None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def convert(
    db: StoreLocation,
    lake: StoreLocation,
    open_backend: Callable[[StoreLocation], Backend],
    read_store: Callable[[Path], object],
    write_derived: Callable[[Path, str, pa.Table], None],
    write_setting: Callable[[Path, str], object],
    *,
    batch_rows: int = BATCH_ROWS,
) -> Converted:
    """Convert the DuckDB store ``db`` into a new lake at ``lake`` (see the module doc).

    Args:
        db, lake: the root's two stores; ``lake.path`` must not exist.
        open_backend: ``runlake.store.open_backend``.
        read_store: a context manager giving a read-only connection to a DuckDB file.
        write_derived: ``(lake folder, table, rows)``: replaces a derived table's rows
            (``anomalies``) in the lake.
        write_setting: ``(root, kind)``: records the root's store.

    Raises:
        StoreError: the file is not a runlake store, is newer than this runlake, changed
            during the copy, or the lake's rows do not match (nothing of the root changed).
    """
    if lake.path.exists():
        raise StoreError(f"cannot convert {db.path} into {lake.path}: that lake already "
                         f"exists; remove one of them (segments rebuild either: `runlake "
                         f"ingest --rebuild`)")
    tmp = temp_sibling(lake.path, "converting")
    remove_store(tmp)  # a conversion killed midway left it
    before, wal = _identity(db.path), _wal_size(db.path)
    try:
        backend = open_backend(replace(lake, path=tmp))
        backend.prepare()
        with read_store(db.path) as con:
            rows = copy_tables(con, db.path, backend,
                               lambda name, t: write_derived(tmp, name, t), batch_rows)
        counts = _counts(backend)
        wrong = {n: (rows.get(n, 0), counts[n]) for n in TABLES if counts[n] != rows.get(n, 0)}
        if wrong:
            raise StoreError(f"converting {db.path} into a lake: row counts differ (table: "
                             f"file, lake) {wrong}; nothing changed, the DuckDB file is still "
                             f"the store")
        if _identity(db.path) != before or _wal_size(db.path) != wal:
            raise StoreError(f"{db.path} changed while it was converted (another process "
                             f"wrote it: `runlake anomalies --refresh`, an import?); nothing "
                             f"changed: run `runlake ingest --lake` again")
        _write_json(tmp / MARKER, {**before, "rows": rows})
        os.rename(tmp, lake.path)
    except BaseException:
        remove_store(tmp)
        raise
    return Converted(lake.path, finish(db, lake, write_setting), rows)


def finish(db: StoreLocation, lake: StoreLocation,
           write_setting: Callable[[Path, str], object]) -> Path:
    """The last steps of a conversion (also after one killed between them): the root's
    setting says lake, the DuckDB file (and its ``.wal``) becomes ``<name>.old``.

    Raises:
        StoreError: the lake was not converted from this file (the two disagree).
    """
    marker = lake.path / MARKER
    try:
        made = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = None
    if db.path.exists() and (made is None or {k: made.get(k) for k in _identity(db.path)}
                             != _identity(db.path)):
        raise StoreError(
            f"the root has a lake ({lake.path}) and a DuckDB store ({db.path}) that was not "
            f"converted into it: keep one: `runlake ingest --rebuild` rebuilds the selected "
            f"store from segments (select it with --lake or --duckdb), then remove the other")
    write_setting(lake.root, "lake")
    old = old_path(db.path)
    if db.path.exists():
        remove_store(old)
        wal = Path(f"{db.path}.wal")
        if wal.exists():
            os.rename(wal, f"{old}.wal")
        os.rename(db.path, old)
    return old
