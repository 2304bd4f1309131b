"""metrics_block: a flush's metrics events packed column-wise, read back as the same events."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlake.schemas import (
    ENCODER,
    Metrics,
    MetricsBlock,
    MetricsGroup,
    block_error,
    decode_lines,
    pack_metrics,
    unpack_metrics,
)

_KEYS = st.sampled_from(["loss", "lr", "acc", "grad/norm", "ключ", "a\"b", ""])
_VALUES = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["NaN", "Infinity", "-Infinity"])
    | st.booleans()
    | st.none()
)


@st.composite
def _events(draw) -> list[Metrics]:
    n = draw(st.integers(1, 12))
    ts = draw(st.integers(0, 2**62))
    keysets = draw(st.lists(st.lists(_KEYS, max_size=4, unique=True), min_size=1, max_size=3))
    events = []
    for i in range(n):
        keys = draw(st.sampled_from(keysets))
        events.append(Metrics(
            v=1, run_id="run", writer="r0000-a000-x", seq=i * draw(st.integers(1, 3)),
            ts=ts + i, rank=2, step=draw(st.integers(-5, 2**62)),
            values={k: draw(_VALUES) for k in keys},
            epoch=draw(st.none() | st.integers(0, 100))))
    return events


@settings(max_examples=150, deadline=None)
@given(events=_events())
def test_packed_metrics_decode_to_the_same_events(events):
    """Any run of metrics events (mixed key sets, epochs, tokens, bools, nulls) survives packing."""
    block = pack_metrics(events)
    line = ENCODER.encode_lines([block])
    assert line.count(b"\n") == 1
    decoded, problems = decode_lines(line)
    assert problems == []
    assert decoded == events
    assert unpack_metrics(block) == events


def test_one_group_per_key_tuple_and_values_row_major():
    """A steady training loop is one group: keys written once, values row after row."""
    events = [Metrics(1, "r", "w", i, 10 + i, 0, i, {"loss": float(i), "lr": 0.1}) for i in range(3)]
    raw = json.loads(ENCODER.encode(pack_metrics(events)))
    assert raw["kind"] == "metrics_block" and raw["seqs"] == [0, 1, 2] and "epochs" not in raw
    assert raw["groups"] == [{"keys": ["loss", "lr"], "values": [0.0, 0.1, 1.0, 0.1, 2.0, 0.1]}]


def test_events_of_other_writers_are_not_packed_together():
    """Packing needs one envelope: events of two writers give no block."""
    a = Metrics(1, "r", "w1", 0, 1, 0, 0, {"x": 1.0})
    b = Metrics(1, "r", "w2", 0, 1, 0, 0, {"x": 1.0})
    assert pack_metrics([a, b]) is None and pack_metrics([]) is None


def _block(**change) -> MetricsBlock:
    fields = dict(v=1, run_id="r", writer="w", seq=0, ts=1, rank=0, seqs=[0, 1], times=[1, 2],
                  steps=[0, 1], groups=[MetricsGroup(["a"], [1.0, 2.0])])
    fields.update(change)
    return MetricsBlock(**fields)


@pytest.mark.parametrize("change, reason", [
    (dict(steps=[0]), "columns differ in length"),
    (dict(epochs=[1]), "columns differ in length"),
    (dict(groups=[MetricsGroup(["a"], [1.0])]), "has 1 values for 2 rows x 1 keys"),
    (dict(groups=[MetricsGroup(["a"], [1.0], [5])]), "indexes rows outside 0..1"),
    (dict(groups=[MetricsGroup(["a"], [1.0], [0])]), "groups cover 1 rows, the block has 2"),
])
def test_an_inconsistent_block_is_one_clear_problem_and_the_frame_lives_on(change, reason):
    """A damaged block is reported with its line number; the lines around it still decode."""
    assert block_error(_block()) is None
    bad = _block(**change)
    assert reason in block_error(bad)
    good = Metrics(1, "r", "w", 9, 9, 0, 9, {"z": 1.0})
    events, problems = decode_lines(ENCODER.encode_lines([good, bad, good]))
    assert events == [good, good]
    assert len(problems) == 1 and problems[0].line_no == 2 and reason in problems[0].reason


def test_nonfinite_tokens_in_a_block_come_back_as_tokens():
    """Tokens stay tokens on read (readers map them with to_float), as for metrics lines."""
    ev = Metrics(1, "r", "w", 0, 1, 0, 0, {"a": "NaN", "b": "-Infinity"})
    events, problems = decode_lines(ENCODER.encode_lines([pack_metrics([ev, ev])]))
    back = events[0]
    assert problems == [] and len(events) == 2
    assert back.values == {"a": "NaN", "b": "-Infinity"}
    assert not math.isfinite(float(back.values["b"]))


def test_readers_that_want_columns_can_keep_the_block():
    """decode_lines(unpack=False) hands the block itself (resume reads its steps column);
    a damaged block is still a problem, not a block."""
    events = [Metrics(1, "r", "w", i, i, 0, 10 + i, {"a": 1.0}) for i in range(3)]
    good = pack_metrics(events)
    bad = _block(steps=[0])
    out, problems = decode_lines(ENCODER.encode_lines([good, bad]), unpack=False)
    assert out == [good] and out[0].steps == [10, 11, 12]
    assert [p.line_no for p in problems] == [2]
