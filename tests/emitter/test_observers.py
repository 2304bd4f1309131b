"""Logging bridge, online checks, heartbeat, system sampler and the console block."""

from __future__ import annotations

import io
import logging
import time
import warnings

import pytest

import runlake
from runlake.emitter.console import Progress, console_interval, format_duration
from runlake.emitter.system import SystemSampler


def test_logging_records_become_log_events_while_live(rl, root):
    """Records of any logger reach the run as log events; the handler leaves at finish."""
    log = logging.getLogger("trainer.test")
    log.setLevel(logging.INFO)
    before = list(logging.getLogger().handlers)
    run = runlake.init("p", root=root, console=False, system_interval=0)
    run.log({"x": 1.0}, step=4)
    log.info("epoch %d done", 1)
    try:
        raise ValueError("bad batch")
    except ValueError:
        log.exception("step failed")
    log.warning("x" * 200_000)
    run.finish()
    log.warning("after finish")
    assert logging.getLogger().handlers == before
    logs = rl.of_kind(rl.read_run(run.dir), "log")
    assert [(e.level, e.logger, e.step) for e in logs[:2]] == [
        ("INFO", "trainer.test", 4), ("ERROR", "trainer.test", 4)]
    assert logs[0].message == "epoch 1 done" and logs[0].levelno == logging.INFO
    assert "ValueError: bad batch" in logs[1].message and "Traceback" in logs[1].message
    assert "truncated by runlake" in logs[2].message
    assert len(logs) == 3


def test_each_log_line_goes_to_the_current_run_only(rl, root):
    """With two runs open, a record lands in the newest live run only, never in both."""
    log = logging.getLogger("trainer.two")
    log.setLevel(logging.INFO)
    old = runlake.init("p", "old", root=root, console=False, system_interval=0)
    log.info("to old")
    new = runlake.init("p", "new", root=root, console=False, system_interval=0)
    log.info("to new")
    new.finish()
    log.info("to old again")
    old.finish()
    messages = {r.name: [e.message for e in rl.of_kind(rl.read_run(r.dir), "log")]
                for r in (old, new)}
    assert messages == {"old": ["to old", "to old again"], "new": ["to new"]}


def test_capture_logging_false_installs_nothing(rl, root, quiet):
    """capture_logging=False leaves the root logger untouched."""
    before = list(logging.getLogger().handlers)
    with runlake.init("p", root=root, **quiet):
        assert logging.getLogger().handlers == before


def test_nonfinite_alert_once_per_key(rl, root, quiet):
    """NaN in a key gives one critical alert and one warning per key, however often it recurs."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runlake.init("p", root=root, **quiet) as run:
            run.log({"loss": 1.0, "gn": 1.0})
            run.log({"loss": float("nan"), "gn": float("inf")})
            run.flush()
            run.log({"loss": float("nan"), "gn": 1.0})
    alerts = rl.of_kind(rl.read_run(run.dir), "alert")
    assert sorted((a.alert, a.key, a.severity, a.step, a.source) for a in alerts) == [
        ("nonfinite", "gn", "critical", 1, "online"), ("nonfinite", "loss", "critical", 1, "online")]
    assert all(a.suggestion for a in alerts)
    assert len([w for w in caught if "runlake" in str(w.message)]) == 2


def test_exploding_loss_alert(rl, root, quiet):
    """A loss jumping past 10x its median over previous flushes raises one alert."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with runlake.init("p", root=root, flush_interval=60, **quiet) as run:
            for v in (1.0, 0.9, 1.1, 0.95):
                run.log({"train/loss": v, "acc": 1000.0 * v})
                run.flush()
            run.log({"train/loss": 50.0, "acc": 1e9})
            run.flush()
            run.log({"train/loss": 60.0})
            run.flush()
    alerts = rl.of_kind(rl.read_run(run.dir), "alert")
    assert [(a.alert, a.key, a.value, a.step) for a in alerts] == [
        ("exploding", "train/loss", 50.0, 4)]


def test_online_checks_off(rl, root, quiet):
    """online_checks=False writes no alerts even for NaN."""
    with runlake.init("p", root=root, online_checks=False, **quiet) as run:
        run.log({"loss": float("nan")})
    assert rl.of_kind(rl.read_run(run.dir), "alert") == []


def test_heartbeat_reports_progress_and_eta(rl, root, quiet):
    """Heartbeats carry step, total steps, steps/s and an ETA."""
    with runlake.init("p", root=root, heartbeat_interval=0.1, total_steps=1000, **quiet) as run:
        for i in range(5):
            run.log({"x": 1.0})
            time.sleep(0.1)
    beats = rl.of_kind(rl.read_run(run.dir), "heartbeat")
    assert len(beats) >= 2
    moving = [b for b in beats if b.steps_per_s]
    assert moving and moving[-1].total_steps == 1000 and moving[-1].eta_s > 0
    assert all(b.interval_s == 0.1 for b in beats)


def test_system_events_sampled_on_the_writer_schedule(rl, root):
    """system_interval gives system events with sys/ keys."""
    with runlake.init("p", root=root, console=False, capture_logging=False,
                      system_interval=0.05) as run:
        time.sleep(0.3)
    systems = rl.of_kind(rl.read_run(run.dir), "system")
    assert systems
    assert {"sys/cpu_pct", "sys/rss_bytes", "sys/ram_used_pct"} <= set(systems[-1].values)
    assert systems[-1].values["sys/rss_bytes"] > 1e6


def test_system_sampler_without_psutil_reads_proc():
    """The /proc fallback yields the same keys."""
    sampler = SystemSampler()
    sampler._proc = None
    time.sleep(0.01)
    values = sampler.sample()
    assert {"sys/cpu_pct", "sys/rss_bytes", "sys/ram_used_pct"} <= set(values)


def test_console_block_contents():
    """The block shows time with ms, step/total, epoch, items, losses, memory, speed, ETA."""
    snap = {"run_id": "r1", "step": 120, "epoch": 2, "total_steps": 1000, "items": 3840,
            "augmented": 1280, "losses": {"train/loss": 0.4312}, "steps_per_s": 12.5,
            "eta_s": 70.4, "system": {"sys/rss_bytes": 3 * 2**30, "sys/gpu0/mem_allocated": 2**30},
            "dropped": {}}
    text = Progress(lambda: snap).render(now_wall=1_700_000_000.123)
    assert "step 120/1000 epoch 2" in text and ".123]" in text
    assert "3,840 items (1,280 augmented)" in text and "train/loss=0.4312" in text
    assert "rss 3.0 GiB" in text and "gpu0 1.0 GiB alloc" in text
    assert "12.5 steps/s, ETA 1m10s" in text


def test_console_printed_to_stderr_at_interval(root, capsys):
    """console=<seconds> prints the block to stderr while the run is live."""
    with runlake.init("p", root=root, console=0.05, system_interval=0, capture_logging=False,
                      total_steps=10) as run:
        run.log({"loss": 1.0})
        run.log_data(["a", "b"], augment={"flip": True})
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert f"run {run.id} step 0/10" in err and "2 items (2 augmented)" in err


@pytest.mark.parametrize("option, tty, expected", [
    (None, True, 30.0), (None, False, None), (False, True, None), (5, False, 5.0),
    (True, False, 30.0)])
def test_console_interval_option(option, tty, expected):
    """console=None follows isatty; numbers are intervals; False is off."""
    class Stream(io.StringIO):
        def isatty(self):
            return tty

    assert console_interval(option, Stream()) == expected


def test_format_duration():
    """Durations print compactly."""
    assert [format_duration(s) for s in (42, 709, 10920)] == ["42s", "11m49s", "3h02m"]
