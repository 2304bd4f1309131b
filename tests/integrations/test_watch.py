"""watch(): gradient/weight/update statistics every N optimizer steps, from hooks."""

from __future__ import annotations

import math

import pytest
import torch

from runlake.emitter.testing import capture, of_kind
from runlake.schemas.errors import ConfigError
from runlake.torch import watch


def _train(model, opt, steps, run, *, log=True, on_step=None):
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    y = x.sum(1, keepdim=True)
    for i in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        if on_step:
            on_step(i)
        opt.step()
        if log:
            run.log({"loss": loss.item()}, step=i)


def _metrics(events, prefix):
    return [e for e in of_kind(events, "metrics") if any(k.startswith(prefix) for k in e.values)]


def test_statistics_match_a_manual_computation(tmp_path, make_model):
    """grad/param norms, stats and update ratios equal values computed by hand at that step."""
    import runlake

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = {}

    def snapshot(i):
        if i == 3:  # the 4th optimizer step is the first watched one with every=4
            grads = [p.grad.detach().clone() for p in model.parameters()]
            expected["before"] = [p.detach().clone() for p in model.parameters()]
            expected["grads"] = grads

    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        handle = watch(model, run, every=4)
        _train(model, opt, 5, run, on_step=snapshot)
        run.finish()
    handle.remove()
    [ev] = _metrics(events, "grad/")
    v = ev.values
    assert ev.step == 3  # the step the loop logs right after that optimizer step
    grads = expected["grads"]
    flat = torch.cat([g.flatten() for g in grads]).double()
    assert v["grad/norm"] == pytest.approx(flat.norm().item(), rel=1e-5)
    assert v["grad/mean"] == pytest.approx(flat.mean().item(), rel=1e-4, abs=1e-9)
    assert v["grad/std"] == pytest.approx(flat.std(unbiased=False).item(), rel=1e-4)
    assert v["grad/max_abs"] == pytest.approx(flat.abs().max().item(), rel=1e-6)
    names = [n for n, _ in model.named_parameters()]
    for name, g in zip(names, grads):
        assert v[f"grad/norm/{name}"] == pytest.approx(g.norm().item(), rel=1e-5)
    # plain SGD: the update of that step is lr * grad
    before = expected["before"]
    num = math.sqrt(sum(((0.05 * g) ** 2).sum().item() for g in grads))
    after = [b - 0.05 * g for b, g in zip(before, grads)]
    den = math.sqrt(sum((a ** 2).sum().item() for a in after))
    assert v["update/ratio"] == pytest.approx(num / den, rel=1e-4)
    for name, g, a in zip(names, grads, after):
        assert v[f"update/ratio/{name}"] == pytest.approx((0.05 * g).norm().item() / a.norm().item(), rel=1e-4)
    assert not any(k.startswith("cuda/") for k in v)  # CPU model: no CUDA keys


@pytest.mark.parametrize("every,steps,expected", [(1, 3, 3), (5, 12, 2), (50, 49, 0)])
def test_records_every_nth_optimizer_step(tmp_path, make_model, every, steps, expected):
    """Exactly floor(steps / every) metric events carry watch statistics."""
    import runlake

    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        handle = watch(model, run, every=every)
        _train(model, opt, steps, run)
        run.finish()
    handle.remove()
    watched = _metrics(events, "update/")
    assert len(watched) == expected
    assert [e.step for e in watched] == [every * (i + 1) - 1 for i in range(expected)]


def test_remove_stops_recording_and_other_optimizers_are_ignored(tmp_path, make_model):
    """After remove() nothing is recorded; an optimizer of another model never triggers."""
    import runlake

    model, other = make_model(0), make_model(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.01)
    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        handle = watch(model, run, every=1)
        _train(other, other_opt, 3, run, log=False)
        assert handle.steps == 0
        _train(model, opt, 2, run, log=False)
        handle.remove()
        _train(model, opt, 2, run, log=False)
        run.finish()
    assert len(_metrics(events, "grad/")) == 2


def test_does_not_move_the_runs_automatic_step(tmp_path, make_model):
    """Users logging without step= keep consecutive steps while watch() records."""
    import runlake

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        handle = watch(model, run, every=2, optimizer=opt)
        x = torch.randn(4, 8)
        for _ in range(6):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
            run.log({"loss": 1.0})
        run.finish()
    handle.remove()
    losses = [e.step for e in of_kind(events, "metrics") if "loss" in e.values]
    assert losses == [0, 1, 2, 3, 4, 5]
    assert [e.step for e in _metrics(events, "grad/")] == [1, 3, 5]


def test_histograms_add_per_tensor_quantiles(tmp_path, make_model):
    """log_histograms=True adds per-tensor mean/std/max_abs/p01/p50/p99 for params and grads."""
    import runlake

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        with watch(model, run, every=1, log_histograms=True):
            _train(model, opt, 1, run, log=False)
        run.finish()
    [ev] = _metrics(events, "grad/")
    w = model[0].weight.detach().flatten()
    # the snapshot is after the step: the model's current weights
    assert ev.values["param/p50/0.weight"] == pytest.approx(torch.quantile(w, 0.5).item(), rel=1e-5)
    for stat in ("mean", "std", "max_abs", "p01", "p50", "p99"):
        assert f"grad/{stat}/2.bias" in ev.values and f"param/{stat}/0.weight" in ev.values


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "10"])
def test_bad_interval_is_refused(make_model, every):
    """every must be a positive int: a clear ConfigError otherwise."""
    with pytest.raises(ConfigError, match="positive integer"):
        watch(make_model(), object(), every=every)
