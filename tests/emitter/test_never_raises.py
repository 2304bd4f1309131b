"""strict=False never raises into training; strict=True raises only clear runlake errors.

Values of every odd kind (huge ints, meta/sparse tensors, bfloat16, Fraction, Decimal, float
subclasses, numpy scalars) are either converted or dropped alone - never the whole event -
on both the slow path (new keys) and the fast path (keys seen before, where only the writer
thread looks at the value).
"""

from __future__ import annotations

import decimal
import enum
import fractions
import math
import re
import warnings

import msgspec
import pytest

import runlake
from runlake.schemas.codec import to_float

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")


class SubFloat(float):
    pass


class SubInt(int):
    pass


class Level(enum.IntEnum):
    HIGH = 3


class BadFloat:
    """A number-like object whose conversion itself fails."""

    def __float__(self):
        raise ZeroDivisionError("broken __float__")

    def __str__(self):
        raise RuntimeError("broken __str__")

    __repr__ = __str__


# (id, value factory, expected float or None when the value must be dropped)
ODD = [
    ("huge-int", lambda: 10**400, None),
    ("huge-neg-int", lambda: -(10**400), None),
    ("big-int", lambda: 10**300, 1e300),
    ("meta-tensor", lambda: torch.empty((), device="meta"), None),
    ("meta-1elem", lambda: torch.empty(1, device="meta"), None),
    ("sparse-1elem", lambda: torch.tensor([2.0]).to_sparse(), 2.0),
    ("bfloat16", lambda: torch.tensor(1.5, dtype=torch.bfloat16), 1.5),
    ("float16-tensor", lambda: torch.tensor([0.25], dtype=torch.float16), 0.25),
    ("bool-tensor", lambda: torch.tensor(True), 1.0),
    ("int-tensor", lambda: torch.tensor(7), 7.0),
    ("complex-tensor", lambda: torch.tensor(1 + 2j), None),
    ("multi-tensor", lambda: torch.ones(3), None),
    ("fraction", lambda: fractions.Fraction(1, 4), 0.25),
    ("huge-fraction", lambda: fractions.Fraction(10**400, 3), None),
    ("decimal", lambda: decimal.Decimal("1.5"), 1.5),
    ("decimal-snan", lambda: decimal.Decimal("sNaN"), None),
    ("float-subclass", lambda: SubFloat(2.5), 2.5),
    ("int-subclass", lambda: SubInt(4), 4.0),
    ("intenum", lambda: Level.HIGH, 3.0),
    ("bool", lambda: True, 1.0),
    ("np-float16", lambda: np.float16(0.5), 0.5),
    ("np-bool", lambda: np.bool_(True), 1.0),
    ("np-complex", lambda: np.complex64(1 + 1j), None),
    ("np-0d", lambda: np.array(3.5), 3.5),
    ("np-1elem", lambda: np.array([4.5]), 4.5),
    ("broken-float", lambda: BadFloat(), None),
    ("nan", lambda: math.nan, math.nan),
    ("inf", lambda: -math.inf, -math.inf),
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _quiet(**kw):
    return dict(console=False, system_interval=0, capture_logging=False, **kw)


@pytest.mark.parametrize("make, expected", [pytest.param(m, e, id=i) for i, m, e in ODD])
def test_odd_values_never_cost_the_rest_of_the_event(rl, root, make, expected):
    """strict=False: on both paths the odd value is converted or dropped alone; y stays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with runlake.init("p", root=root, strict=False, **_quiet()) as run:
            run.log({"x": make(), "y": 1.0})  # slow path: x is a new key
            run.log({"x": 0.0, "y": 2.0})
            run.log({"x": make(), "y": 3.0})  # fast path: x and y are known
            dropped = run.dropped
    metrics = rl.of_kind(rl.read_run(run.dir), "metrics")
    assert [(m.step, to_float(m.values["y"])) for m in metrics] == [(0, 1.0), (1, 2.0), (2, 3.0)]
    for m in (metrics[0], metrics[2]):
        if expected is None:
            assert "x" not in m.values
        else:
            assert _same(to_float(m.values["x"]), expected)
    assert sum(dropped.values()) == (0 if expected is not None else 2)


@pytest.mark.parametrize("make, expected", [pytest.param(m, e, id=i) for i, m, e in ODD])
def test_strict_mode_converts_or_names_the_key_and_type(root, make, expected):
    """strict=True: a value is converted, or EventValueError names the key; nothing else."""
    with runlake.init("p", root=root, **_quiet()) as run:
        run.log({"loss": 0.0})
        if expected is not None:
            run.log({"loss": make()})
            return
        with pytest.raises(runlake.EventValueError) as info:
            run.log({"loss": make()})
        assert "'loss'" in str(info.value) and len(str(info.value)) < 600
        run.log({"loss": 1.0})  # the run goes on


def _nested(depth: int) -> dict:
    d = cur = {}
    for _ in range(depth):
        cur["a"] = {}
        cur = cur["a"]
    return d


def _circular() -> dict:
    d: dict = {"lr": 0.1}
    d["self"] = d
    return d


CONFIGS = [
    pytest.param({(1, 2): "b", "lr": 0.1}, "config key (1, 2) at config: keys must be str, "
                 "got tuple", id="tuple-key"),
    pytest.param({"deep": _nested(3000), "lr": 0.1}, "nested more than 64 levels deep at "
                 "config.deep.a.a", id="3000-deep"),
    pytest.param(_circular(), "config at config.self contains itself", id="circular"),
    pytest.param({"opt": {"betas": [0.9, object()]}, "lr": 0.1}, "config value at "
                 "config.opt.betas[1] of type object is not JSON-able", id="object-in-list"),
    pytest.param({"t": torch.empty(2, device="meta"), "lr": 0.1}, "config value at config.t of "
                 "type torch.Tensor is not JSON-able", id="meta-tensor"),
]


@pytest.mark.parametrize("config, message", CONFIGS)
def test_bad_config_is_a_clear_error_or_a_warned_repair(rl, root, config, message):
    """strict: ConfigError naming the path; strict=False: a warning, the rest of the config kept."""
    with pytest.raises(runlake.ConfigError, match=re.escape(message)):
        runlake.init("p", root=root, config=config, **_quiet())
    with pytest.warns(runlake.RunlakeWarning, match=re.escape(message)) as caught:
        with runlake.init("p", root=root, config=config, strict=False, **_quiet()) as run:
            pass
    assert caught[0].filename == __file__  # the warning points at the user's init() line
    (start,) = rl.of_kind(rl.read_run(run.dir), "run_start")
    assert start.config["lr"] == 0.1
    msgspec.json.encode(start.config)


def test_non_mapping_config_says_what_it_got(root):
    """config=5 names int (not "<class 'dict'>"); strict=False stores it under 'value'."""
    with pytest.raises(runlake.ConfigError, match="config must be a mapping .* got int"):
        runlake.init("p", root=root, config=5, **_quiet())


CALLS = [
    pytest.param(lambda r: r.log_data(object()), id="data-not-iterable"),
    pytest.param(lambda r: r.log_data([torch.empty((), device="meta")]), id="data-meta-id"),
    pytest.param(lambda r: r.log_data([1, 2], augment=[{}], load_ms="x"), id="data-lengths"),
    pytest.param(lambda r: r.log_data([1], augment={"c": _circular()}), id="data-circular"),
    pytest.param(lambda r: r.log_data([1], step=2**70), id="data-step"),
    pytest.param(lambda r: r.log_checkpoint(123), id="ckpt-uri"),
    pytest.param(lambda r: r.log_checkpoint("x.pt", bytes="big", step="s"), id="ckpt-bytes"),
    pytest.param(lambda r: r.log_checkpoint("x.pt", metrics={"a": 10**400}), id="ckpt-metric"),
    pytest.param(lambda r: r.log_sample(BadFloat(), scores=[1]), id="sample-scores"),
    pytest.param(lambda r: r.log_sample("s", scores={"q": 1.0}, meta=_nested(500)), id="sample-meta"),
    pytest.param(lambda r: r.alert("m", severity="loud", value="v", step=1.5), id="alert"),
    pytest.param(lambda r: r.alert(BadFloat(), value=torch.empty((), device="meta")), id="alert-meta"),
    pytest.param(lambda r: r.log_dataset("d", items=object(), meta=5), id="dataset"),
    pytest.param(lambda r: r.log({"x": 1.0}, step="3", epoch=2**40), id="log-step-epoch"),
    pytest.param(lambda r: r.log([("x", 1.0)]), id="log-list"),
    pytest.param(lambda r: r.log({"x": 1.0, "deep": _nested(3000)}), id="log-3000-deep"),
    pytest.param(lambda r: r.log({"x": 1.0, "c": _circular()}), id="log-circular"),
]


@pytest.mark.parametrize("call", CALLS)
def test_every_logging_call_survives_bad_arguments(rl, root, call):
    """strict=False: no raise, a counted drop; strict=True: only an EventValueError/ConfigError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with runlake.init("p", root=root, strict=False, **_quiet()) as run:
            call(run)
            run.log({"after": 1.0})
            assert sum(run.dropped.values()) >= 1
    assert rl.of_kind(rl.read_run(run.dir), "metrics")[-1].values == {"after": 1.0}
    with runlake.init("p", root=root, **_quiet()) as run:
        with pytest.raises((runlake.EventValueError, runlake.ConfigError)) as info:
            call(run)
        assert len(str(info.value)) < 600


def test_nested_dicts_flatten_to_slash_keys(rl, root):
    """W&B-style {"train": {"loss": 1}} is stored as train/loss; each call stays one event."""
    with runlake.init("p", root=root, **_quiet()) as run:
        run.log({"train": {"loss": 1, "acc": {"top1": 0.5}}, "lr": 0.1})
        run.log({"train": {"loss": 2}})
        with pytest.raises(runlake.EventValueError, match="'train/loss' given twice"):
            run.log({"train/loss": 3.0, "train": {"loss": 4.0}})
    values = [m.values for m in rl.of_kind(rl.read_run(run.dir), "metrics")]
    assert values == [{"train/loss": 1.0, "train/acc/top1": 0.5, "lr": 0.1}, {"train/loss": 2.0}]


def test_jsonable_repairs_anything_without_raising():
    """Non-strict conversion of hostile values yields JSON; the walk does not recurse unbounded."""
    from runlake.emitter.jsonable import jsonable

    fixes = []
    hostile = {"deep": _nested(5000), "c": _circular(), (1,): BadFloat(), "ok": [1, {"x": math.inf}]}
    out = jsonable(hostile, strict=False, on_fix=lambda cause, m: fixes.append(cause))
    msgspec.json.encode(out)
    assert out["ok"] == [1, {"x": "inf"}]
    assert sorted(fixes) == ["bad_key", "circular", "not_jsonable", "too_deep"]
