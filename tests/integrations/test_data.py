"""track(): per-batch lineage events from a DataLoader, with workers, augmentation, epochs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, Subset

from runlake.emitter.testing import capture, of_kind
from runlake.schemas.errors import ConfigError
from runlake.torch import track


def _run(tmp_path):
    import runlake

    return runlake.init("t", root=tmp_path, console=False, system_interval=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_unchanged_and_ids_follow_the_sampler(tmp_path, toy_data, num_workers):
    """Batches equal the untracked loader's; each data event lists that batch's indices."""
    ds = toy_data()
    plain = DataLoader(ds, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(3))
    expected = [(x.clone(), y.clone()) for x, y in plain]
    loader = DataLoader(ds, batch_size=10, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(3))
    with capture() as events:
        run = _run(tmp_path)
        tracked = track(loader, run, split="train", source="toy")
        got = [(x, y) for x, y in tracked]
        run.finish()
    assert len(got) == len(expected) == len(tracked) == 7
    for (x, y), (ex, ey) in zip(got, expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    # the index of each served row, found by content
    order = [int((ds.x == row).all(1).nonzero()) for x, _ in got for row in x]
    assert sorted(order) == list(range(64)) and order != list(range(64))
    data = of_kind(events, "data")
    assert [i for ev in data for i in ev.items] == [str(i) for i in order]
    assert {(ev.split, ev.epoch, ev.source, ev.dataset) for ev in data} == {("train", 0, "toy", "ToyData")}
    assert all(isinstance(ms, float) and ms >= 0 for ev in data for ms in ev.load_ms)
    [reg] = of_kind(events, "dataset")
    assert (reg.name, reg.items, reg.split) == ("ToyData", 64, "train")


@pytest.mark.parametrize("protocol", ["dict", "method"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmentation_protocols(tmp_path, toy_data, protocol, num_workers):
    """Augment params come from a "_augment" entry (removed from the batch) or last_augment()."""
    ds = toy_data(augment=protocol)
    loader = DataLoader(ds, batch_size=8, num_workers=num_workers)
    with capture() as events:
        run = _run(tmp_path)
        batches = list(track(loader, run))
        run.finish()
    if protocol == "dict":
        assert set(batches[0]) == {"x", "y"}  # the _augment entry never reaches the model
        expected = [{"scale": 1.0 + i / 100} for i in range(64)]
    else:
        expected = [{"flip": i % 2 == 0} for i in range(64)]
    got = [a for ev in of_kind(events, "data") for a in ev.augment]
    assert got == expected


def test_file_paths_subset_and_id_fn(tmp_path, toy_data):
    """Ids are .files paths, resolved through Subset; id_fn overrides everything."""
    ds = toy_data(8)
    ds.files = [f"/data/img{i}.png" for i in range(8)]
    sub = Subset(ds, [5, 2, 7])
    with capture() as events:
        run = _run(tmp_path)
        list(track(DataLoader(sub, batch_size=2), run, split="val"))
        list(track(DataLoader(ds, batch_size=4), run, id_fn=lambda i: f"toy/{i:03d}"))
        run.finish()
    ids = [ev.items for ev in of_kind(events, "data")]
    assert ids == [["/data/img5.png", "/data/img2.png"], ["/data/img7.png"],
                   ["toy/000", "toy/001", "toy/002", "toy/003"], ["toy/004", "toy/005", "toy/006", "toy/007"]]


def test_epochs_count_passes_and_follow_distributed_sampler(tmp_path, toy_data):
    """Epoch = start_epoch + pass; a DistributedSampler's set_epoch wins."""
    from torch.utils.data.distributed import DistributedSampler

    ds = toy_data(8)
    with capture() as events:
        run = _run(tmp_path)
        tracked = track(DataLoader(ds, batch_size=8), run, start_epoch=3)
        for _ in range(2):
            list(tracked)
        sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
        dist_loader = track(DataLoader(ds, batch_size=8, sampler=sampler), run, split="dist")
        sampler.set_epoch(7)
        list(dist_loader)
        run.finish()
    data = of_kind(events, "data")
    assert [(ev.split, ev.epoch) for ev in data] == [("train", 3), ("train", 4), ("dist", 7)]
    assert data[-1].items == ["1", "3", "5", "7"]  # rank 1's shard


def test_data_events_take_the_next_training_step(tmp_path, toy_data):
    """A batch is recorded at the step its metrics will be logged at (run.step + 1)."""
    with capture() as events:
        run = _run(tmp_path)
        for step, _ in enumerate(track(DataLoader(toy_data(16), batch_size=4), run)):
            run.log({"loss": 1.0}, step=step)
        run.finish()
    assert [ev.step for ev in of_kind(events, "data")] == [0, 1, 2, 3]


def test_dataset_wrapper_records_per_item_in_main_process(tmp_path, toy_data):
    """track(Dataset) serves the same items and records one event per item."""
    ds = toy_data(4)
    with capture() as events:
        run = _run(tmp_path)
        tracked = track(ds, run, split="eval")
        x, y = tracked[2]
        assert torch.equal(x, ds.x[2]) and len(tracked) == 4
        run.finish()
    assert [ev.items for ev in of_kind(events, "data")] == [["2"]]


class _Stream(IterableDataset):
    def __iter__(self):
        return iter(range(3))


@pytest.mark.parametrize("obj", [DataLoader(_Stream()), 42])
def test_unsupported_inputs_are_refused(tmp_path, obj):
    """Iterable datasets (no ids) and non-datasets raise ConfigError with a fix."""
    with pytest.raises(ConfigError, match="track"):
        track(obj, object())
