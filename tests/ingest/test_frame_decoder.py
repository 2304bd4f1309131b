"""FrameDecoder.decode: the one-call fast path and every way out of it, line for line."""

from __future__ import annotations

import math

import pytest

from runlake.ingest.decode import FrameDecoder
from runlake.schemas import events as E
from runlake.schemas.codec import ENCODER


def _env(seq: int) -> dict:
    return dict(v=1, run_id="r", writer="r0000-a000-test", seq=seq, ts=1_000_000 + seq, rank=0)


def _metrics(seq: int) -> E.Metrics:
    return E.Metrics(**_env(seq), step=seq, values={"loss": 1.0 / (seq + 1), "nan": "NaN"})


def _heartbeat(seq: int) -> E.Heartbeat:
    return E.Heartbeat(**_env(seq), step=seq)


def _lines(*events) -> bytes:
    return ENCODER.encode_lines(list(events))


NEWER = b'{"kind":"metrics","v":99,"run_id":"r","writer":"w","seq":9,"ts":1,"rank":0,"step":9,"values":{}}\n'


@pytest.mark.parametrize("content, n_metrics, kinds, bad_lines", [
    (_lines(*map(_metrics, range(5))), 5, [], []),
    (_lines(_heartbeat(0), *map(_metrics, range(1, 4))), 3, ["heartbeat"], []),
    (_lines(*map(_metrics, range(3)), _heartbeat(3), _metrics(4)), 4, ["heartbeat"], []),
    (_lines(_heartbeat(0), _heartbeat(1)), 0, ["heartbeat", "heartbeat"], []),
    (_lines(*map(_metrics, range(2))) + NEWER + _lines(_metrics(3)), 3, [], [3]),
    (_lines(_metrics(0)) + b'{"kind":"metrics", broken\n' + _lines(_metrics(2)), 2, [], [2]),
    (_lines(_metrics(0)) + b'{"kind":"telepathy","v":1}\n', 1, [], [2]),
])
def test_decode_keeps_every_good_line_and_names_the_bad_ones(content, n_metrics, kinds, bad_lines):
    metrics, others, problems = FrameDecoder().decode(content)
    assert len(metrics) == n_metrics
    assert all(m.values["loss"] == 1.0 / (m.step + 1) for m in metrics)
    assert all(m.values["nan"] == "NaN" or math.isnan(m.values["nan"]) for m in metrics)
    assert [o.__struct_config__.tag for o in others] == kinds
    assert [line_no for line_no, _reason, _text in problems] == bad_lines


def test_a_block_frame_takes_the_one_call_path_and_stays_a_block():
    """The emitter's frames (a metrics_block and a heartbeat) decode in one call, the block
    kept column-wise for the loader instead of unpacked into events."""
    from runlake.schemas.codec import pack_metrics

    block = pack_metrics([_metrics(i) for i in range(4)])
    metrics, others, problems = FrameDecoder().decode(_lines(block, _heartbeat(4)))
    assert metrics == [] and problems == []
    assert [o.__struct_config__.tag for o in others] == ["metrics_block", "heartbeat"]
    assert others[0] == block
