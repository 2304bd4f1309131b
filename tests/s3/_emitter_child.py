"""A training process for the object-storage emitter tests (run as a real subprocess).

``python _emitter_child.py '<json>'``: ``runlake.init(root=...)``, ``log`` ``points`` steps
(``flush_every`` > 0: ``run.flush()`` and a ``flushed <step> <ok>`` line on stdout after
each such step), optionally wait for a file or forever (a SIGKILL target), then
``finish()`` and a last JSON line: drops, and with ``audit`` the network calls made by the
main (training) thread and by the others, seen by an audit hook (nothing is patched).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main() -> None:
    cfg = json.loads(sys.argv[1])
    calls = {"main": 0, "other": 0}
    if cfg.get("audit"):
        main_id = threading.get_ident()

        def hook(event: str, args) -> None:
            if event in ("socket.connect", "socket.getaddrinfo"):
                calls["main" if threading.get_ident() == main_id else "other"] += 1

        sys.addaudithook(hook)
    import runlake

    run = runlake.init(project=cfg.get("project", "p"), root=cfg["root"],
                       run_id=cfg.get("run_id"), system_interval=0,
                       flush_interval=cfg.get("flush_interval", 0.05), console=False)
    points, every = cfg["points"], cfg.get("flush_every", 0)
    i = 0
    while points < 0 or i < points:  # points < 0: until killed
        run.log({"loss": 1.0 / (i + 1), "acc": float(i % 100)}, step=i)
        if every and (i + 1) % every == 0:
            ok = run.flush()
            print(f"flushed {i} {ok}", flush=True)
            time.sleep(cfg.get("pause", 0))
        i += 1
    if cfg.get("wait_for"):
        while not os.path.exists(cfg["wait_for"]):
            time.sleep(0.05)
    t0 = time.monotonic()
    run.finish()
    print(json.dumps({"dropped": run.dropped, "calls": calls, "writer": run.writer,
                      "run_id": run.id, "spool": str(run.root),
                      "finish_s": round(time.monotonic() - t0, 3)}), flush=True)


if __name__ == "__main__":
    main()
