"""Fixtures for analysis tests: real DuckDB stores in tmp_path filled with synthetic rows."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from runlake.store import read_store
from runlake.store.duck import write_store

T0 = dt.datetime(2024, 1, 1)


class StoreBuilder:
    """Insert synthetic runs, metrics and lineage rows into a real migrated store."""

    def __init__(self, db):
        self.db = db
        self._metrics: list[pl.DataFrame] = []
        self._runs: list[dict] = []
        self._items: list[dict] = []
        self._other: list[tuple[str, dict]] = []

    def run(self, run_id, *, config=None, status="finished", name=None, group=None,
            last_seen=None, project="p", heartbeat_s=None):
        self._runs.append({
            "run_id": run_id, "project": project, "name": name or run_id, "group_name": group,
            "status": status, "started_at": T0, "ended_at": None if status == "running" else T0,
            "last_seen_at": last_seen or T0, "config": json.dumps(config or {}),
            "heartbeat_s": heartbeat_s,
        })
        return self

    def metric(self, run_id, key, values, steps=None, *, rank=0, epochs=None, dt_s=1.0):
        values = np.asarray(values, dtype=float)
        steps = np.arange(len(values)) if steps is None else np.asarray(steps)
        ts = [T0 + dt.timedelta(seconds=float(s) * dt_s) for s in steps]
        self._metrics.append(pl.DataFrame({
            "run_id": [run_id] * len(values), "rank": [rank] * len(values),
            "step": steps.astype(np.int64), "epoch": None if epochs is None else np.asarray(epochs, dtype=np.int32),
            "ts": ts, "key": [key] * len(values), "value": values,
        }, schema={"run_id": pl.Utf8, "rank": pl.Int32, "step": pl.Int64, "epoch": pl.Int32,
                   "ts": pl.Datetime("us"), "key": pl.Utf8, "value": pl.Float64}))
        return self

    def items(self, run_id, step, item_ids, *, split="train", epoch=None, augment=None, rank=0):
        for i, item in enumerate(item_ids):
            aug = augment[i] if isinstance(augment, list) else augment
            self._items.append({
                "run_id": run_id, "rank": rank, "step": step, "epoch": epoch, "split": split,
                "item_id": str(item), "augment": None if aug is None else json.dumps(aug),
                "ts": T0 + dt.timedelta(seconds=step),
            })
        return self

    def dataset(self, run_id, name, items, split=None):
        self._other.append(("datasets", {"run_id": run_id, "rank": 0, "ts": T0, "step": 0,
                                         "name": name, "items": items, "split": split}))
        return self

    def checkpoint(self, run_id, step, uri):
        self._other.append(("checkpoints", {"run_id": run_id, "rank": 0, "ts": T0,
                                            "step": step, "uri": uri}))
        return self

    def sample(self, run_id, step, name, key, value):
        self._other.append(("samples", {"run_id": run_id, "rank": 0, "ts": T0, "step": step,
                                        "name": name, "key": key, "value": value}))
        return self

    def build(self):
        with write_store(self.db) as con:
            if self._runs:
                runs = pl.DataFrame(self._runs)
                con.register("_runs", runs)
                cols = ", ".join(runs.columns)
                con.execute(f"INSERT INTO runs ({cols}) SELECT {cols} FROM _runs")
            if self._metrics:
                m = pl.concat(self._metrics)
                con.register("_m", m)
                con.execute("INSERT INTO metrics (run_id, rank, step, epoch, ts, key, value) "
                            "SELECT run_id, rank, step, epoch, ts, key, value FROM _m")
            if self._items:
                d = pl.DataFrame(self._items, schema={
                    "run_id": pl.Utf8, "rank": pl.Int32, "step": pl.Int64, "epoch": pl.Int32,
                    "split": pl.Utf8, "item_id": pl.Utf8, "augment": pl.Utf8, "ts": pl.Datetime("us")})
                con.register("_d", d)
                con.execute("INSERT INTO data_items (run_id, rank, step, epoch, split, item_id, "
                            "augment, ts) SELECT run_id, rank, step, epoch, split, item_id, "
                            "augment::JSON, ts FROM _d")
            for table, row in self._other:
                cols = list(row)
                con.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                            f"({', '.join('?' for _ in cols)})", [row[c] for c in cols])
        self._metrics, self._runs, self._items, self._other = [], [], [], []
        return self.db


@pytest.fixture
def builder(tmp_path):
    return StoreBuilder(tmp_path / "store.duckdb")


@pytest.fixture
def reader():
    """Open a store read-only for the duration of a `with` block."""
    return read_store


def pytest_terminal_summary(terminalreporter):
    """Print the planted-anomaly suite's precision and recall after the run."""
    import sys

    for name, module in list(sys.modules.items()):
        results = getattr(module, "SUITE_RESULTS", None) if name.endswith("test_detectors") else None
        if results:
            terminalreporter.write_line(
                f"runlake planted-anomaly suite: {results['cases']} cases, "
                f"recall {results['recall']:.0%}, precision {results['precision']:.0%} "
                f"(tp={results['tp']}, fp={results['fp']})")
