"""A writer for the liveness tests: ``crash`` logs, flushes, then waits to be SIGKILLed;
``resume`` continues the run as its next attempt and finishes.

usage: _liveness_job.py ROOT RUN_ID crash|resume
The heartbeat interval is long (60 s), so silence alone would take minutes to mark the
killed writer crashed: what the tests see comes from the other rules.
"""
import sys
import time

import runlake

root, run_id, mode = sys.argv[1:4]
kw = dict(root=root, heartbeat_interval=60.0, system_interval=0, console=False,
          capture_logging=False, online_checks=False)
if mode == "crash":
    run = runlake.init("live", "victim", run_id=run_id, **kw)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    assert run.flush()
    print("ready", flush=True)
    time.sleep(600)
else:
    run = runlake.init("live", "victim", resume=run_id, **kw)
    run.log({"loss": 0.1})
    run.finish()
    print(run.attempt, flush=True)
