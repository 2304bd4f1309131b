"""A training process whose disk fills up mid-run, then gets room again.

argv: mode ("tmpfs": ``root`` lies on a small tmpfs that a filler file fills;
"rlimit": RLIMIT_FSIZE caps the segment's size), root, filler path. Prints a JSON summary.
Values are ~incompressible (8 bytes a point) so a phase's frame (~8 KB) can never fit in the
slack of the segment's last tmpfs page.
"""

import errno
import json
import math
import os
import resource
import signal
import sys
from pathlib import Path

import runlake

mode, root, filler = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a size-limited write fails with EFBIG instead
run = runlake.init("disk", "full", root=root, console=False, system_interval=0,
                   capture_logging=False, flush_interval=3600, heartbeat_interval=3600)


def phase(steps) -> bool:
    for step in steps:
        run.log({f"k{k}": math.sin(step * 1.1 + k) for k in range(10)}, step=step)  # ~8 B/point
    return run.flush()


ok = [phase(range(0, 100))]
if mode == "tmpfs":
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the file system
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    os.close(fd)
else:
    (segment,) = root.glob("disk/*/*/*.open")
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (segment.stat().st_size + 64, hard))
ok.append(phase(range(100, 200)))
if mode == "tmpfs":
    filler.unlink()
else:
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
ok.append(phase(range(200, 300)))
run.finish()
print(json.dumps({"ok": ok, "dropped": run.dropped, "run_id": run.id}))
