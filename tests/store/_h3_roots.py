"""Roots written by the real emitter, and the multisets of store rows the convert/rebuild
tests compare (helpers, not tests)."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from runlake.store.spec import TABLES

RUNLAKE = [sys.executable, "-m", "runlake.cli"]

# Columns stamped when ingest runs, not taken from segments: a rebuild gives new values.
INGEST_TIME = {"ingest_ledger": {"updated_at"}, "quarantine": {"detected_at"},
               "anomalies": {"detected_at"}}


def write_run(root: Path, name: str, steps: int = 200, *, start: int = 0,
              run_id: str | None = None, resume: bool = False, finish: bool = True) -> str:
    """One run through ``runlake.init`` touching every event table; returns its id."""
    import runlake

    run = runlake.init(project="proj", name=name, root=root, run_id=run_id, resume=resume,
                       console=False, system_interval=0, heartbeat_interval=3600, online_checks=False,
                       config={"lr": 1e-3, "width": 64}, tags=["h3"])
    try:
        for step in range(start, start + steps):
            loss = float("nan") if step == start + steps // 2 else 1.0 / (step + 1)
            run.log({"train/loss": loss, "val/acc": step / (start + steps), "lr": 1e-3},
                    step=step)
            if step % 50 == 0:
                run.log_data([f"item-{step}-{i}" for i in range(3)], split="train",
                             step=step, augment={"hflip": True})
                logging.getLogger("h3.train").warning("step %d", step)
        run.log_dataset("digits", version="1", items=1797)
        run.log_checkpoint(f"ckpt/{name}-{start + steps}.pt", step=start + steps,
                           metrics={"val/acc": 0.9}, bytes=10, sha256="0" * 64)
        run.log_sample("s0", scores={"bleu": 0.5}, step=start + steps)
        run.alert("loss went NaN", severity="warning", key="train/loss", step=start)
    finally:
        if finish:
            run.finish()
    return run.id


def damage(root: Path) -> Path:
    """A sealed segment of garbage in a run folder of its own: quarantine rows."""
    folder = root / "proj" / "run-damaged" / "r0000-a000-broken"
    folder.mkdir(parents=True, exist_ok=True)
    bad = folder / "00000000.jsonl.zst"
    bad.write_bytes(b"not a zstd frame at all " * 10)
    return bad


def cli(*args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``runlake ARGS`` as a subprocess (environment without RUNLAKE_* unless given)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNLAKE_")}
    proc = subprocess.run([*RUNLAKE, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**base, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _key(row: tuple) -> str:
    """A row as text: NaN equals NaN, floats compare exactly (repr round-trips)."""
    return repr(tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row))


def rows(con, table: str, *, drop: set[str] = frozenset()) -> Counter:
    """The multiset of ``table``'s rows (spec columns, minus ``drop``)."""
    cols = [c for c in TABLES[table].names if c not in drop]
    present = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
        [table]).fetchall()}
    sel = ", ".join(f'"{c}"' if c in present else "NULL" for c in cols)
    try:
        found = con.execute(f"SELECT {sel} FROM {table}").fetchall()
    except Exception as exc:  # a table an old schema lacks
        if "does not exist" not in str(exc):
            raise
        found = []
    return Counter(map(_key, found))


def every_table(con, *, derived_times: bool = True, ingest_times: bool = True) -> dict:
    """``{table: multiset}`` of every spec table; without the ingest-time columns when
    ``ingest_times`` is False (a rebuild stamps them anew)."""
    return {t: rows(con, t, drop=set() if ingest_times else INGEST_TIME.get(t, set()))
            for t in TABLES}


def store_rows(where, **kw) -> dict:
    """:func:`every_table` of a store (path or StoreLocation), through runlake's reader."""
    from runlake.store import read_store

    with read_store(where) as con:
        return every_table(con, **kw)
