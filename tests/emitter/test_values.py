"""Bad input to Run.log: clear errors in strict mode, counted drops otherwise."""

from __future__ import annotations

import pytest
import warnings

import runlake


class Weird:
    pass


BAD = [
    pytest.param("loss", "0.5", "str", id="str-value"),
    pytest.param("loss", None, "NoneType", id="none"),
    pytest.param("loss", [1.0, 2.0], "list", id="list"),
    pytest.param("loss", {"a": "x"}, "'loss/a': expected a number, got str", id="nested-dict"),
    pytest.param("loss", Weird(), "Weird", id="object"),
    pytest.param("loss", 1 + 2j, "complex", id="complex"),
    pytest.param(3, 1.0, "metric keys must be str, got int", id="int-key"),
    pytest.param(("a", "b"), 1.0, "metric keys must be str, got tuple", id="tuple-key"),
    pytest.param("k" * 10_000_000, 1.0, "1-256 characters", id="10MB-key"),
    pytest.param("", 1.0, "1-256 characters", id="empty-key"),
]


@pytest.mark.parametrize("key, value, fragment", BAD)
def test_strict_mode_raises_naming_key_and_type(rl, root, quiet, key, value, fragment):
    """strict=True: EventValueError names the key/type; the run keeps working afterwards."""
    with runlake.init("p", root=root, **quiet) as run:
        run.log({"ok": 1.0})
        with pytest.raises(runlake.EventValueError, match=fragment) as info:
            run.log({"ok": 2.0, key: value})
        assert len(str(info.value)) < 1000
        assert isinstance(info.value, TypeError)
        run.log({"ok": 3.0})
    m = rl.of_kind(rl.read_run(run.dir), "metrics")
    assert [e.values for e in m] == [{"ok": 1.0}, {"ok": 3.0}]


@pytest.mark.parametrize("key, value, fragment", BAD)
def test_non_strict_mode_drops_and_counts(rl, root, quiet, key, value, fragment):
    """strict=False: the bad entry is dropped and counted; the good keys of the call stay."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runlake.init("p", root=root, strict=False, **quiet) as run:
            run.log({"ok": 2.0, key: value})
            run.log({"ok": 3.0, key: value})
            dropped = run.dropped
    assert sum(dropped.values()) == 2
    assert len([w for w in caught if "runlake" in str(w.message)]) == 1  # once per cause
    m = rl.of_kind(rl.read_run(run.dir), "metrics")
    assert [e.values for e in m] == [{"ok": 2.0}, {"ok": 3.0}]
    assert rl.of_kind(rl.read_run(run.dir), "run_end")[0].dropped == dropped


def test_numbers_of_every_kind_are_converted(rl, root, quiet):
    """ints, bools, huge ints, unicode keys, numpy scalars and 0-dim tensors become floats."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    values = {
        "int": 3, "bool": True, "huge": 10**30, "ünï/κλειδί/🔥": 1.5,
        "np64": np.float64(0.1), "np32": np.float32(0.25), "npint": np.int64(7),
        "np0d": np.array(2.5), "t0": torch.tensor(0.75), "t1": torch.tensor([4.0]),
        "tint": torch.tensor(5),
    }
    with runlake.init("p", root=root, **quiet) as run:
        run.log(values)
        run.log(values)  # second time: keys known, still converted correctly
    for m in rl.of_kind(rl.read_run(run.dir), "metrics"):
        got = {k: float(v) for k, v in m.values.items()}
        assert got == {
            "int": 3.0, "bool": 1.0, "huge": 1e30, "ünï/κλειδί/🔥": 1.5, "np64": 0.1,
            "np32": 0.25, "npint": 7.0, "np0d": 2.5, "t0": 0.75, "t1": 4.0, "tint": 5.0,
        }


def test_multi_element_tensor_is_rejected(root, quiet):
    """A tensor with several elements is an error that says to reduce it first."""
    torch = pytest.importorskip("torch")
    with runlake.init("p", root=root, **quiet) as run:
        with pytest.raises(runlake.EventValueError, match=r"shape \(3,\)"):
            run.log({"x": torch.ones(3)})


def test_non_mapping_metrics_is_a_clear_error(root, quiet):
    """log() with a list instead of a dict says a mapping is expected."""
    with runlake.init("p", root=root, **quiet) as run:
        with pytest.raises(runlake.EventValueError, match="expected a mapping"):
            run.log([("loss", 1.0)])
        with pytest.raises(runlake.EventValueError, match="step must be an int"):
            run.log({"loss": 1.0}, step="3")


def test_steps_and_epochs_the_store_cannot_hold_are_rejected_at_the_call(rl, root, quiet):
    """A step beyond int64 or an epoch beyond int32 is an error at log(), so it never
    reaches a segment where it would cost the other steps of its flush."""
    with runlake.init("p", root=root, **quiet) as run:
        with pytest.raises(runlake.EventValueError, match="step must fit in 64 bits"):
            run.log({"loss": 1.0}, step=2**63)
        with pytest.raises(runlake.EventValueError, match="epoch must fit in 32 bits"):
            run.log({"loss": 1.0}, step=1, epoch=-(2**31) - 1)
        run.log({"loss": 2.0}, step=2**63 - 1, epoch=2**31 - 1)
    (ev,) = rl.of_kind(rl.read_run(run.dir), "metrics")
    assert (ev.step, ev.epoch, ev.values) == (2**63 - 1, 2**31 - 1, {"loss": 2.0})


def test_huge_text_is_truncated_not_rejected(rl, root, quiet):
    """A 1 MB alert message is stored truncated with a marker."""
    with runlake.init("p", root=root, **quiet) as run:
        run.alert("x" * 1_000_000)
    alert = rl.of_kind(rl.read_run(run.dir), "alert")[0]
    assert len(alert.message) < 70_000 and "truncated by runlake" in alert.message


def test_mutating_the_dict_after_log_does_not_change_the_event(rl, root, quiet):
    """log() copies the mapping: reusing the dict for the next step is safe."""
    d = {"loss": 1.0}
    with runlake.init("p", root=root, **quiet) as run:
        run.log(d)
        run.log(d)
        d["loss"] = 2.0
        run.log(d)
    assert [e.values["loss"] for e in rl.of_kind(rl.read_run(run.dir), "metrics")] == [1.0, 1.0, 2.0]
