"""A ``watch()`` without ``optimizer=`` installs global optimizer hooks: once its run has
finished they must do nothing, whatever optimizer steps next (the demo's third run once
failed with "run ... is finished" from the second run's hooks: a new optimizer reused the
freed one's id, which the ownership cache took for the old optimizer)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import runlake  # noqa: E402
from runlake.torch import watch  # noqa: E402


def _step(model, opt) -> None:
    loss = model(torch.ones(2, 3)).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_hooks_of_a_finished_run_log_nothing(tmp_path):
    model = torch.nn.Linear(3, 1)
    first = runlake.init("p", root=tmp_path, console=False, capture_logging=False, system_interval=0)
    watch(model, first, every=1, log_histograms=True)
    _step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    first.finish()
    second = runlake.init("p", root=tmp_path, console=False, capture_logging=False, system_interval=0)
    for _ in range(3):  # the same parameters, new optimizers: the old hooks see them as owned
        _step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    second.finish()
    assert second.status == "finished"
