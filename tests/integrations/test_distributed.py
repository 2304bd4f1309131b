"""A real 2-process torch.distributed job: every rank writes one shared run."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_two_ranks_write_one_run_without_duplicating_rank0_data(tmp_path, script, store_rows):
    """Metrics and lineage from ranks 0 and 1; config, checkpoints, datasets, samples once."""
    root = tmp_path / "root"
    proc = script("_ddp_job.py", str(root), str(tmp_path / "ckpt"), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = proc.stdout.split()[-1]
    assert store_rows(root, "SELECT run_id, world_size, status, config->>'lr', tags FROM runs") == [
        (run_id, 2, "finished", "0.05", ["ddp"])]
    assert store_rows(root, "SELECT rank, status FROM writers ORDER BY rank") == [(0, "finished"), (1, "finished")]
    per_rank = store_rows(root, "SELECT rank, count(*), min(step), max(step) FROM metrics "
                                "WHERE key = 'train/loss' GROUP BY rank ORDER BY rank")
    assert per_rank == [(0, 8, 0, 7), (1, 8, 0, 7)]  # 32 items per rank / 8 per batch * 2 epochs
    watched = store_rows(root, "SELECT rank, count(*) FROM metrics WHERE key = 'grad/norm' GROUP BY rank ORDER BY rank")
    assert watched == [(0, 4), (1, 4)]
    # DDP averages gradients: both ranks see the same global gradient norm
    same = store_rows(root, "SELECT count(DISTINCT round(value, 5)) FROM metrics WHERE key = 'grad/norm' GROUP BY step")
    assert all(n == 1 for (n,) in same)
    # every item seen once per epoch, each rank its own shard
    items = store_rows(root, "SELECT epoch, count(*), count(DISTINCT item_id), count(DISTINCT rank) "
                             "FROM data_items GROUP BY epoch ORDER BY epoch")
    assert items == [(0, 64, 64, 2), (1, 64, 64, 2)]
    assert store_rows(root, "SELECT rank, count(*) FROM checkpoints WHERE NOT list_contains(tags, 'deleted') "
                            "GROUP BY rank") == [(0, 2)]
    assert store_rows(root, "SELECT step FROM checkpoints WHERE list_contains(tags, 'deleted')") == [(3,)]
    assert store_rows(root, "SELECT rank, count(*) FROM datasets GROUP BY rank") == [(0, 1)]
    assert store_rows(root, "SELECT rank, count(*) FROM samples GROUP BY rank") == [(0, 2)]
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("ckpt-*.pt")) == ["ckpt-000000007.pt"]
