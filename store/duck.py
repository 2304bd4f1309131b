"""The DuckDB-file store: read-only readers that retry, a short-lived writer, snapshots, and
the ingest backend that commits each chunk in one transaction.

DuckDB lets one process open a file for writing, and a process that has the file open in
either mode excludes writers from other processes (and a writer excludes every reader).
runlake keeps those windows short: ingest opens the store for writing only while it
commits, and every reader (CLI, analysis, dashboard) opens it read-only and retries for a
few seconds when a commit is under way, so no lock error reaches the user. A reader that
stays open (a notebook) would block every commit, so :func:`snapshot` gives it a private
copy instead. When the lock stays held past the retry window, the error names the process
that holds it (DuckDB's lock message carries its PID; ``/proc/PID/cmdline`` says what it is).

Every function here takes the store file's path; which store a root uses is decided once,
by :func:`runlake.store.locate`. :class:`DuckBackend` is what ingest writes through
(:class:`runlake.store.backend.Backend`): a chunk's rows, quarantine, frame keys, state rows
and ledger offsets commit in ONE transaction, so the ledger never runs ahead of (or behind)
the rows it accounts for.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import duckdb

from runlake.schemas.errors import StoreBusyError, StoreError
from runlake.store.migrations import LATEST, migrate

if TYPE_CHECKING:
    import pyarrow as pa

    from runlake.store.chunk import Chunk
    from runlake.store.location import StoreLocation

__all__ = ["DuckBackend", "attach_read_only", "connect", "lock_holder", "read_store",
           "snapshot", "write_store"]

_T = TypeVar("_T")

_LOCK_MARKERS = (
    "lock",
    "Could not set lock",
    "Conflicting lock",
    "being used by another",
    # the same process holds the file with the other mode (e.g. a watch thread committing)
    "different configuration",
)
_PID = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")
_COMMAND_CHARS = 80


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return any(m in text for m in _LOCK_MARKERS)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _command(pid: int, exe: str) -> str:
    """What process ``pid`` runs, shortened: ``python notebook.py``, ``runlake sql ...``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        argv = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    except OSError:  # not Linux, or the process is gone
        argv = []
    argv = argv or [exe]
    words = [Path(argv[0]).name] + argv[1:]
    if words[0].startswith("python") and len(words) > 1 and not words[1].startswith("-"):
        words[0], words[1] = "python", Path(words[1]).name  # the script, not its full path
        if words[1] == "runlake":  # the console script: `runlake sql ...`
            words = words[1:]
    text = " ".join(" ".join(words).split())
    return text if len(text) <= _COMMAND_CHARS else text[:_COMMAND_CHARS - 1] + "…"


def lock_holder(error: Exception | str) -> str:
    """Who holds the store, from a DuckDB lock error: ``PID 1234 (`python notebook.py`)``.

    DuckDB names one holding process in its message; its command line comes from
    ``/proc/PID/cmdline``. Without a PID (a conflict inside this process, or a DuckDB
    message of another shape) the answer says so.
    """
    text = str(error)
    found = _PID.search(text)
    if found is None:
        if "different configuration" in text:
            return "this process (another connection to the same file, in the other mode)"
        return "another process"
    pid = int(found["pid"])
    if pid == os.getpid():
        return f"this process (PID {pid}, another connection of this program)"
    return f"PID {pid} (`{_command(pid, found['exe'])}`)"


def _busy_message(path: Path, exc: Exception, retry_s: float, read_only: bool) -> str:
    holder = lock_holder(exc)
    head = f"store {path} stayed locked for {retry_s:g}s, held by {holder}"
    if read_only and re.search(r"\bingest\b", holder):
        return f"{head}; ingest commits in short bursts: try again"
    if read_only:
        return (f"{head}, which has it open for writing (DuckDB then excludes every reader); "
                f"try again when it closes the store")
    return (f"{head}: a process that keeps the store open, even read-only, blocks every "
            f"commit (DuckDB); close that connection (in a notebook use runlake.connect(), "
            f"a snapshot that does not hold the file, or runlake.query())")


def _retrying(path: Path, open_once: Callable[[], _T], retry_s: float, read_only: bool) -> _T:
    """``open_once()`` until it stops failing with a lock conflict, or ``retry_s`` passed."""
    deadline = time.monotonic() + retry_s
    delay = 0.01
    while True:
        try:
            return open_once()
        except duckdb.Error as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open store {path}: {_one_line(exc)}") from exc
            if time.monotonic() >= deadline:
                raise StoreBusyError(_busy_message(path, exc, retry_s, read_only)) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _existing(db: str | Path) -> Path:
    path = Path(db)
    if not path.exists():
        raise StoreError(
            f"no store at {path}: run `runlake ingest` first (or pass --root/--db, or set "
            f"RUNLAKE_DIR)"
        )
    return path


def connect(
    db: str | Path,
    *,
    read_only: bool = True,
    retry_s: float = 10.0,
) -> duckdb.DuckDBPyConnection:
    """Open the store, retrying while another process holds the write lock.

    Args:
        db: the store file (:func:`runlake.store.locate` finds a root's).
        read_only: readers must pass True (the default); ingest alone writes.
        retry_s: how long to keep retrying a lock conflict.

    Raises:
        StoreError: the file does not exist (read-only) or is not a DuckDB store.
        StoreBusyError: the lock was still held after ``retry_s`` (the message names the
            process holding it).
    """
    if read_only:
        path = _existing(db)
    else:
        path = Path(db)
        path.parent.mkdir(parents=True, exist_ok=True)
    return _retrying(path, lambda: duckdb.connect(str(path), read_only=read_only), retry_s,
                     read_only)


def attach_read_only(
    con: duckdb.DuckDBPyConnection,
    db: str | Path,
    alias: str,
    *,
    retry_s: float = 10.0,
) -> Path:
    """``ATTACH`` the store read-only into ``con`` as ``alias``, retrying like :func:`connect`.

    For a private DuckDB instance (``duckdb.connect(":memory:")``) whose settings must not
    reach other connections of this process (the SQL console's limits). Returns the path.
    """
    path = _existing(db)
    literal = str(path).replace("'", "''")
    name = '"' + alias.replace('"', '""') + '"'
    _retrying(path, lambda: con.execute(f"ATTACH '{literal}' AS {name} (READ_ONLY)"), retry_s,
              True)
    return path


def snapshot(
    db: str | Path,
    *,
    retry_s: float = 10.0,
    directory: str | Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a private, consistent copy of the store.

    The store (and its write-ahead log, if a crashed writer left one) is copied while a
    read-only connection holds DuckDB's shared lock, so no commit runs during the copy; the
    lock is released before this returns. The copy is opened and then unlinked at once: the
    open connection keeps its data readable (POSIX), the space is freed when it closes or
    the process ends, SIGKILL included, and nothing is left behind. The copy costs disk
    time proportional to the store's size (see docs/performance.md).

    Args:
        db: the store file, as for :func:`connect`.
        retry_s: how long to wait for a commit in progress before copying.
        directory: where the copy lives while open (default: the system temp directory,
            ``$TMPDIR``); it needs free space for one store.

    Raises:
        StoreError: there is no store, or the copy failed (e.g. no space left).
        StoreBusyError: a writer held the store past ``retry_s``.
    """
    path = _existing(db)
    fd, name = tempfile.mkstemp(prefix="runlake-snapshot-", suffix=".duckdb", dir=directory)
    os.close(fd)
    copy = Path(name)
    made = [copy, Path(f"{copy}.wal")]
    try:
        live = connect(path, read_only=True, retry_s=retry_s)
        try:
            shutil.copyfile(path, copy)
            wal = Path(f"{path}.wal")
            if wal.exists():
                shutil.copyfile(wal, made[1])
        finally:
            live.close()
        return duckdb.connect(str(copy), read_only=True)
    except OSError as exc:
        raise StoreError(f"cannot snapshot store {path} into {copy.parent}: {exc}; free space "
                         f"there, or pass directory=") from exc
    finally:
        for made_path in made:
            made_path.unlink(missing_ok=True)


@contextmanager
def read_store(db: str | Path, *, retry_s: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, closed on exit. Use for one query or one page of work."""
    con = connect(db, read_only=True, retry_s=retry_s)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def write_store(db: str | Path, *, retry_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A migrated read-write connection, closed on exit so readers get the file back."""
    con = connect(db, read_only=False, retry_s=retry_s)
    try:
        migrate(con)
        yield con
    finally:
        con.close()


def _current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has every migration (an older one is migrated before a pass)."""
    try:
        (version,) = con.execute("SELECT max(version) FROM schema_migrations").fetchall()[0]
    except duckdb.CatalogException:
        return False
    return version is not None and version >= LATEST


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _insert(con: duckdb.DuckDBPyConnection, table: str, tbl: pa.Table, verb: str) -> None:
    cols = ", ".join(_q(c) for c in tbl.column_names)
    con.register("_runlake_in", tbl)
    try:
        con.execute(f"{verb} INTO {table} ({cols}) SELECT {cols} FROM _runlake_in")
    finally:
        try:
            con.unregister("_runlake_in")
        except duckdb.Error:
            pass  # an aborted transaction refuses even this; the original error matters


class DuckBackend:
    """Ingest's view of the DuckDB file: the file is open for writing only while a chunk
    commits, so readers wait at most one commit."""

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.path = Path(location.path)

    def prepare(self) -> None:
        """Create the store if missing and apply pending migrations.

        A current store is only opened read-only (no write lock taken when nothing is to
        do); one made by an older runlake is migrated, then checked again.

        Raises:
            StoreError: the file is not a runlake store (it could not be migrated).
        """
        if not self.path.exists():
            with write_store(self.path):
                pass  # create and migrate, so readers find an (empty) store
        for _ in range(2):
            with read_store(self.path) as con:
                if _current(con):
                    return
            with write_store(self.path):
                pass  # a store made by an older runlake: apply the new migrations first
        raise StoreError(f"the store {self.path} could not be migrated to schema version "
                         f"{LATEST}; is it a runlake store?")

    def reader(self):
        """A short-lived read-only connection (:func:`read_store`)."""
        return read_store(self.path)

    def commit(self, chunk: Chunk) -> None:
        """Write ``chunk`` in one transaction: state tables (runs, writers, the ledger) by
        ``INSERT OR REPLACE`` on their key, every other table appended.

        Raises:
            StoreError: the store cannot be written (nothing of the chunk was committed).
        """
        from runlake.store.spec import TABLES

        out = chunk.tables_out()
        with write_store(self.path) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for table, tbl in out.items():
                    state = TABLES[table].kind == "state"
                    _insert(con, table, tbl, "INSERT OR REPLACE" if state else "INSERT")
                con.execute("COMMIT")
            except BaseException as exc:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # after an I/O error DuckDB may have rolled back (or given up) itself
                if isinstance(exc, duckdb.Error):
                    detail = " ".join(str(exc).split())
                    raise StoreError(
                        f"cannot write the store {self.path}: {detail}; nothing of this chunk "
                        f"was committed (free disk space, then run ingest again: it resumes "
                        f"where the last commit ended)") from exc
                raise

    def maintain(self) -> None:
        """Nothing to do: DuckDB checkpoints its file itself."""
