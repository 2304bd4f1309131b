"""Many small runs in one pass: every point once, status per run, nothing re-read; and the
per-chunk column building and per-run status work behind it (issue 10's many-runs line)."""

from __future__ import annotations

import random

from runlake.ingest import ingest
from runlake.ingest.decode import FrameSummary, TableBuilder
from runlake.ingest.discover import discover
from runlake.ingest.frames import FrameBook
from runlake.ingest.status import StatusBook
from runlake.schemas import events as E
from runlake.schemas.codec import pack_metrics
from runlake.schemas.segments import segment_key

RUNS, STEPS, KEYS, FLUSH = 300, 60, 3, 20


def _write_runs(make_writer) -> dict[tuple[str, int, str], float]:
    """RUNS short runs the way the emitter writes them (blocks, run_start, heartbeat,
    run_end), created in shuffled order; returns every point written."""
    rng = random.Random(7)
    expected = {}
    order = list(range(RUNS))
    rng.shuffle(order)
    for r in order:
        run_id = f"run-{r:04d}"
        w = make_writer(run_id, project=f"p{r % 3}").start(name=f"n{r}", total_steps=STEPS)
        for step in range(STEPS):
            values = {f"k{k}": rng.random() for k in range(KEYS)}
            w.metrics(step, values)
            expected.update({(run_id, step, k): v for k, v in values.items()})
            if step % FLUSH == FLUSH - 1:
                if step == FLUSH - 1:
                    w.add(E.Heartbeat, step=step, total_steps=STEPS, interval_s=10.0)
                if step == STEPS - 1:
                    w.end()
                w.flush(packed=True)
        w.seal()
    return expected


def test_300_runs_load_every_point_once_and_a_second_pass_reads_nothing(
        seg_root, make_writer, query, fingerprint):
    """300 runs in one pass: each point exactly once, each run finished with one writer;
    the next pass reads no segment and changes no row."""
    expected = _write_runs(make_writer)
    db = seg_root / "runlake.duckdb"
    report = ingest(seg_root)
    assert report.points == len(expected) == RUNS * STEPS * KEYS and not report.problems
    rows = query(db, "SELECT run_id, step, key, value, count(*) OVER "
                     "(PARTITION BY run_id, step, key) FROM metrics")
    assert len(rows) == len(expected)
    assert all(n == 1 for *_, n in rows)
    assert {(r, s, k): v for r, s, k, v, _ in rows} == expected
    runs = query(db, "SELECT status, count(*), min(last_step), max(last_step), "
                     "min(total_steps) FROM runs GROUP BY status")
    assert runs == [("finished", RUNS, STEPS - 1, STEPS - 1, STEPS)]
    assert query(db, "SELECT count(*), count(DISTINCT run_id) FROM writers "
                     "WHERE status = 'finished'") == [(RUNS, RUNS)]
    assert query(db, "SELECT count(*) FROM ingest_ledger WHERE status = 'done'") == [(RUNS,)]
    before = fingerprint(db)
    again = ingest(seg_root)
    assert (again.segments, again.frames, again.points) == (0, 0, 0)
    assert fingerprint(db) == before


def test_segments_are_discovered_in_layout_order_whatever_the_creation_order(
        seg_root, make_writer):
    """Discovery lists segments sorted by (project, run, writer, seq), not by directory
    order, so every pass reads (and commits) them in the same order; each key is the
    segment's sealed path relative to the root."""
    rng = random.Random(3)
    made = []
    for r in rng.sample(range(40), 40):
        w = make_writer(f"run-{r:02d}", project=f"p{r % 4}")
        for _ in range(1 + r % 3):
            w.start().flush()
            w.seal()
        made += [(f"p{r % 4}", f"run-{r:02d}", w.writer, s) for s in range(1 + r % 3)]
    w.start().flush()  # one segment still open: its key is its sealed name
    made.append((w.project, w.run_id, w.writer, w.segment))
    segments, refused = discover(seg_root)
    assert not refused
    assert [(s.project, s.run_id, s.writer, s.seq) for s in segments] == sorted(made)
    assert [s.key for s in segments] == [segment_key(s.path, seg_root) for s in segments]
    assert [s.sealed for s in segments].count(False) == 1


def _metrics(run_id: str, rng: random.Random, epochs: bool = True) -> list[E.Metrics]:
    """Metrics of one writer whose key sets change from step to step (and some with
    epochs), so a block holds groups of different key counts and sparse rows."""
    keysets = [("a",), ("a", "b", "c"), ("b", "d"), ("a", "b", "c")]
    out = []
    for i in range(40):
        keys = keysets[rng.randrange(len(keysets))]
        out.append(E.Metrics(v=1, run_id=run_id, writer="w", seq=i + 1, ts=10_000 * (i + 1),
                             rank=1, step=i * 2, epoch=i // 10 if i % 3 and epochs else None,
                             values={k: rng.uniform(-5, 5) for k in keys}))
    return out


def _rows(builder: TableBuilder) -> list[tuple]:
    """The metrics rows as tuples, in a canonical order (epochs may be null)."""
    return sorted((tuple(d.values()) for d in builder.to_arrow()["metrics"].to_pylist()),
                  key=repr)


def test_blocks_with_mixed_groups_give_the_rows_of_their_events():
    """Blocks whose groups differ in key count and rows, with and without epochs, from two
    runs and split over frames, become exactly the rows the same events give one per
    line."""
    rng = random.Random(11)
    blocks, events = TableBuilder(), TableBuilder()
    for frame, run_id in enumerate(("run-x", "run-y", "run-x", "run-y")):
        evs = _metrics(run_id, rng, epochs=frame != 1)  # one block without epochs
        block = pack_metrics(evs)
        assert block is not None and len({len(g.keys) for g in block.groups}) > 1
        assert any(g.rows is not None for g in block.groups)
        blocks.add([], [block], run_id, "seg", frame)
        events.add(evs, [], run_id, "seg", frame)
    assert blocks.points == events.points > 0
    got, want = _rows(blocks), _rows(events)
    assert len(got) == events.points and got == want


def test_a_value_that_is_not_a_number_names_its_frame_and_key():
    """A bad value inside a block becomes NaN and one problem naming the frame (segment,
    offset) and the key it was logged under; the other points keep their values."""
    b = TableBuilder()
    good = pack_metrics([E.Metrics(v=1, run_id="r", writer="w", seq=1, ts=1000, rank=0,
                                   step=0, values={"a": 1.0, "b": 2.0})])
    bad = pack_metrics([E.Metrics(v=1, run_id="r", writer="w", seq=2, ts=2000, rank=0,
                                  step=1, values={"x": 3.0, "y": "oops"})])
    b.add([], [good], "r", "p/r/w/000000.jsonl.zst", 0)
    b.add([], [bad], "r", "p/r/w/000000.jsonl.zst", 123)
    table = b.to_arrow()["metrics"].to_pylist()
    values = {d["key"]: d["value"] for d in table}
    assert values["a"] == 1.0 and values["b"] == 2.0 and values["x"] == 3.0
    assert values["y"] != values["y"]  # NaN
    [problem] = b.problems
    assert (problem.segment, problem.offset) == ("p/r/w/000000.jsonl.zst", 123)
    assert "'y'" in problem.reason


def _summary(ts_us: int, control=()) -> FrameSummary:
    return FrameSummary(1, ts_us, 1, list(control))


def test_refresh_still_decides_liveness_of_a_writer_that_sent_nothing_new():
    """A writer that went quiet is judged crashed by a later refresh although no frame of
    its run came in between; a finished run untouched since is not rewritten."""
    book = StatusBook(stale_after=10.0)
    t0 = 1_700_000_000_000_000
    start = E.RunStart(v=1, run_id="live", writer="w", seq=0, ts=t0 * 1000, rank=0,
                       project="p", name="live")
    book.observe("p", "live", "w", _summary(t0, [start]))
    end = E.RunEnd(v=1, run_id="done", writer="w", seq=1, ts=t0 * 1000, rank=0,
                   status="finished")
    book.observe("p", "done", "w", _summary(t0, [end]))
    book.refresh(now_us=t0 + 1_000_000)
    runs, _ = book.take_dirty()
    assert dict(zip(runs["run_id"].to_pylist(), runs["status"].to_pylist())) == {
        "live": "running", "done": "finished"}
    book.refresh(now_us=t0 + 60_000_000)  # nothing observed since: 'live' went quiet
    runs, writers = book.take_dirty()
    assert runs["run_id"].to_pylist() == ["live"] and runs["status"].to_pylist() == ["crashed"]
    assert writers["status"].to_pylist() == ["crashed"]
    book.refresh(now_us=t0 + 120_000_000)
    assert book.take_dirty() == (None, None)  # nothing changed any more


def test_run_metadata_comes_from_the_latest_attempt_among_many_runs():
    """With many runs in the book, a run's name and config come from rank 0 of its latest
    attempt (the writers of other runs do not count)."""
    book = StatusBook()
    t = 1_700_000_000_000_000_000
    for r in range(50):
        for attempt in (0, 1):
            ev = E.RunStart(v=1, run_id=f"r{r}", writer=f"w{attempt}", seq=0, ts=t, rank=0,
                            project="p", name=f"r{r}-a{attempt}", attempt=attempt,
                            config={"attempt": attempt})
            book.observe("p", f"r{r}", f"w{attempt}", _summary(t // 1000, [ev]))
    late = E.RunStart(v=1, run_id="r7", writer="w9", seq=0, ts=t, rank=1, project="p",
                      name="rank1", attempt=5)
    book.observe("p", "r7", "w9", _summary(t // 1000, [late]))  # rank 1: no metadata
    assert {r.name for r in book.runs.values()} == {f"r{r}-a1" for r in range(50)}
    assert book.runs["r7"].config == '{"attempt": 1}'


def test_frame_book_finds_a_copy_below_the_top_of_its_writers_ranges():
    """A frame past every range of its writer is new without a lookup; one inside an
    earlier segment's range is checked against that segment's keys and found."""
    looked = []

    def lookup(segment):
        looked.append(segment)
        return {(5, 99): 40}

    book = FrameBook([("s0", "r", "w", 1, 10)], lookup)
    assert book.seen("r", "w", 11, 1) is None and looked == []
    book.add("r", "w", 11, 1, "s1", 0)
    assert book.seen("r", "w", 12, 2) is None and looked == []
    assert book.seen("r", "w", 5, 99) == ("s0", 40) and looked == ["s0"]
    assert book.seen("r", "w", 11, 1) == ("s1", 0)
