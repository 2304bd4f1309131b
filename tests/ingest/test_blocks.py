"""Ingest of metrics_block lines: the same rows as one event per line, damage contained."""

from __future__ import annotations

import json

import pytest
import zstandard

from runlake.ingest import ingest
from runlake.schemas import events as E

_DATA_TABLES = ("metrics", "data_items", "logs", "runs", "writers")


def _write_runs(make_writer, packed: bool) -> None:
    """Two runs x two ranks: key sets that change, epochs, tokens, a bool, a bad value."""
    for run_id in ("run-a", "run-b"):
        for rank in (0, 1):
            w = make_writer(run_id, rank=rank)
            w.ts = 1_700_000_000_000_000_000  # both encodings get the same timestamps
            w.start(name=run_id, world_size=2)
            for flush in range(3):
                for step in range(flush * 40, flush * 40 + 40):
                    values = {"train/loss": 1.0 / (step + 1), "lr": 0.001}
                    if step % 10 == 0:
                        values = {"val/loss": 0.5, "val/acc": step % 3 == 0}
                    if step == 13:
                        values["train/loss"] = float("nan")
                    if step == 17 and rank == 1:
                        values["lr"] = float("inf")
                    w.metrics(step, values, epoch=step // 50 if run_id == "run-a" else None)
                    if step % 25 == 0:
                        w.add(E.System, values={"cpu_percent": 50.0 + step, "rss_mb": 100.0})
                        w.add(E.Log, level="INFO", message=f"step {step}")
                w.add(E.Data, items=[f"img-{flush}-{i}" for i in range(4)], step=flush * 40)
                w.add(E.Heartbeat, step=flush * 40 + 39)
                w.flush(packed=packed)
            w.end()
            w.flush(packed=packed)
            w.seal()


def test_packed_and_line_segments_load_the_same_rows(tmp_path, segment_writer, fingerprint,
                                                     query):
    """The emitter's blocks and one-event-per-line segments give identical store rows."""
    dbs = {}
    for packed in (False, True):
        root = tmp_path / f"lake-{packed}"
        _write_runs(lambda run_id, **kw: segment_writer(root, "proj", run_id, **kw), packed)
        dbs[packed] = root / "runlake.duckdb"
        report = ingest(root, dbs[packed])
        assert report.problems == []
        assert report.points == 4 * (108 * 2 + 12 * 2 + 5 * 2)  # train, val, sys rows
    plain, packed = (fingerprint(dbs[p]) for p in (False, True))
    assert {t: plain[t] for t in _DATA_TABLES} == {t: packed[t] for t in _DATA_TABLES}
    nan, inf, acc = query(dbs[True], """
        SELECT count(*) FILTER (isnan(value)), count(*) FILTER (isinf(value)),
               sum(value) FILTER (key = 'val/acc')
        FROM metrics""")[0]
    assert (nan, inf) == (4, 2) and acc == 2 * 2 * 4  # steps 0, 30, 60, 90 hit step % 3 == 0
    assert query(dbs[True], "SELECT count(DISTINCT epoch) FROM metrics WHERE run_id = 'run-a'"
                 )[0][0] == 3


def _raw_frame(*lines: dict) -> bytes:
    content = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return zstandard.ZstdCompressor(write_checksum=True).compress(content)


def _env(seq: int) -> dict:
    return {"v": 1, "run_id": "run-a", "writer": "r0000-a000-test", "seq": seq, "ts": 10**18,
            "rank": 0}


@pytest.mark.parametrize("block, reason", [
    ({"seqs": [1, 2], "times": [1, 2], "steps": [0],
      "groups": [{"keys": ["x"], "values": [1.0, 2.0]}]}, "columns differ in length"),
    ({"seqs": [1, 2], "times": [1, 2], "steps": [0, 2**64],
      "groups": [{"keys": ["x"], "values": [1.0, 2.0]}]}, "Expected `int` <= 9223372036854775807"),
    ({"seqs": [1, 2], "times": [1.5, 1e12], "steps": [0, 1],
      "groups": [{"keys": ["x"], "values": [1.0, 2.0]}]}, "Expected `float` <= 100000000000.0"),
    ({"seqs": [1], "times": [1], "steps": [0],
      "groups": [{"keys": ["x"], "values": ["fast"]}]}, "metric 'x': expected a number"),
])
def test_a_damaged_block_is_quarantined_and_its_frame_still_loads(make_writer, seg_root, query,
                                                                  block, reason):
    """A bad block costs only its own rows (or value), named in the quarantine."""
    w = make_writer("run-a").start(name="a")
    w.flush()
    w.raw(_raw_frame(
        {"kind": "log", **_env(5), "level": "INFO", "message": "before"},
        {"kind": "metrics_block", **_env(6), **block},
        {"kind": "metrics", **_env(9), "step": 7, "values": {"y": 3.0}},
    ))
    report = ingest(seg_root, seg_root / "runlake.duckdb")
    assert len(report.problems) == 1 and reason in report.problems[0]
    db = seg_root / "runlake.duckdb"
    assert query(db, "SELECT message FROM logs") == [("before",)]
    assert ("y", 3.0) in query(db, "SELECT key, value FROM metrics")
    assert reason in query(db, "SELECT reason FROM quarantine")[0][0]
