"""run_end on every way a process can end, and what survives SIGKILL."""

from __future__ import annotations

import signal
import time

import pytest

PRELUDE = """
import os, sys, time
import runlake
run = runlake.init("p", root=sys.argv[1] if len(sys.argv) > 1 else os.environ["ROOT"],
                   console=False, system_interval=0, flush_interval=0.05, capture_console=False)
print(run.dir, flush=True)
"""


def _run_dir(proc) -> str:
    return proc.stdout.readline().strip()


def test_sigkill_keeps_everything_flushed(rl, tmp_path):
    """A SIGKILLed writer loses at most the unflushed tail; flushed events all read back."""
    proc = rl.run_script(PRELUDE + """
step = 0
while True:
    for _ in range(200):
        run.log({"x": float(step)}); step += 1
    run.flush()
    print(step - 1, flush=True)
""", env={"ROOT": str(tmp_path)})
    run_dir = _run_dir(proc)
    last = -1
    for _ in range(8):
        last = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    from pathlib import Path

    events = rl.read_run(Path(run_dir))
    steps = [e.step for e in rl.of_kind(events, "metrics")]
    assert steps[: last + 1] == list(range(last + 1))
    assert steps == list(range(len(steps)))
    assert not rl.of_kind(events, "run_end")


def test_sigterm_writes_run_end_killed(rl, tmp_path):
    """SIGTERM ends the run with status killed, then the process dies of SIGTERM."""
    proc = rl.run_script(PRELUDE + """
run.log({"x": 1.0}); run.flush()
print("ready", flush=True)
time.sleep(30)
""", env={"ROOT": str(tmp_path)})
    run_dir = _run_dir(proc)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM
    from pathlib import Path

    end = rl.of_kind(rl.read_run(Path(run_dir)), "run_end")
    assert len(end) == 1 and end[0].status == "killed" and end[0].exit_reason == "SIGTERM"


def test_sigterm_chains_to_previous_handler(rl, tmp_path):
    """A handler installed before init() still runs after runlake wrote run_end."""
    proc = rl.run_script("""
import signal, sys, os
signal.signal(signal.SIGTERM, lambda s, f: (print("user handler", flush=True), sys.exit(3)))
""" + PRELUDE + """
print("ready", flush=True)
time.sleep(30)
""", env={"ROOT": str(tmp_path)})
    run_dir = _run_dir(proc)
    proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 3
    assert "user handler" in proc.stdout.read()
    from pathlib import Path

    assert rl.of_kind(rl.read_run(Path(run_dir)), "run_end")[0].status == "killed"


def test_uncaught_exception_writes_run_end_failed_with_traceback(rl, tmp_path):
    """An uncaught exception ends the run as failed with the traceback; stderr still shows it."""
    proc = rl.run_script(PRELUDE + """
run.log({"x": 1.0})
def train():
    raise ValueError("boom at step 1")
train()
""", env={"ROOT": str(tmp_path)})
    run_dir = _run_dir(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "boom at step 1" in err
    from pathlib import Path

    end = rl.of_kind(rl.read_run(Path(run_dir)), "run_end")[0]
    assert end.status == "failed" and "ValueError: boom" in end.exit_reason
    assert "def train" not in end.traceback and "in train" in end.traceback
    assert end.step == 0


def test_interpreter_exit_finishes_live_run(rl, tmp_path):
    """A script that never calls finish() still ends with run_end finished (atexit)."""
    proc = rl.run_script(PRELUDE + "run.log({'x': 1.0})\n", env={"ROOT": str(tmp_path)})
    run_dir = _run_dir(proc)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    from pathlib import Path

    events = rl.read_run(Path(run_dir))
    assert rl.kinds(events) == ["run_start", "metrics", "run_end"]
    assert events[-1].status == "finished"


@pytest.mark.parametrize("exc, status", [(RuntimeError, "failed"), (KeyboardInterrupt, "killed")])
def test_context_manager_exception(rl, root, exc, status):
    """Leaving the with-block by an exception ends the run with the matching status."""
    import runlake

    with pytest.raises(exc):
        with runlake.init("p", root=root, console=False, system_interval=0) as run:
            raise exc("stop")
    end = rl.of_kind(rl.read_run(run.dir), "run_end")[0]
    assert end.status == status and "stop" in end.traceback
    assert runlake.current_run() is not run


def test_forked_child_never_writes_to_parent_segments(rl, root):
    """A fork (DataLoader worker) that logs and exits leaves the parent's run intact."""
    import os
    import warnings

    import runlake

    run = runlake.init("p", root=root, console=False, system_interval=0)
    run.log({"x": 1.0})
    pid = os.fork()
    if pid == 0:  # child: log, raise SIGTERM-like paths, exit without atexit
        code = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run.log({"x": 99.0})
                run.log_data(["child"])
                run.flush()
                run.finish()
            code = 0 if runlake.current_run() is None else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    run.log({"x": 2.0})
    run.finish()
    events = rl.read_run(run.dir)
    assert [e.values["x"] for e in rl.of_kind(events, "metrics")] == [1.0, 2.0]
    assert rl.of_kind(events, "data") == [] and len(rl.of_kind(events, "run_end")) == 1
