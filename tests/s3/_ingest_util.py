"""Shared by the s3 ingest and lake tests: real segments uploaded as objects, a real
``runlake`` CLI subprocess against the moto server, the rows of an s3 lake."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from runlake.schemas.objects import ObjectStore


def _lake_util():
    """tests/store/_lake_util.py (the segment writer and row multisets of the lake tests;
    tests/ is no package, so it is loaded from its file)."""
    name = "runlake_tests_lake_util"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "store" / "_lake_util.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


u = _lake_util()

RUNLAKE = [sys.executable, "-m", "runlake.cli"]
EVENT_TABLES = ("metrics", "logs", "alerts", "ingest_frames")


def upload(local_root: Path, url: str, only=None) -> list[str]:
    """Put every sealed segment under ``local_root`` at its rel key under ``url`` (written
    once with ``put_new``, as the emitter's uploader does); returns the keys."""
    store = ObjectStore(url)
    keys = []
    for path in sorted(local_root.rglob("*.jsonl.zst")):
        rel = path.relative_to(local_root).as_posix()
        if only is None or only(rel):
            assert store.put_new(rel, path.read_bytes())
            keys.append(rel)
    return keys


def cli(env: dict[str, str], *args: str, kill_at: str | None = None,
        timeout: float = 180.0) -> subprocess.CompletedProcess:
    """``runlake ARGS`` in a child process with the server's settings in ``env``."""
    full = {**os.environ, **env, "PYTHONPATH": str(u.REPO)}
    full.pop("RUNLAKE_LAKE_KILL_AT", None)
    if kill_at:
        full["RUNLAKE_LAKE_KILL_AT"] = kill_at
    return subprocess.run([*RUNLAKE, *args], env=full, capture_output=True, text=True,
                          timeout=timeout)


def lake_rows(lake_url: str, tables=u.COMPARED) -> dict[str, Counter]:
    from runlake.store.lake import connect

    con = connect(lake_url)
    try:
        return {t: u.rows(con, t) for t in tables}
    finally:
        con.close()


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The CLI refused with exit 2 and one line on stderr (no traceback) naming ``needles``."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err
