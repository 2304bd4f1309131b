"""The event contract: JSON Schema snapshot, round trips of every kind, versions, bad lines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlake.schemas import (
    CURRENT_VERSIONS,
    ENCODER,
    EVENT_TYPES,
    KINDS,
    UPCASTERS,
    Metrics,
    decode_lines,
    encode_nonfinite,
    json_schema,
    to_float,
)

SNAPSHOT = Path(__file__).with_name("event-schema.snapshot.json")

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _strategy(t: mi.Type) -> st.SearchStrategy:
    """A hypothesis strategy for a msgspec type (finite floats; tokens tested separately)."""
    if isinstance(t, mi.IntType):
        return st.integers(-(2**63) if t.ge is None else t.ge, 2**63 - 1 if t.le is None else t.le)
    if isinstance(t, mi.FloatType):
        return st.floats(t.ge, t.le, allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.StrType):
        return st.text(max_size=30)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.AnyType):
        return _json
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.ListType):
        return st.lists(_strategy(t.item_type), max_size=5)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_strategy(t.key_type), _strategy(t.value_type), max_size=5)
    if isinstance(t, mi.UnionType):
        return st.one_of([_strategy(u) for u in t.types])
    if isinstance(t, mi.StructType):
        return st.builds(t.cls, **{f.name: _strategy(f.type) for f in t.fields})
    raise AssertionError(f"no strategy for {t}")


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__struct_config__.tag)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_kind_round_trips_through_a_segment_line(cls, data):
    """Any valid event of every kind encodes to one line and decodes back equal."""
    info = mi.type_info(cls)
    fields = {f.name: _strategy(f.type) for f in info.fields}
    fields["v"] = st.just(CURRENT_VERSIONS[cls.__struct_config__.tag])
    event = data.draw(st.builds(cls, **fields))
    line = ENCODER.encode_lines([event])
    assert line.count(b"\n") == 1
    events, problems = decode_lines(line + line)
    assert problems == []
    assert events == [event, event]


def test_json_schema_matches_snapshot():
    """`runlake schema` output changes only on purpose: update the snapshot with the change."""
    current = json.loads(json.dumps(json_schema(), sort_keys=True))
    if not SNAPSHOT.exists():  # first run writes it; the committed file pins it afterwards
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "event schema changed: if intended (additive only!), delete "
        f"{SNAPSHOT.name} and re-run to refresh it"
    )


def test_schema_lists_every_kind_and_version():
    """The exported schema names every kind and the version written today."""
    schema = json_schema()
    assert schema["x-runlake-versions"] == CURRENT_VERSIONS
    assert {d.get("properties", {}).get("kind", {}).get("enum", [None])[0] for d in schema["$defs"].values()} >= set(KINDS)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308])
def test_nonfinite_and_extreme_floats_survive_bit_exact(value):
    """NaN and ±Inf become tokens on disk and come back as the same float, bit for bit."""
    ev = Metrics(v=1, run_id="r", writer="w", seq=0, ts=1, rank=0, step=0, values=encode_nonfinite({"k": value}))
    (back,), problems = decode_lines(ENCODER.encode_lines([ev]))
    assert problems == []
    out = to_float(back.values["k"])
    assert (math.isnan(out) and math.isnan(value)) or (out == value and math.copysign(1, out) == math.copysign(1, value))


def test_bool_and_null_values_read_as_numbers():
    """A bool logged as a metric reads as 1.0/0.0 and a bare null as NaN."""
    assert to_float(True) == 1.0 and to_float(False) == 0.0
    assert math.isnan(to_float(None))
    with pytest.raises(ValueError, match="expected a number"):
        to_float("fast")


def _line(**fields) -> bytes:
    base = {"kind": "metrics", "v": 1, "run_id": "r", "writer": "w", "seq": 0, "ts": 1, "rank": 0, "step": 1, "values": {"a": 1.0}}
    base.update(fields)
    return json.dumps(base).encode() + b"\n"


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"not json at all\n", "malformed"),
        (_line(kind="telemetry"), "unknown event kind 'telemetry'"),
        (_line(v=7), "schema version 7, newer than this runlake reads"),
        (_line(step="three"), "Expected `int`"),
        (_line(step=2**64), "Expected `int` <= 9223372036854775807 - at `$.step`"),
        (_line(rank=2**31), "Expected `int` <= 2147483647 - at `$.rank`"),
        (_line(ts=1e300), "Expected `float` <= 100000000000.0 - at `$.ts`"),
        (_line(v=None), "no integer version"),
        (b'{"kind": "metrics", "v": 1}\n', "missing required field"),
    ],
)
def test_bad_lines_are_reported_and_the_rest_kept(bad, reason):
    """One bad line is reported with its line number; the good lines around it still decode."""
    good = _line(seq=1)
    events, problems = decode_lines(good + bad + _line(seq=2))
    assert [e.seq for e in events] == [1, 2]
    assert len(problems) == 1 and problems[0].line_no == 2  # 1-based
    assert reason in problems[0].reason


def test_older_versions_are_upcast(monkeypatch):
    """An event written at an older version is upcast through the registered chain."""
    monkeypatch.setitem(CURRENT_VERSIONS, "log", 2)
    monkeypatch.setitem(UPCASTERS, ("log", 1), lambda raw: {**raw, "message": raw["message"].upper()})
    line = json.dumps({"kind": "log", "v": 1, "run_id": "r", "writer": "w", "seq": 0, "ts": 1, "rank": 0, "level": "INFO", "message": "hi"}).encode()
    (ev,), problems = decode_lines(line + b"\n")
    assert problems == [] and ev.v == 2 and ev.message == "HI"


def test_missing_upcaster_is_a_clear_problem(monkeypatch):
    """A version with no upcaster path is reported, not crashed on."""
    monkeypatch.setitem(CURRENT_VERSIONS, "log", 3)
    line = json.dumps({"kind": "log", "v": 1, "run_id": "r", "writer": "w", "seq": 0, "ts": 1, "rank": 0, "level": "INFO", "message": "hi"}).encode()
    events, problems = decode_lines(line + b"\n")
    assert events == [] and "no upcaster registered for log v1" in problems[0].reason


def test_unknown_fields_from_newer_writers_are_ignored():
    """Additive fields written by a newer emitter at the same version do not break reading."""
    (ev,), problems = decode_lines(_line(future_field={"x": 1}))
    assert problems == [] and ev.values == {"a": 1.0}
