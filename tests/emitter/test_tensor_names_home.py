"""One rule recognises tensors (``values.is_tensor`` over ``TENSOR_MODULES``, read by
``tensor_item``): metric values and config (values.py / jsonable.py), steps and item ids
(records.py) treat the same numpy and torch values the same way."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import runlake
from runlake.emitter.testing import capture, of_kind
from runlake.schemas.errors import EventValueError

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]

# (logical value, its numpy form, its torch form)
KINDS = [
    ("int scalar", np.int64(3), torch.tensor(3)),
    ("int 0-d", np.array(3), torch.tensor(3, dtype=torch.int32)),
    ("int one element", np.array([3]), torch.tensor([3])),
    ("float scalar", np.float32(1.5), torch.tensor(1.5)),
    ("bool", np.bool_(True), torch.tensor(True)),
    ("two elements", np.array([3, 4]), torch.tensor([3, 4])),
]


def _outcome(fn):
    """What a call gave: ("ok", value) or ("refused", exception type)."""
    try:
        return "ok", fn()
    except EventValueError:
        return "refused", EventValueError


def _paths(value, tmp_path) -> dict[str, tuple]:
    """The value through every logging path of a strict run: metric, step, item ids, config."""
    out = {}
    with capture() as events:
        run = runlake.init("p", root=tmp_path, strict=True, console=False,
                           capture_logging=False, system_interval=0)
        out["metric"] = _outcome(lambda: run.log({"x": value}, step=0))
        out["step"] = _outcome(lambda: run.log({"y": 1.0}, step=value))
        out["ids"] = _outcome(lambda: run.log_data(value, step=1))
        run.finish()
    metrics = of_kind(events, "metrics")
    if out["metric"][0] == "ok":
        out["metric"] = ("ok", next(m.values["x"] for m in metrics if "x" in m.values))
    if out["step"][0] == "ok":
        out["step"] = ("ok", next(m.step for m in metrics if "y" in m.values))
    if out["ids"][0] == "ok":
        out["ids"] = ("ok", [i for d in of_kind(events, "data") for i in d.items])
    out["config"] = ("ok", runlake.emitter.jsonable.jsonable({"v": value}, strict=True))
    return out


@pytest.mark.parametrize("name, as_numpy, as_torch", KINDS, ids=[k[0] for k in KINDS])
def test_numpy_and_torch_values_are_handled_alike_on_every_path(name, as_numpy, as_torch,
                                                                 tmp_path):
    """The numpy and the torch form of one value give the same metric, step, ids and config."""
    assert _paths(as_numpy, tmp_path / "n") == _paths(as_torch, tmp_path / "t")


@pytest.mark.parametrize("value, metric, step, ids", [
    (torch.tensor([3]), 3.0, 3, ["3"]),
    (np.array([3]), 3.0, 3, ["3"]),
    (torch.tensor(True), 1.0, None, None),
    (np.float32(1.5), 1.5, None, None),
    (np.array([3, 4]), None, None, ["3", "4"]),
])
def test_what_each_path_reads_from_a_tensor(value, metric, step, ids, tmp_path):
    """A one-element integer tensor is a metric, a step and an id; a bool or float one is a
    metric only (a step and an id must be integers); a longer one is a list of ids only."""
    got = _paths(value, tmp_path)
    want = {"metric": metric, "step": step, "ids": ids}
    for path, expected in want.items():
        assert got[path] == (("refused", EventValueError) if expected is None else ("ok", expected))


def test_tensor_types_are_recognised_only_by_values_is_tensor():
    """No emitter module other than values.py tests a type's module against TENSOR_MODULES."""
    pattern = re.compile(r"TENSOR_MODULES|__module__\.partition")
    offenders = [
        f"{p.relative_to(REPO)}:{no}"
        for p in sorted((REPO / "emitter").rglob("*.py")) if p.name != "values.py"
        for no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
