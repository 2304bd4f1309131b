"""Throughput: step time and samples/tokens per second per window of steps."""

from __future__ import annotations

import time

import pytest

from runlake.emitter.testing import capture, of_kind
from runlake.schemas.errors import ConfigError
from runlake.torch import Throughput


def test_windows_report_step_time_and_rates(tmp_path):
    """Every `every` steps one event with step_ms ~ the block time, rates over wall time."""
    import runlake

    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        tp = Throughput(run, every=4)
        for step in range(8):
            time.sleep(0.005)  # "data loading", outside the block
            with tp.step(samples=32, tokens=32 * 128):
                time.sleep(0.02)
            run.log({"loss": 1.0}, step=step)
        run.finish()
    perf = [e for e in of_kind(events, "metrics") if "perf/step_ms" in e.values]
    assert [e.step for e in perf] == [3, 7]
    for e in perf:
        v = e.values
        assert 19 <= v["perf/step_ms"] < 60
        assert v["perf/iter_ms"] >= v["perf/step_ms"]
        assert v["perf/tokens_per_s"] == pytest.approx(v["perf/samples_per_s"] * 128)
        assert v["perf/samples_per_s"] == pytest.approx(32 / (v["perf/iter_ms"] / 1e3), rel=0.35)
    losses = [e.step for e in of_kind(events, "metrics") if "loss" in e.values]
    assert losses == list(range(8))


def test_without_counts_only_times_are_logged(tmp_path):
    """A bare `with tp:` records step and iteration times, no rates."""
    import runlake

    with capture() as events:
        run = runlake.init("t", root=tmp_path, console=False, system_interval=0)
        tp = Throughput(run, every=2)
        for _ in range(2):
            with tp:
                pass
        run.finish()
    [e] = [e for e in of_kind(events, "metrics") if "perf/step_ms" in e.values]
    assert set(e.values) == {"perf/step_ms", "perf/iter_ms"}
    assert run.step == -1  # logging throughput did not consume a step


@pytest.mark.parametrize("every", [0, 2.5, None])
def test_bad_every(every):
    """every must be a positive int."""
    with pytest.raises(ConfigError):
        Throughput(object(), every=every)
