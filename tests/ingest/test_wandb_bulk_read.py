"""The batched reads of W&B history and summary records (``bulk_rows``, ``summaries``) give
exactly what reading the records one by one gives: rows, run summary, problems."""

from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path

import pytest

pytest.importorskip("wandb")

from runlake.ingest import wandb_run  # noqa: E402
from runlake.ingest.wandb_records import BLOCK_LEN, load_proto  # noqa: E402


def _write_log(path: Path, records: list[bytes]) -> None:
    """W&B's block log: header, then FULL / FIRST..LAST chunks within 32 KiB blocks."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for data in records:
        first = True
        while True:
            left = BLOCK_LEN - len(out) % BLOCK_LEN
            if left < 7:
                out += bytes(left)
                continue
            piece, data = data[:left - 7], data[left - 7:]
            kind = (1 if not data else 2) if first else (4 if not data else 3)
            out += struct.pack("<IHB", zlib.crc32(piece, zlib.crc32(bytes([kind]))), len(piece), kind)
            out += piece
            first = False
            if not data:
                break
    path.write_bytes(bytes(out))


def _records(steps: int, seed: int) -> list[bytes]:
    """A run as W&B writes it: per step a history row (keys in varying order) and two summary
    updates, plus the odd row and summary that is not the common kind."""
    pb, rng = load_proto(), random.Random(seed)
    names = [f"m/{k}" for k in range(6)]
    out, num = [], 0

    def record(**kw) -> None:
        nonlocal num
        num += 1
        out.append(pb.Record(num=num, **kw).SerializeToString())

    def items(kind, values: dict, nested=True):
        got = []
        for key, value in values.items():
            item = kind(value_json=value if isinstance(value, str) else json.dumps(value))
            parts = key.split(".")
            if nested or len(parts) > 1:
                item.nested_key.extend(parts)
            else:
                item.key = key
            got.append(item)
        return got

    record(run=pb.RunRecord(run_id="abc", project="p"))
    for step in range(steps):
        row = {n: rng.random() for n in rng.sample(names, rng.choice((6, 6, 6, 4)))}
        row.update({"_step": step, "_timestamp": 1.7e9 + step, "_runtime": step / 10})
        if step % 97 == 5:
            row["acc.top1"] = 0.5  # a nested key: the row-by-row path
        if step % 89 == 3:
            row["m/0"] = "NaN"  # W&B's bare NaN: not JSON for msgspec
        keys = list(row)
        rng.shuffle(keys)
        hist = pb.HistoryRecord(item=items(pb.HistoryItem, {k: row[k] for k in keys}))
        hist.step.num = step
        record(history=hist)
        record(summary=pb.SummaryRecord(update=items(pb.SummaryItem, {"_wandb.runtime": 1, "_runtime": 2},
                                                     nested=False)))
        summ = pb.SummaryRecord(update=items(pb.SummaryItem, {k: row[k] for k in keys}))
        if step % 53 == 7:
            summ.remove.add(nested_key=["m/1"])  # a remove: read as its own op
        if step % 61 == 9:
            summ.update.add(key="deep", value_json=json.dumps({"a": step}))  # one-part key field
        record(summary=summ)
        if step == steps // 2:
            record(config=pb.ConfigRecord(update=[pb.ConfigItem(key="lr", value_json="0.1")]))
    record(exit=pb.RunExitRecord(exit_code=0))
    return out


def _one_by_one(monkeypatch) -> None:
    """Read every history and summary record by itself (the reference)."""
    monkeypatch.setattr(wandb_run, "bulk_rows", lambda raws: None)

    def summaries(self):
        for raw in self.raw_summary:
            self.summary(self.view.FromString(raw).summary, raw)
        self.raw_summary.clear()

    monkeypatch.setattr(wandb_run._Reader, "summaries", summaries)


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_reads_equal_record_by_record(tmp_path, monkeypatch, seed):
    path = tmp_path / "run-abc.wandb"
    _write_log(path, _records(9000, seed))  # > 2 batches; steps 130 and 16514 (varint \x82\x01)
    fast = wandb_run.read_run(path)
    with monkeypatch.context() as m:
        _one_by_one(m)
        slow = wandb_run.read_run(path)
    assert len(fast.rows) == 9000
    assert repr(fast.rows) == repr(slow.rows)  # repr: NaN == NaN
    assert fast.objects == slow.objects and fast.summary == slow.summary
    assert fast.summary["deep.a"] == max(s for s in range(9000) if s % 61 == 9)
    assert fast.problems == slow.problems and fast.skipped == slow.skipped
    assert fast.config_updates == slow.config_updates


def test_a_bad_record_in_a_batch_costs_only_itself(tmp_path):
    pb = load_proto()
    records = _records(300, 2)
    bad = pb.Record(num=10**6).SerializeToString()[:2] + b"\x12\x05\x0a\x09xx"  # a history tag, cut
    records[100:100] = [bad]
    path = tmp_path / "run-abc.wandb"
    _write_log(path, records)
    run = wandb_run.read_run(path)
    assert [p for p in run.problems if "record 101 could not be read" in p]
    assert len(run.rows) == 300
