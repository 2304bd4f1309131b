"""runlake.emitter.testing.capture and resuming runs as new attempts."""

from __future__ import annotations

import math
import re

import pytest

import runlake
from runlake.emitter.testing import capture, of_kind


def train(steps: int) -> None:
    run = runlake.init("unit", config={"lr": 0.1}, console=False, system_interval=0)
    for i in range(steps):
        run.log({"loss": 1.0 / (i + 1)})
    run.log({"loss": math.nan})
    run.finish()


def test_capture_collects_events_in_memory(tmp_path, monkeypatch):
    """capture() yields the events of runs created inside it; nothing is written to disk."""
    monkeypatch.chdir(tmp_path)
    with capture() as events:
        train(3)
    metrics = of_kind(events, "metrics")
    assert [m.values["loss"] for m in metrics[:3]] == [1.0, 0.5, 1.0 / 3]
    assert math.isnan(metrics[3].values["loss"])
    assert [a.alert for a in of_kind(events, "alert")] == ["nonfinite"]
    assert events[0].config == {"lr": 0.1} and events[-1].status == "finished"
    assert not (tmp_path / "runlake").exists()


def test_capture_finishes_runs_left_open(tmp_path):
    """Leaving capture() finishes runs it started, so their events are in the list."""
    with capture() as events:
        run = runlake.init("unit", console=False, system_interval=0)
        run.log({"x": 1.0})
    assert of_kind(events, "run_end")[0].status == "finished"
    assert runlake.current_run() is None


def test_resume_continues_steps_as_new_attempt(rl, root, quiet):
    """resume=<id>: attempt+1, resumed_from = previous writer, steps continue, old data intact."""
    with runlake.init("p", "exp", root=root, **quiet) as first:
        for _ in range(5):
            first.log({"x": 1.0})
    before = {p: p.read_bytes() for p in rl.segment_files(first.dir)}
    with runlake.init("p", root=root, resume=first.id, **quiet) as second:
        assert (second.id, second.attempt, second.step) == (first.id, 1, 4)
        second.log({"x": 2.0})
    assert re.fullmatch(r"r0000-a001-[0-9a-f]{8}", second.writer)
    assert {p: p.read_bytes() for p in before} == before
    events = rl.read_run(second.dir)
    starts = rl.of_kind(events, "run_start")
    assert [(s.attempt, s.resumed_from, s.start_step) for s in starts] == [
        (0, None, 0), (1, first.writer, 5)]
    assert starts[1].name == "exp"
    assert [m.step for m in rl.of_kind(events, "metrics") if m.writer == second.writer] == [5]


def test_resume_keeps_config_tags_and_group_unless_given(rl, root, quiet):
    """A resumed attempt that passes no config/tags/group keeps the run's; new ones win."""
    with runlake.init("p", "exp", root=root, config={"lr": 0.1, "model": {"w": 8}},
                      tags=["base"], group="sweep", **quiet) as first:
        first.log({"x": 1.0})
    with runlake.init("p", root=root, resume=first.id, **quiet):
        pass
    with runlake.init("p", root=root, resume=first.id, config={"lr": 0.2}, tags=["retry"],
                      **quiet):
        pass
    starts = rl.of_kind(rl.read_run(first.dir), "run_start")
    assert [(s.config, s.tags, s.group) for s in starts] == [
        ({"lr": 0.1, "model": {"w": 8}}, ["base"], "sweep"),
        ({"lr": 0.1, "model": {"w": 8}}, ["base"], "sweep"),
        ({"lr": 0.2}, ["retry"], "sweep"),
    ]


def test_resume_true_finds_latest_run_by_name(rl, root, quiet):
    """resume=True with a name resumes the most recently started run of that name."""
    with runlake.init("p", "exp", root=root, **quiet) as a:
        a.log({"x": 1.0})
    with runlake.init("p", "other", root=root, **quiet):
        pass
    with runlake.init("p", "exp", root=root, **quiet) as b:
        b.log({"x": 1.0}, step=41)
    with runlake.init("p", "exp", root=root, resume=True, **quiet) as c:
        assert c.id == b.id and c.attempt == 1 and c.step == 41
    with runlake.init("p", "exp", root=root, resume=True, **quiet) as d:
        assert d.id == b.id and d.attempt == 2 and d.step == 41


def test_resume_true_without_match_starts_fresh(root, quiet):
    """resume=True and no earlier run of that name: a new run at attempt 0."""
    with runlake.init("p", "fresh", root=root, resume=True, **quiet) as run:
        assert run.attempt == 0 and run.step == -1


def test_resume_unknown_id_is_an_error(root, quiet):
    """resume='<id>' for a run that does not exist raises RunNotFoundError."""
    with pytest.raises(runlake.RunNotFoundError, match="cannot resume run 'nope'"):
        runlake.init("p", root=root, resume="nope", **quiet)


def test_resume_after_sigkill_ignores_torn_tail(rl, root, quiet):
    """After a SIGKILL and a torn frame at the end of the open segment, resume still works."""
    import signal

    proc = rl.run_script(f"""
import runlake, time
run = runlake.init("p", root={str(root)!r}, console=False, system_interval=0)
for _ in range(3):
    run.log({{"x": 1.0}})
run.flush()
print(run.id, flush=True)
time.sleep(60)
""")
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    (seg,) = rl.segment_files(root / "p" / run_id)
    assert seg.name.endswith(".open")
    with open(seg, "ab") as f:
        f.write(b"\x28\xb5\x2f\xfd\x64\x00\x00")  # frame header without its blocks
    with runlake.init("p", root=root, resume=run_id, **quiet) as again:
        assert again.step == 2 and again.attempt == 1
        again.log({"x": 2.0})
    statuses = [s.status for s in rl.read_file_events(seg)[1]]
    assert statuses[-1] == "torn" and statuses.count("frame") >= 1
