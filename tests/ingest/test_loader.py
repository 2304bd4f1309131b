"""Round trip, double ingest and incremental reading of segments written with the contract."""

from __future__ import annotations

import math
import random
import struct

import pytest

from runlake.ingest import ingest
from runlake.schemas import events as E


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_round_trip_is_bit_exact_with_nonfinite(seg_root, make_writer, query):
    """Every metric value comes back bit-exact, NaN and +/-Inf included, with its step/rank."""
    rng = random.Random(1)
    expected = {}
    for r in range(3):
        w = make_writer(f"run-{r}", rank=0).start(name=f"n{r}")
        for step in range(2000):
            values = {f"k{k}": rng.uniform(-1e6, 1e6) for k in range(10)}
            if step % 97 == 0:
                values["k0"] = math.nan
                values["k1"] = math.inf
                values["k2"] = -math.inf
            w.metrics(step, values, epoch=step // 500)
            for k, v in values.items():
                expected[(f"run-{r}", step, k)] = v
            if step % 250 == 249:
                w.flush()
        w.end().flush()
        w.seal()
    report = ingest(seg_root)
    assert report.points == len(expected) and not report.problems
    rows = query(seg_root / "runlake.duckdb", "SELECT run_id, step, key, value, epoch, rank FROM metrics")
    assert len(rows) == len(expected)
    for run_id, step, key, value, epoch, rank in rows:
        assert _bits(value) == _bits(expected[(run_id, step, key)]) or (
            math.isnan(value) and math.isnan(expected[(run_id, step, key)]))
        assert epoch == step // 500 and rank == 0


def test_second_ingest_changes_nothing(seg_root, make_writer, fingerprint):
    """Ingesting twice leaves every table identical (row counts and content hash)."""
    w = make_writer().start()
    for step in range(300):
        w.metrics(step, {"loss": 1 / (step + 1)})
    w.add(E.Log, level="INFO", message="x").flush()
    first = ingest(seg_root)
    before = fingerprint(seg_root / "runlake.duckdb")
    second = ingest(seg_root)
    assert first.points == 300 and second.points == 0 and second.segments == 0
    assert fingerprint(seg_root / "runlake.duckdb") == before


def test_open_segment_is_read_incrementally_then_sealed(seg_root, make_writer, query, make_frame):
    """Only new whole frames load; a torn tail waits; sealing by rename continues the offset."""
    db = seg_root / "runlake.duckdb"
    w = make_writer().start()
    for step in range(10):
        w.metrics(step, {"a": float(step)})
    w.flush()
    assert ingest(seg_root).points == 10
    for step in range(10, 20):
        w.metrics(step, {"a": float(step)})
    whole = make_frame(w.pending)
    w.pending = []
    w.raw(whole[: len(whole) // 2])  # the writer is half way through a frame
    report = ingest(seg_root)
    assert report.points == 0 and not report.problems
    w.raw(whole[len(whole) // 2:])
    w.metrics(20, {"a": 20.0}).flush()
    w.seal()
    report = ingest(seg_root)
    assert report.points == 11 and not report.problems
    assert query(db, "SELECT count(*), count(DISTINCT step) FROM metrics") == [(21, 21)]
    assert query(db, "SELECT sealed, status, frames FROM ingest_ledger") == [(True, "done", 3)]


def test_every_event_kind_lands_in_its_table(seg_root, make_writer, query):
    """data/dataset/checkpoint/sample/log/alert/system events fill their tables field by field."""
    w = make_writer().start(name="kinds", config={"lr": 0.1, "opt": {"b": [1, 2]}}, tags=["t1"],
                            git=E.Git(commit="abc", branch="main", dirty=False), world_size=1)
    w.add(E.Data, items=["i1", "i2", "i3"], split="val", step=3, epoch=1, source="s3://b",
          dataset="mnist", augment=[{"flip": True}, None, {"crop": 4}], cache_hit=[True, False, None],
          load_ms=2.5)
    w.add(E.Data, items=["j1"], augment={"shared": 1}, cache_hit=True, load_ms=[7.0])
    w.add(E.Dataset, name="mnist", version="v2", digest="d", items=10, source="s", split="train",
          meta={"m": 1})
    w.add(E.Checkpoint, uri="file:///c.pt", step=5, bytes=100, sha256="h",
          metrics={"loss": "NaN"}, tags=["best"])
    w.add(E.Sample, name="s", scores={"bleu": 0.25, "len": 3.0}, step=2, uri="u", item_id="i1")
    w.add(E.Log, level="ERROR", levelno=40, logger="lg", message="boom", step=4)
    w.add(E.Alert, message="nan loss", severity="critical", alert="nonfinite", key="loss",
          value="NaN", suggestion="lower lr", step=4, source="online")
    w.add(E.System, values={"cpu_percent": 50.0, "sys/rss": 1e9})
    w.end(summary={"best": 0.5}).flush()
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.rows == {"data_items": 4, "datasets": 1, "checkpoints": 1, "samples": 2,
                           "logs": 1, "alerts": 1, "metrics": 2}
    items = query(db, "SELECT item_id, split, step, epoch, source, dataset, augment, cache_hit, "
                      "load_ms FROM data_items ORDER BY item_id")
    assert items[0] == ("i1", "val", 3, 1, "s3://b", "mnist", '{"flip":true}', True, 2.5)
    assert items[1][6:] == (None, False, 2.5) and items[2][6:] == ('{"crop":4}', None, 2.5)
    assert items[3][6:] == ('{"shared":1}', True, 7.0)
    assert query(db, "SELECT key FROM metrics ORDER BY key") == [("sys/cpu_percent",), ("sys/rss",)]
    assert query(db, "SELECT key, value FROM samples ORDER BY key") == [("bleu", 0.25), ("len", 3.0)]
    alert = query(db, "SELECT alert, severity, key, isnan(value), suggestion, source FROM alerts")
    assert alert == [("nonfinite", "critical", "loss", True, "lower lr", "online")]
    assert query(db, "SELECT uri, bytes, metrics, tags FROM checkpoints") == [
        ("file:///c.pt", 100, '{"loss":"NaN"}', ["best"])]
    assert query(db, "SELECT level, levelno, logger, message, step FROM logs") == [
        ("ERROR", 40, "lg", "boom", 4)]
    run = query(db, "SELECT name, status, config->>'$.opt.b[1]', tags, git_commit, summary "
                    "FROM runs")
    assert run == [("kinds", "finished", "2", ["t1"], "abc", '{"best": 0.5}')]


def test_timestamps_accept_int_ns_and_float_seconds(seg_root, make_writer, query):
    """ts as int nanoseconds and as float seconds both become the right UTC TIMESTAMP."""
    w = make_writer()
    w.pending.append(E.Metrics(v=1, run_id="run-a", writer=w.writer, seq=1,
                               ts=1_700_000_000_123_456_789, rank=0, step=1, values={"a": 1.0}))
    w.pending.append(E.Metrics(v=1, run_id="run-a", writer=w.writer, seq=2, ts=1_700_000_001.5,
                               rank=0, step=2, values={"a": 2.0}))
    w.flush()
    ingest(seg_root)
    rows = query(seg_root / "runlake.duckdb", "SELECT step, epoch_us(ts) FROM metrics ORDER BY step")
    assert rows == [(1, 1_700_000_000_123_456), (2, 1_700_000_001_500_000)]


@pytest.mark.parametrize("chunk", [7, 1000])
def test_chunked_commits_load_everything_once(seg_root, make_writer, query, chunk):
    """A backlog split into many commits still loads every row exactly once."""
    from runlake.ingest.loader import run_pass
    from runlake.store import locate, open_backend

    w = make_writer().start()
    for step in range(500):
        w.metrics(step, {"a": 1.0, "b": 2.0})
        if step % 50 == 49:
            w.flush()
    report = run_pass(seg_root, open_backend(locate(seg_root)), chunk_points=chunk)
    assert report.points == 1000 and (report.commits > 5) == (chunk == 7)
    assert ingest(seg_root).points == 0
    assert query(seg_root / "runlake.duckdb",
                 "SELECT count(*), count(DISTINCT (step, key)) FROM metrics") == [(1000, 1000)]
