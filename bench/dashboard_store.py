"""A large dashboard store generated in DuckDB itself: the fastest way to 200M points.

    .venv/bin/python bench/dashboard_store.py --runs 10000 --steps 1000 --keys 20 --db PATH

Why not segments: writing 200M points through the emitter's encoder and ingest costs
about 200M / 3M points/s ≈ 70 s of ingest alone after minutes of encoding on this 2-core
machine, and what the dashboard reads is the same ``metrics`` rows either way. The rows
come from one ``range()`` in run, key, step order, the order ingest leaves them in (each
segment is one run's steps, and the store's sort is ``run_id, key, step``), so zone maps
and scans behave as on a real store. ``runs`` rows carry nested configs (some keys
differ between runs, some do not), tags, groups and every status (crashed and killed runs
stop short of their planned steps); anomaly findings and ledger rows complete the store.

The browser test (tests/dashboard/test_runs_browser.py) builds its 1,000-run store with
:func:`build_store` too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["KEYS", "build_store", "key_names"]

KEYS = ("train/loss", "train/acc", "train/lr", "train/grad_norm", "val/loss", "val/acc",
        "sys/cpu_pct", "sys/mem_gb")
"""The first keys; ``key_names(n)`` pads with ``train/metric_<i>`` and ``val/metric_<i>``."""

CHUNK_ROWS = 20_000_000


def key_names(n: int) -> list[str]:
    """``n`` metric keys, sections ``train/``, ``val/``, ``sys/``."""
    names = list(KEYS[:n])
    i = 0
    while len(names) < n:
        names.append(f"{'train' if i % 2 == 0 else 'val'}/metric_{i}")
        i += 1
    return names


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def build_store(db: Path, runs: int, steps: int, keys: int, *, quiet: bool = False) -> float:
    """Create the store unless it already exists with this size; returns build seconds
    (0.0 when reused)."""
    from runlake.store.duck import write_store

    marker = db.with_suffix(".ok")
    size = f"{runs}x{steps}x{keys}"
    if db.exists() and marker.exists() and marker.read_text() == size:
        return 0.0
    for p in (db, Path(f"{db}.wal"), marker):
        p.unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    names = key_names(keys)
    t0 = time.perf_counter()
    with write_store(db) as con:
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"""
            INSERT INTO runs (run_id, project, name, group_name, status, started_at, ended_at,
                              last_seen_at, config, tags, world_size, attempts, last_step,
                              total_steps, eta_s, heartbeat_s)
            SELECT printf('run%05d', r), 'proj' || (r % 4), 'sweep-' || r, 'g' || (r // 10),
                   CASE WHEN r % 50 = 0 THEN 'running' WHEN r % 17 = 0 THEN 'failed'
                        WHEN r % 23 = 0 THEN 'crashed' WHEN r % 29 = 0 THEN 'killed'
                        ELSE 'finished' END,
                   TIMESTAMP '2024-01-01' + to_seconds(r * 60),
                   TIMESTAMP '2024-01-01' + to_seconds(r * 60 + {steps}),
                   TIMESTAMP '2024-01-01' + to_seconds(r * 60 + {steps}),
                   json_object('lr', [0.1, 0.03, 0.01, 0.003][r % 4 + 1], 'seed', r % 10,
                               'model', json_object('width', 64 * (1 + r % 3), 'depth', 2 + r % 5),
                               'optimizer', CASE WHEN r % 2 = 0 THEN 'adam' ELSE 'sgd' END,
                               'dataset', 'cifar10'),
                   ['sweep', 'lr' || (r % 4)], 1, 1 + (r % 23 = 0)::INT,
                   CASE WHEN r % 23 = 0 OR r % 29 = 0 THEN {steps} * 6 // 10 ELSE {steps} - 1 END,
                   CASE WHEN r % 29 = 0 THEN NULL ELSE {steps} END, 0.0, 10.0
            FROM range({runs}) t(r)""")
        total = runs * keys * steps
        per_run = keys * steps
        for lo in range(0, total, CHUNK_ROWS):
            hi = min(total, lo + CHUNK_ROWS)
            con.execute(f"""
                INSERT INTO metrics (run_id, rank, step, epoch, ts, key, value)
                SELECT printf('run%05d', r), 0, s, s // 100,
                       TIMESTAMP '2024-01-01' + to_seconds(r * 60 + s), {_sql_list(names)}[k + 1],
                       CASE k
                         WHEN 0 THEN exp(-s / 300.0) * (1 + 0.05 * sin(s * 0.37 + r))
                                     + (1 / (1 + (r % 4))) * 0.3
                                     + CASE WHEN s % 499 = 498 THEN 5 ELSE 0 END
                         WHEN 1 THEN 1 - exp(-s / 250.0) * 0.9 - 0.01 * (r % 7)
                         WHEN 2 THEN 0.1 * (1 + cos(pi() * s / {steps})) / 2
                         ELSE 1 + 0.3 * sin(s * 0.11 + r + k) END
                FROM (SELECT i // {per_run} AS r, (i // {steps}) % {keys} AS k, i % {steps} AS s
                      FROM range({lo}, {hi}) t(i))""")
            if not quiet:
                print(f"  metrics {hi / 1e6:.0f}M/{total / 1e6:.0f}M rows "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
        con.execute(f"""
            INSERT INTO anomalies
            SELECT printf('run%05d', r), 'spike', 'warning', '{names[0]}', 498, 498, 5.0,
                   'loss jumped 12x above its rolling median', 'lower the learning rate',
                   'spike', TIMESTAMP '2024-02-01'
            FROM range(0, {runs}, 7) t(r)""")
        con.execute(f"""
            INSERT INTO ingest_ledger (segment, project, run_id, writer, bytes, frames, events,
                                       sealed, status, error, updated_at)
            SELECT 'proj0/' || printf('run%05d', r) || '/w/000000.jsonl.zst', 'proj0',
                   printf('run%05d', r), 'w', 1000000, 10, 50000, true, 'done', NULL,
                   TIMESTAMP '2024-02-01'
            FROM range({runs}) t(r)""")
        con.execute("CHECKPOINT")
    seconds = time.perf_counter() - t0
    marker.write_text(size)
    if not quiet:
        print(f"built {db} in {seconds:.0f}s ({db.stat().st_size / 1e9:.2f} GB, "
              f"{total / 1e6:.0f}M points)")
    return seconds


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--db", type=Path, required=True)
    a = parser.parse_args()
    build_store(a.db, a.runs, a.steps, a.keys)
