"""Damaged segments: every problem becomes a quarantine row with a clear reason, the rest loads."""

from __future__ import annotations

import logging

import msgspec
import pytest

from runlake.ingest import ingest


def _good(w, steps):
    for step in steps:
        w.metrics(step, {"loss": float(step)})
    w.flush()


def _torn_sealed(w, make_frame):
    _good(w, range(5))
    w.end().flush()
    w.metrics(5, {"loss": 5.0})
    tail = make_frame(w.pending)
    w.pending = []
    w.raw(tail[:-7])
    return True  # ended before the torn frame


def _truncated_middle(w, make_frame):
    _good(w, range(5))
    w.metrics(5, {"loss": 5.0})
    cut = make_frame(w.pending)
    w.pending = []
    w.raw(cut[: len(cut) // 2])  # a copy cut short, then more frames after it
    _good(w, range(6, 10))


def _bit_flip(w, make_frame):
    _good(w, range(5))
    data = bytearray(make_frame([w.metrics(5, {"loss": 5.0}).pending.pop()]))
    data[len(data) // 2] ^= 0x40
    w.raw(bytes(data))
    _good(w, range(6, 10))


def _garbage_appended(w, make_frame):
    _good(w, range(10))
    w.raw(b"this is not zstd at all" * 3)


def _garbage_prefixed(w, make_frame):
    w.raw(b"\x00garbage before the first frame\n")
    _good(w, range(10))


def _line(w, make_frame, text: bytes):
    import zstandard

    _good(w, range(5))
    ev = msgspec.json.encode(w.metrics(5, {"loss": 5.0}).pending.pop())
    body = ev + b"\n" + text + b"\n"
    w.raw(zstandard.ZstdCompressor(write_checksum=True).compress(body))
    _good(w, range(6, 10))


def _unknown_kind(w, make_frame):
    _line(w, make_frame, b'{"kind":"telepathy","v":1,"run_id":"run-a","writer":"x","seq":9,"ts":1,"rank":0}')


def _newer_version(w, make_frame):
    _line(w, make_frame, b'{"kind":"metrics","v":99,"run_id":"run-a","writer":"x","seq":9,"ts":1,"rank":0,"step":1,"values":{}}')


def _step_beyond_int64(w, make_frame):  # crashed the whole pass before the schema bounds
    _line(w, make_frame, b'{"kind":"metrics","v":1,"run_id":"run-a","writer":"x","seq":9,"ts":1,"rank":0,"step":18446744073709551616,"values":{"loss":1.0}}')


def _rank_beyond_int32(w, make_frame):
    _line(w, make_frame, b'{"kind":"log","v":1,"run_id":"run-a","writer":"x","seq":9,"ts":1,"rank":4294967296,"level":"INFO","message":"m"}')


def _not_json(w, make_frame):
    _line(w, make_frame, b"{this is not json")


CASES = {
    # name: (damage, expected points loaded, words in the quarantine reason)
    "torn sealed tail": (_torn_sealed, 5, "incomplete zstd frame"),
    "truncated frame mid-segment": (_truncated_middle, 9, "does not decompress"),
    "bit flip inside a frame": (_bit_flip, 9, "does not decompress"),
    "garbage appended": (_garbage_appended, 10, "not a zstd frame"),
    "garbage prefixed": (_garbage_prefixed, 10, "not a zstd frame"),
    "unknown kind": (_unknown_kind, 10, "unknown event kind"),
    "newer schema version": (_newer_version, 10, "upgrade runlake"),
    "line that is not JSON": (_not_json, 10, "JSON"),
    "step beyond int64": (_step_beyond_int64, 10, "Expected `int` <= 9223372036854775807"),
    "rank beyond int32": (_rank_beyond_int32, 10, "Expected `int` <= 2147483647"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damage_is_quarantined_and_the_rest_loads(seg_root, make_writer, make_frame, query,
                                                  caplog, case):
    """Each kind of damage gives a quarantine row and a warning naming file and offset."""
    damage, points, reason = CASES[case]
    w = make_writer().start()
    if not damage(w, make_frame):
        w.end().flush()
    w.seal()
    with caplog.at_level(logging.WARNING, logger="runlake.ingest"):
        report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.points == points
    assert query(db, "SELECT count(DISTINCT step) FROM metrics") == [(points,)]
    rows = query(db, "SELECT segment, byte_offset, byte_length, reason, excerpt FROM quarantine")
    assert len(rows) == 1 and reason in rows[0][3], rows
    assert rows[0][0] == "proj/run-a/r0000-a000-test/000000.jsonl.zst"
    assert report.problems and reason in report.problems[0]
    assert any(f"{rows[0][0]} at byte {rows[0][1]}" in r.getMessage() for r in caplog.records)
    assert query(db, "SELECT status FROM ingest_ledger") == [("damaged",)]
    assert query(db, "SELECT status FROM runs") == [("finished",)]
    again = ingest(seg_root)
    assert again.points == 0 and not again.problems
    assert query(db, "SELECT count(*) FROM quarantine") == [(1,)]


def test_bad_metric_string_is_stored_as_nan_and_reported(seg_root, make_writer, query):
    """A metric value that is neither a number nor a NaN/Inf token is NaN plus a quarantine row."""
    w = make_writer().start()
    w.metrics(1, {"a": 1.0, "b": "oops"}).metrics(2, {"a": 2.0, "b": 3.0}).flush()
    report = ingest(seg_root)
    db = seg_root / "runlake.duckdb"
    assert report.points == 4
    assert query(db, "SELECT step, isnan(value) FROM metrics WHERE key = 'b' ORDER BY step") == [
        (1, True), (2, False)]
    assert query(db, "SELECT reason FROM quarantine")[0][0].startswith("metric 'b'")


def test_open_segment_with_torn_tail_waits_without_quarantine(seg_root, make_writer, make_frame,
                                                              query):
    """A torn tail of a segment still open is not a problem: it waits for more bytes."""
    w = make_writer().start()
    _torn_sealed(w, make_frame)
    report = ingest(seg_root)
    assert report.points == 5 and not report.problems
    assert query(seg_root / "runlake.duckdb", "SELECT status FROM runs") == [("finished",)]
    assert query(seg_root / "runlake.duckdb", "SELECT status, sealed FROM ingest_ledger") == [
        ("live", False)]


def test_events_naming_another_run_are_skipped(seg_root, make_writer, query):
    """Events whose run_id differs from their folder are not loaded into another run."""
    w = make_writer().start()
    w.metrics(1, {"a": 1.0})
    w.pending[-1].run_id = "someone-else"
    w.metrics(2, {"a": 2.0}).flush()
    report = ingest(seg_root)
    assert report.points == 1 and "someone-else" in report.problems[0]
