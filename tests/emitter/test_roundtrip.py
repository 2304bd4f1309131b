"""Events written by the emitter read back exactly with the schemas' framing and codec."""

from __future__ import annotations

import hashlib
import math
import random
import struct

import pytest

import runlake
from runlake.schemas.codec import to_float


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_floats_round_trip_bit_exact(rl, root, quiet):
    """Random doubles over the full exponent range come back bit for bit."""
    rng = random.Random(7)
    sent = []
    with runlake.init("p", root=root, **quiet) as run:
        for _ in range(300):
            d = {f"k{i}": struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
                 for i in range(5)}
            d = {k: (v if math.isfinite(v) else 1.5) for k, v in d.items()}
            d["tiny"] = 5e-324
            d["neg0"] = -0.0
            sent.append(d)
            run.log(d)
    got = [m.values for m in rl.of_kind(rl.read_run(run.dir), "metrics")]
    assert len(got) == len(sent)
    for a, b in zip(sent, got):
        assert {k: bits(v) for k, v in a.items()} == {k: bits(to_float(v)) for k, v in b.items()}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_values_are_kept(rl, root, quiet, value):
    """NaN and ±Inf are written as tokens and read back as the same non-finite float."""
    with runlake.init("p", root=root, **quiet) as run:
        run.log({"loss": 1.0})
        run.log({"loss": value, "ok": 2.0})
    m = rl.of_kind(rl.read_run(run.dir), "metrics")
    back = to_float(m[1].values["loss"])
    assert (math.isnan(back) if math.isnan(value) else back == value)
    assert to_float(m[1].values["ok"]) == 2.0


def test_steps_auto_increment_and_explicit_steps_kept(rl, root, quiet):
    """step=None continues from the highest step; out-of-order and repeated steps stay as given."""
    with runlake.init("p", root=root, **quiet) as run:
        run.log({"a": 1.0})
        run.log({"a": 1.0})
        run.log({"a": 1.0}, step=10)
        run.log({"b": 1.0}, step=10)
        run.log({"a": 1.0}, step=3)
        run.log({"a": 1.0})
        run.log({"a": 1.0}, step=7, epoch=2)
        assert run.step == 11
    m = rl.of_kind(rl.read_run(run.dir), "metrics")
    assert [e.step for e in m] == [0, 1, 10, 10, 3, 11, 7]
    assert m[-1].epoch == 2 and m[0].epoch is None


def test_seq_is_gap_free_from_zero_and_run_start_first(rl, root, quiet):
    """Every event of a writer has seq 0..n-1; run_start is first and run_end last."""
    with runlake.init("p", root=root, **quiet) as run:
        for i in range(50):
            run.log({"x": float(i)})
        run.log_data(["a", "b"])
        run.alert("hello")
    events = rl.read_run(run.dir)
    assert sorted(e.seq for e in events) == list(range(len(events)))
    assert rl.kinds(events)[0] == "run_start" and rl.kinds(events)[-1] == "run_end"
    assert {e.writer for e in events} == {run.writer}
    assert events[-1].events == len(events)


def test_run_start_records_setup(rl, root, quiet):
    """run_start carries project, name, group, config, tags, host, argv, world and totals."""
    cfg = {"lr": 3e-4, "model": {"layers": 4, "act": "gelu"}, "seeds": [1, 2]}
    with runlake.init("proj", "my run", config=cfg, tags=("a", "b"), group="g", root=root,
                      total_steps=100, heartbeat_interval=5, **quiet) as run:
        pass
    start = rl.read_run(run.dir)[0]
    assert (start.project, start.name, start.group) == ("proj", "my run", "g")
    assert start.config == cfg and start.tags == ["a", "b"]
    assert start.host.pid > 0 and start.host.python and start.host.cpu_count
    assert start.total_steps == 100 and start.heartbeat_s == 5.0
    assert start.world_size == 1 and start.attempt == 0 and start.resumed_from is None
    assert run.dir == root.absolute() / "proj" / run.id


def test_every_event_kind_round_trips(rl, root, quiet, tmp_path):
    """log_data, log_dataset, log_checkpoint (size+sha filled), log_sample and alert land."""
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights" * 100)
    with runlake.init("p", root=root, **quiet) as run:
        run.log({"loss": 1.0})
        run.log_data([1, "b", tmp_path / "c.png"], split="val", epoch=1, source="s3://x",
                     augment=[{"flip": True}, None, {"crop": [1, 2]}], cache_hit=[True, False, None],
                     load_ms=2.5)
        run.log_dataset("cifar", version="1", digest="abc", items=range(10), meta={"n": 1})
        run.log_checkpoint(ckpt, metrics={"val/loss": 0.5}, tags=["best"])
        run.log_checkpoint("s3://bucket/ck.pt", step=9)
        run.log_sample("gen-1", scores={"fid": 12.5}, uri="x.png", item_id=42)
        run.alert("custom", severity="critical", key="loss", value=3, suggestion="do x")
    ev = rl.read_run(run.dir)
    data = rl.of_kind(ev, "data")[0]
    assert data.items == ["1", "b", str(tmp_path / "c.png")]
    assert data.split == "val" and data.epoch == 1 and data.step == 1
    assert data.augment == [{"flip": True}, None, {"crop": [1, 2]}]
    assert data.cache_hit == [True, False, None] and data.load_ms == 2.5
    ds = rl.of_kind(ev, "dataset")[0]
    assert (ds.name, ds.items, ds.meta) == ("cifar", 10, {"n": 1})
    local, remote = rl.of_kind(ev, "checkpoint")
    assert local.bytes == 700 and local.sha256 == hashlib.sha256(b"weights" * 100).hexdigest()
    assert local.step == 0 and local.tags == ["best"] and local.metrics == {"val/loss": 0.5}
    assert remote.bytes is None and remote.sha256 is None and remote.step == 9
    sample = rl.of_kind(ev, "sample")[0]
    assert sample.scores == {"fid": 12.5} and sample.item_id == "42"
    alert = rl.of_kind(ev, "alert")[0]
    assert (alert.severity, alert.key, alert.value, alert.source) == ("critical", "loss", 3.0, "user")


def test_per_item_list_length_mismatch_is_a_clear_error(rl, root, quiet):
    """augment with a different length than items raises and logs nothing."""
    with runlake.init("p", root=root, **quiet) as run:
        with pytest.raises(runlake.EventValueError, match="augment has 1 entries but items has 2"):
            run.log_data(["a", "b"], augment=[{"x": 1}])
    assert rl.of_kind(rl.read_run(run.dir), "data") == []
