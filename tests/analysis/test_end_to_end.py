"""End to end: real torch training on CPU -> emitter -> ingest -> detect; the high-lr run is
flagged critical and the stable runs raise no warning."""

from __future__ import annotations

import polars as pl
import pytest

import runlake
from runlake.analysis.anomalies import detect, list_anomalies
from runlake.ingest import ingest
from runlake.store import read_store

torch = pytest.importorskip("torch")


def _train(root, name: str, lr: float, seed: int, steps: int = 200) -> str:
    torch.manual_seed(seed)
    x = torch.randn(512, 16)
    y = (x @ torch.randn(16, 1)).squeeze(1) + 0.1 * torch.randn(512)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with runlake.init(project="e2e", name=name, root=root, config={"lr": lr, "seed": seed}) as run:
        for step in range(steps):
            idx = torch.randint(0, 512, (32,))
            loss = torch.nn.functional.mse_loss(model(x[idx]).squeeze(1), y[idx])
            opt.zero_grad()
            loss.backward()
            grad = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
            opt.step()
            run.log({"train/loss": loss.item(), "train/grad_norm": grad.item(), "lr": lr}, step=step)
        return run.id


@pytest.mark.slow
def test_unstable_run_is_flagged_through_the_real_pipeline(tmp_path):
    """lr=0.1 with momentum blows up (spike, then NaN: critical); lr=0.01 seeds are quiet."""
    stable = [_train(tmp_path, f"stable-{s}", 0.01, s) for s in range(3)]
    unstable = _train(tmp_path, "unstable", 0.1, 0)
    db = tmp_path / "store.duckdb"
    ingest(root=tmp_path, db=db)
    assert detect(db) > 0
    with read_store(db) as con:
        found = list_anomalies(con)
        losses = con.execute("SELECT count(*) FILTER (WHERE NOT isfinite(value)) FROM metrics "
                             "WHERE run_id = ? AND key = 'train/loss'", [unstable]).fetchall()[0][0]
    bad = found.filter((pl.col("run_id") == unstable) & (pl.col("severity") == "critical"))
    assert losses > 0  # the run really went non-finite
    assert "nonfinite" in set(bad["kind"])
    before_nan = found.filter((pl.col("run_id") == unstable) & (pl.col("severity") != "info"))
    assert set(before_nan["kind"]) & {"loss_spike", "divergence", "gradient_explosion"}, before_nan
    quiet = found.filter(pl.col("run_id").is_in(stable) & (pl.col("severity") != "info"))
    assert quiet.is_empty(), quiet.select("run_id", "kind", "key", "message")


def test_resumed_replay_is_not_a_duplicate_but_a_real_redraw_is(tmp_path):
    """An attempt that replays the epoch its predecessor died in is not flagged; an item
    drawn twice within one attempt's epoch is."""
    root = tmp_path / "lake"
    opts = dict(root=root, console=False, system_interval=0, capture_logging=False)
    first = runlake.init("dup", "resumed", **opts)
    for step in range(5):
        first.log_data([f"i{2 * step}", f"i{2 * step + 1}"], split="train", epoch=0, step=step)
    first.finish(status="killed")
    with runlake.init("dup", resume=first.id, **opts) as again:  # replays epoch 0 from step 0
        for step in range(10):
            again.log_data([f"i{2 * step}", f"i{2 * step + 1}"], split="train", epoch=0, step=step)
    with runlake.init("dup", "redraws", **opts) as bad:
        for step in range(5):
            bad.log_data([f"i{step}", "i0"], split="train", epoch=0, step=step)
    ingest(root=root)
    db = root / "runlake.duckdb"
    detect(db=db)
    with read_store(db) as con:
        found = list_anomalies(con)
    dupes = found.filter(pl.col("kind") == "data_duplicates")
    assert dupes["run_id"].to_list() == [bad.id]
    assert dupes["value"].to_list() == [1.0]  # one item (i0) drawn more than once
