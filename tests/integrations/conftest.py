"""Shared helpers: tiny torch models and data, running helper scripts, querying the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

HERE = Path(__file__).parent


def tiny_model(seed: int = 0, width: int = 16):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))


class ToyData(torch.utils.data.Dataset):
    """64 fixed samples; optional augmentation reported either way of the protocol."""

    def __init__(self, n: int = 64, augment: str | None = None):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x.sum(1, keepdim=True)
        self.augment = augment
        self._last = {}

    def __len__(self):
        return len(self.x)

    def last_augment(self, i):
        return self._last.get(i) if self.augment == "method" else None

    def __getitem__(self, i):
        x = self.x[i]
        if self.augment == "dict":
            return {"x": x, "y": self.y[i], "_augment": {"scale": 1.0 + i / 100}}
        if self.augment == "method":
            self._last[i] = {"flip": i % 2 == 0}
        return x, self.y[i]


def run_script(name: str, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``tests/integrations/<name>`` with this interpreter; returns the finished process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("RUNLAKE_RUN_ID", None)
    return subprocess.run([sys.executable, str(HERE / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def ingest_rows(root: Path, sql: str, params=None) -> list[tuple]:
    """Ingest ``root`` into its default store and run one read-only query."""
    from runlake.ingest import ingest
    from runlake.store import read_store

    db = root / "runlake.duckdb"
    ingest(root=root, db=db)
    with read_store(db) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture
def make_model():
    """Factory for a tiny MLP (8 -> width -> 1), seeded."""
    return tiny_model


@pytest.fixture
def toy_data():
    """The ToyData dataset class."""
    return ToyData


@pytest.fixture
def script():
    """Run a helper script of this folder in a subprocess."""
    return run_script


@pytest.fixture
def store_rows():
    """Ingest a root and query its store."""
    return ingest_rows


@pytest.fixture
def live_run(tmp_path):
    """A real run writing segments under tmp_path/root; finished after the test."""
    import runlake

    run = runlake.init("t", "unit", root=tmp_path / "root", console=False, system_interval=0,
                       capture_logging=False, online_checks=False)
    yield run
    run.finish()
