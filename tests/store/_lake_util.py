"""Shared by the lake tests: real segments (the emitter's framing), ingest into a lake and
into a DuckDB file, and row multisets to compare them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import zstandard

from runlake.emitter.writer import encode_batch
from runlake.schemas import events as E
from runlake.schemas.codec import ENCODER
from runlake.schemas.segments import segment_name

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
_CCTX = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)

# volatile columns (stamped at commit time) are left out of comparisons
VOLATILE = {"ingest_ledger": ("updated_at",), "quarantine": ("detected_at",)}
COMPARED = ("metrics", "logs", "alerts", "runs", "writers", "ingest_ledger", "ingest_frames",
            "quarantine")


def write_segments(root: Path, runs: int = 3, steps: int = 400, keys: int = 5,
                   flush_steps: int = 20, segment_flushes: int = 5, *, seal_last: bool = True,
                   garbage: bool = True, prefix: str = "run", project: str = "proj") -> int:
    """Runs of metrics (packed blocks), logs and alerts, several segments per writer;
    one run's open segment ends with bytes that are not a frame (quarantined). Returns
    the metric points written."""
    ts = 1_700_000_000_000_000_000
    for r in range(runs):
        run_id, writer = f"{prefix}-{r:02d}", "r0000-a000-test"
        folder = root / project / run_id / writer
        folder.mkdir(parents=True, exist_ok=True)
        seq, segment, flushes = 0, 0, 0
        events: list = [E.RunStart(v=1, run_id=run_id, writer=writer, seq=0, ts=ts, rank=0,
                                   project=project, name=f"{prefix}{r}", heartbeat_s=30.0,
                                   config={"lr": 0.1 * (r + 1)})]
        for step in range(steps):
            seq += 1
            events.append(E.Metrics(v=1, run_id=run_id, writer=writer, seq=seq,
                                    ts=ts + step * 1000, rank=0, step=step,
                                    values={f"k{k}": step * 0.5 + k for k in range(keys)}))
            if step % 50 == 0:
                seq += 1
                events.append(E.Log(v=1, run_id=run_id, writer=writer, seq=seq,
                                    ts=ts + step * 1000, rank=0, level="INFO",
                                    message=f"step {step}", step=step))
            if step % 170 == 0:
                seq += 1
                events.append(E.Alert(v=1, run_id=run_id, writer=writer, seq=seq,
                                      ts=ts + step * 1000, rank=0, message="odd", step=step))
            last = step == steps - 1
            if last:
                seq += 1
                events.append(E.RunEnd(v=1, run_id=run_id, writer=writer, seq=seq,
                                       ts=ts + steps * 1000, rank=0, status="finished"))
            if len(events) >= flush_steps or last:
                path = folder / segment_name(segment, sealed=False)
                with open(path, "ab") as f:
                    f.write(_CCTX.compress(encode_batch(events, lambda ev, exc: None)[0]))
                    if garbage and r == 0 and last:
                        f.write(b"not a frame at all" * 3)
                events, flushes = [], flushes + 1
                if flushes % segment_flushes == 0 or last:
                    if seal_last or not last:
                        os.rename(path, folder / segment_name(segment, sealed=True))
                    segment += 1
    return runs * steps * keys


def lake_location(root: Path):
    try:
        from runlake.store.location import StoreLocation
    except ImportError:  # pragma: no cover - before store/location.py existed
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class StoreLocation:  # type: ignore[no-redef]
            kind: str
            path: Path
            root: Path | None = None
    return StoreLocation(kind="lake", path=root / "runlake-lake", root=root)


def duck_location(root: Path, db: Path):
    from runlake.store.location import StoreLocation

    return StoreLocation(kind="duckdb", path=db, root=root)


def ingest_lake(root: Path, chunk_points: int = 500):
    from runlake.ingest.loader import run_pass
    from runlake.store.lake import LakeBackend

    return run_pass(root, LakeBackend(lake_location(root)), chunk_points=chunk_points)


def ingest_duck(root: Path, db: Path, chunk_points: int = 500):
    from runlake.ingest.loader import run_pass
    from runlake.store.duck import DuckBackend

    return run_pass(root, DuckBackend(duck_location(root, db)), chunk_points=chunk_points)


def rows(con, table: str) -> Counter:
    """The multiset of ``table``'s rows (volatile columns left out)."""
    skip = VOLATILE.get(table, ())
    cols = [c for (c, *_rest) in con.execute(f"DESCRIBE {table}").fetchall() if c not in skip]
    sel = ", ".join(f"CAST({c} AS VARCHAR)" for c in cols)
    return Counter(con.execute(f"SELECT {sel} FROM {table}").fetchall())


def lake_rows(root: Path) -> dict[str, Counter]:
    from runlake.store.lake import connect

    con = connect(lake_location(root))
    try:
        return {t: rows(con, t) for t in COMPARED}
    finally:
        con.close()


def duck_rows(db: Path) -> dict[str, Counter]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: rows(con, t) for t in COMPARED}
    finally:
        con.close()


_INGEST = """
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
import _lake_util as u
u.ingest_lake(Path({root!r}), chunk_points={chunk})
"""


def ingest_subprocess(root: Path, *, kill_at: str | None = None, chunk_points: int = 500,
                      timeout: float = 120.0) -> subprocess.CompletedProcess:
    """A real ingest pass in a child process, killed at ``kill_at`` if given."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RUNLAKE_LAKE_KILL_AT", None)
    if kill_at:
        env["RUNLAKE_LAKE_KILL_AT"] = kill_at
    code = _INGEST.format(here=str(Path(__file__).parent), root=str(root), chunk=chunk_points)
    return subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)


def start_ingest(root: Path, chunk_points: int = 500) -> subprocess.Popen:
    env = {**os.environ}
    env.pop("RUNLAKE_LAKE_KILL_AT", None)
    code = _INGEST.format(here=str(Path(__file__).parent), root=str(root), chunk=chunk_points)
    return subprocess.Popen([PYTHON, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(pred, timeout: float = 60.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)


def reference(tmp_path_factory, write=write_segments) -> tuple[Path, dict[str, Counter]]:
    """Segments written once (by ``write(root)``) and what a DuckDB-file ingest of a copy
    of them holds: the expected rows every lake test compares with."""
    import shutil

    root = tmp_path_factory.mktemp("segments")
    write(root)
    ref = tmp_path_factory.mktemp("ref")
    shutil.copytree(root, ref / "root")
    ingest_duck(ref / "root", ref / "ref.duckdb")
    return root, duck_rows(ref / "ref.duckdb")
