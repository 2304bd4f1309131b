"""Lineage answers checked item by item against what the test emitted through the real
emitter and ingest (runlake.init -> segments -> runlake.ingest.ingest -> DuckDB)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import polars as pl
import pytest

import runlake
from runlake.analysis import lineage
from runlake.ingest import ingest
from runlake.store import read_store
from runlake.schemas.errors import ConfigError

DATASET = [f"img_{i:03d}" for i in range(40)]
VAL = [f"img_{i:03d}" for i in range(36, 44)]  # 36..39 leak from train, 40..43 are val-only


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """Two runs: A draws 30 items/epoch for 2 epochs (one duplicate), B draws another subset."""
    root = tmp_path_factory.mktemp("lineage")
    log: dict[str, list[tuple]] = defaultdict(list)  # run -> (step, epoch, split, item, aug)
    ids = {}
    for name, order in (("A", DATASET[:30]), ("B", DATASET[10:40])):
        run = runlake.init(project="lin", name=name, root=root, config={"name": name})
        ids[name] = run.id
        run.log_dataset("toy", items=len(DATASET), split="train")
        step = 0
        for epoch in range(2):
            for b in range(0, len(order), 5):
                step += 1
                batch = order[b:b + 5]
                if name == "A" and epoch == 1 and b == 0:
                    batch = batch + [order[-1]]  # drawn twice in epoch 1
                augs = [{"flip": (i + step) % 2 == 0} for i in range(len(batch))]
                run.log_data(batch, step=step, epoch=epoch, augment=augs)
                for item, aug in zip(batch, augs):
                    log[name].append((step, epoch, "train", item, aug))
                run.log({"train/loss": 1.0 / step}, step=step)
            if name == "A":
                run.log_checkpoint(f"ckpt-{step}.pt", step=step, sha256="0" * 64, bytes=1)
        if name == "A":
            run.log_data(VAL, step=step, epoch=1, split="val")
            for item in VAL:
                log[name].append((step, 1, "val", item, None))
        run.finish()
    ingest(root=root, db=root / "store.duckdb")
    return root / "store.duckdb", ids, log


def test_run_items_match_emitted(emitted):
    """times_seen, first/last step and splits per item equal what was emitted."""
    db, ids, log = emitted
    with read_store(db) as con:
        items = lineage.run_items(con, ids["A"])
    want = defaultdict(list)
    for step, _, split, item, _ in log["A"]:
        want[item].append((step, split))
    assert set(items["item_id"]) == set(want)
    for row in items.iter_rows(named=True):
        draws = want[row["item_id"]]
        assert row["times_seen"] == len(draws)
        assert row["first_step"] == min(s for s, _ in draws)
        assert row["last_step"] == max(s for s, _ in draws)
        assert row["splits"] == sorted({sp for _, sp in draws})


def test_checkpoint_saw_items_up_to_its_step(emitted):
    """The checkpoint after epoch 0 saw exactly the items drawn at steps <= its step."""
    db, ids, log = emitted
    with read_store(db) as con:
        first_ckpt = con.execute("SELECT min(step) FROM checkpoints WHERE run_id = ?", [ids["A"]]).fetchall()[0][0]
        items = lineage.run_items(con, ids["A"], checkpoint_step=first_ckpt)
        with pytest.raises(ConfigError, match="no checkpoint at step 3"):
            lineage.run_items(con, ids["A"], checkpoint_step=3)
    assert set(items["item_id"]) == {it for s, _, _, it, _ in log["A"] if s <= first_ckpt}


def test_item_runs_lists_consumers_and_checkpoints(emitted):
    """An item used by both runs lists both; A's checkpoints saved after its first draw."""
    db, ids, log = emitted
    with read_store(db) as con:
        df = lineage.item_runs(con, "img_012")
        none = lineage.item_runs(con, "nope")
        ckpts = [r[0] for r in con.execute("SELECT step FROM checkpoints WHERE run_id = ? ORDER BY step", [ids["A"]]).fetchall()]
    assert none.is_empty()
    assert set(df["run_id"]) == {ids["A"], ids["B"]}
    a = df.filter(pl.col("run_id") == ids["A"]).row(0, named=True)
    first = min(s for s, _, _, it, _ in log["A"] if it == "img_012")
    assert a["times_seen"] == sum(1 for *_, it, _ in log["A"] if it == "img_012")
    assert [c["step"] for c in a["checkpoints"]] == [s for s in ckpts if s >= first]
    b = df.filter(pl.col("run_id") == ids["B"]).row(0, named=True)
    assert b["checkpoints"] == []


def test_coverage_per_epoch(emitted):
    """Distinct items, draws, duplicates and coverage per epoch use the registered size (40)."""
    db, ids, log = emitted
    with read_store(db) as con:
        cov = lineage.coverage(con, ids["A"]).filter(pl.col("split") == "train").sort("epoch")
    for row in cov.iter_rows(named=True):
        draws = [it for _, e, sp, it, _ in log["A"] if e == row["epoch"] and sp == "train"]
        assert row["draws"] == len(draws)
        assert row["distinct_items"] == len(set(draws))
        assert row["duplicates"] == len(draws) - len(set(draws))
        assert row["coverage"] == pytest.approx(len(set(draws)) / 40)


def test_duplicates_within_epoch(emitted):
    """Exactly the one item drawn twice in epoch 1 of run A is reported."""
    db, ids, log = emitted
    with read_store(db) as con:
        dup = lineage.duplicates_within_epoch(con, ids["A"])
        assert lineage.duplicates_within_epoch(con, ids["B"]).is_empty()
    counts = Counter((e, sp, it) for _, e, sp, it, _ in log["A"])
    want = {k for k, c in counts.items() if c > 1}
    assert {(r["epoch"], r["split"], r["item_id"]) for r in dup.iter_rows(named=True)} == want


def test_leakage(emitted):
    """Exactly the items in both A's train and val splits are reported, all for run A."""
    db, ids, log = emitted
    with read_store(db) as con:
        leak = lineage.leakage(con)
    train_a = {it for _, _, sp, it, _ in log["A"] if sp == "train"}
    val_a = {it for _, _, sp, it, _ in log["A"] if sp == "val"}
    assert set(leak["item_id"]) == train_a & val_a
    assert set(leak["run_id"]) <= {ids["A"]}


def test_augmentation_breakdown(emitted):
    """flip=true/false draw counts per split equal the emitted augmentations."""
    db, ids, log = emitted
    with read_store(db) as con:
        aug = lineage.augmentation_breakdown(con, ids["A"])
    train = [aug for _, _, split, _, aug in log["A"] if split == "train"]
    flips = Counter(json.dumps(a["flip"]) for a in train)
    got = {r["value"]: r["draws"] for r in aug.filter((pl.col("split") == "train") & (pl.col("param") == "flip")).iter_rows(named=True)}
    assert got == dict(flips)
    val_none = aug.filter((pl.col("split") == "val") & (pl.col("param") == "(none)"))
    assert val_none["draws"].to_list() == [len(VAL)]


def test_never_seen_and_data_diff(emitted):
    """never_seen with a universe lists unseen ids; data_diff splits A/B item sets."""
    db, ids, log = emitted
    with read_store(db) as con:
        unseen = lineage.never_seen(con, ids["B"], universe=DATASET)
        counts = lineage.never_seen(con, ids["B"])
        diff = lineage.data_diff(con, ids["A"], ids["B"], examples=3)
    seen_b = {it for *_, it, _ in log["B"]}
    assert unseen["item_id"].to_list() == sorted(set(DATASET) - seen_b)
    assert counts == {"dataset_size": 40, "seen": len(seen_b), "never_seen": 40 - len(seen_b)}
    a = {it for *_, it, _ in log["A"]}
    assert (diff["only_a"], diff["only_b"], diff["both"]) == (len(a - seen_b), len(seen_b - a), len(a & seen_b))
    assert diff["examples_only_a"] == sorted(a - seen_b)[:3]
