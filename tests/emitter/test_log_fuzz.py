"""Hypothesis: log() under strict=False never raises, and valid values always land.

Each example logs a dict mixing valid numbers (keys ``v/<i>``) with arbitrary keys and
values; the same keys are logged once first, so the second call takes the fast path where
only the writer thread sees the values. The sink decodes exactly the bytes the writer would
append to a segment with runlake's own decoder.
"""

from __future__ import annotations

import decimal
import fractions
import itertools
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import runlake
from runlake.emitter.jsonable import jsonable
from runlake.schemas.codec import decode_lines, to_float
from runlake.schemas.errors import ConfigError

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")


class DecodingSink:
    """Decodes each write with runlake's decoder, as ingest would read the segment."""

    def __init__(self) -> None:
        self.events: list = []
        self.problems: list = []

    def write(self, events, data: bytes) -> None:
        decoded, problems = decode_lines(data)
        self.events += decoded
        self.problems += problems

    def close(self) -> None:
        pass


class SubFloat(float):
    pass


class Hostile:
    def __float__(self):
        raise MemoryError("no")

    def __repr__(self):
        raise RuntimeError("no repr")


_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

valid_numbers = st.one_of(
    st.floats(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.booleans(),
    st.fractions(max_denominator=10**6).filter(lambda f: abs(f) < 10**300),
    st.decimals(allow_nan=False),
    st.floats(width=32).map(np.float32),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.floats(width=32, allow_nan=False).map(SubFloat),
    st.tuples(st.floats(width=16), st.sampled_from(_DTYPES)).map(
        lambda p: torch.tensor(p[0], dtype=p[1])),
)

hostile_leaves = st.one_of(
    valid_numbers,
    st.integers(),
    st.just(10**400),
    st.just(-(10**400)),
    st.text(max_size=5),
    st.none(),
    st.binary(max_size=3),
    st.complex_numbers(),
    st.lists(st.floats(), max_size=3),
    st.decimals(),
    st.builds(object),
    st.builds(Hostile),
    st.just(torch.empty((), device="meta")),
    st.just(torch.ones(2)),
    st.just(np.complex64(1j)),
)
hostile_keys = st.one_of(
    st.text(max_size=300).map(lambda k: "n/" + k),
    st.integers(),
    st.none(),
    st.tuples(st.integers()),
    st.floats(),
)
hostile = st.recursive(hostile_leaves,
                       lambda inner: st.dictionaries(hostile_keys, inner, max_size=3),
                       max_leaves=8)


@pytest.fixture(scope="module")
def fuzz_run():
    sink = DecodingSink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = runlake.init("fuzz", sink=sink, strict=False, console=False, system_interval=0,
                           capture_logging=False, online_checks=False, flush_interval=60)
        yield run, sink, itertools.count(0, 2)
        run.finish()


def _expected(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(valid=st.lists(valid_numbers, max_size=5),
       noise=st.dictionaries(hostile_keys, hostile, max_size=5))
def test_log_never_raises_and_valid_values_land(fuzz_run, valid, noise):
    """Arbitrary keys/values: no exception, no decode problem, every valid value stored."""
    run, sink, steps = fuzz_run
    step = next(steps)
    metrics = {**{f"v/{i}": v for i, v in enumerate(valid)}, **noise}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.log(metrics, step=step)  # new keys: slow path
        run.log(metrics, step=step + 1)  # known keys: fast path when the sum is a float
    assert run.flush(10)
    assert sink.problems == []
    got = {ev.step: ev.values for ev in sink.events
           if ev.__struct_config__.tag == "metrics" and ev.step in (step, step + 1)}
    assert sorted(got) == [step, step + 1]
    for values in got.values():
        for i, v in enumerate(valid):
            want, back = _expected(v), to_float(values[f"v/{i}"])
            assert back == want or (math.isnan(want) and math.isnan(back))
        for key, v in values.items():
            assert isinstance(key, str) and (key.startswith("v/") or key.startswith("n/"))
            to_float(v)  # every stored value reads back as a float


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(
    st.one_of(hostile_leaves, st.datetimes(), st.just(fractions.Fraction(1, 3)),
              st.just(decimal.Decimal("sNaN"))),
    lambda inner: st.one_of(st.dictionaries(hostile_keys, inner, max_size=3),
                            st.lists(inner, max_size=3), st.tuples(inner)),
    max_leaves=10))
def test_config_conversion_never_raises_non_strict_and_only_config_error_strict(value):
    """jsonable: strict=False always returns JSON-encodable builtins; strict raises only ConfigError."""
    import msgspec

    msgspec.json.encode(jsonable(value, strict=False))
    try:
        msgspec.json.encode(jsonable(value, strict=True))
    except ConfigError as exc:
        assert len(str(exc)) < 800
