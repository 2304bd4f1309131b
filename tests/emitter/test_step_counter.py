"""log() without a step continues from the highest step seen, never onto existing data.

Out-of-order points (``step=1`` after step 10) are kept where they were put; the next
automatic step is 11, in the same process, after a resume, and ``runlake runs`` shows the
highest step, not the last one logged.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

import runlake
from runlake.emitter.testing import capture, of_kind


def _quiet(**kw):
    return dict(console=False, system_interval=0, capture_logging=False, **kw)


def test_auto_step_after_an_out_of_order_point_is_past_the_highest(root):
    """step=1 after step 10, then log(): lands at 11 (was 2, on top of existing data)."""
    with capture() as events:
        run = runlake.init("p", root=root, **_quiet())
        for _ in range(11):
            run.log({"loss": 1.0})
        run.log({"late": 0.5}, step=1)
        run.log({"loss": 0.9})
        assert run.step == 11
        run.log_data(["a"])  # data defaults to the step the next log() records
        run.finish()
    steps = [(e.step, sorted(e.values)) for e in of_kind(events, "metrics")]
    assert steps[-2:] == [(1, ["late"]), (11, ["loss"])]
    assert len({s for s, keys in steps if keys == ["loss"]}) == 12  # no step holds two losses
    assert of_kind(events, "data")[0].step == 12
    assert of_kind(events, "run_end")[0].step == 11


def test_resume_continues_from_the_highest_step_not_the_last(root):
    """A resumed attempt starts one past the highest step of the previous attempt."""
    with runlake.init("p", root=root, **_quiet()) as first:
        for _ in range(11):
            first.log({"loss": 1.0})
        first.log({"loss": 5.0}, step=1)
    with runlake.init("p", root=root, run_id=first.id, resume=True, **_quiet()) as again:
        assert again.attempt == 1 and again.start_step == 11
        again.log({"loss": 0.5})
        assert again.step == 11


def _runs_json(root) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "runlake.cli", "runs", "--root", str(root),
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_runs_shows_the_highest_step_of_a_killed_run(rl, root):
    """A writer SIGKILLed right after an out-of-order point: `runlake runs` shows step 10."""
    proc = rl.run_script(f"""
import runlake, time
run = runlake.init("p", root={str(root)!r}, console=False, system_interval=0,
                   heartbeat_interval=3600, flush_interval=3600)
for step in range(11):
    run.log({{"loss": 1.0}}, step=step)
run.log({{"loss": 2.0}}, step=1)
run.flush()  # one frame: steps 0..10 then 1; no heartbeat or run_end carries the step
print(run.id, flush=True)
time.sleep(60)
""")
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    from runlake.ingest import ingest

    ingest(root)
    (row,) = [r for r in _runs_json(root) if r["run_id"] == run_id]
    assert row["last_step"] == 10


def test_no_automatic_step_beyond_int64(root):
    """After step 2**63 - 1, log() without a step is refused (strict) or kept at the maximum
    (strict=False): never a step the store cannot hold, which would cost its whole flush."""
    top = 2**63 - 1
    with runlake.init("p", root=root, **_quiet()) as run:
        run.log({"x": 1.0}, step=top)
        with pytest.raises(runlake.EventValueError, match="step must fit in 64 bits"):
            run.log({"x": 2.0})
    with capture() as events:
        with pytest.warns(runlake.RunlakeWarning, match="logged at step 9223372036854775807"):
            with runlake.init("p", root=root, strict=False, **_quiet()) as run:
                run.log({"x": 1.0}, step=top)
                run.log({"x": 2.0})
                run.log({"x": 3.0})
    assert [e.step for e in of_kind(events, "metrics")] == [top, top, top]
    with runlake.init("p", root=root, **_quiet()) as first:
        first.log({"x": 1.0}, step=top - 1)
        first.log({"x": 1.0})
    with runlake.init("p", root=root, run_id=first.id, resume=True, strict=False,
                      **_quiet()) as again:
        assert again.start_step == top  # resume clamps too
