"""A training process for the end-to-end tests: logs deterministic values with the real emitter.

usage: _train.py ROOT RUN_NAME STEPS KEYS SLEEP_S [RUN_ID]
Values: key k<i> at step s is value(run_name, s, i) below; prints "step N" after each flush.
RANK/WORLD_SIZE in the environment make it one rank of a shared run.
"""

import math
import sys
import time

import runlake


def value(name: str, step: int, key: int) -> float:
    if key == 0 and step % 101 == 7:
        return math.nan
    if key == 1 and step % 103 == 5:
        return math.inf
    return math.sin(step * 0.37 + key) * 10 ** (key % 5) + len(name) / 3


def main() -> None:
    root, name, steps, keys, sleep = sys.argv[1:6]
    run_id = sys.argv[6] if len(sys.argv) > 6 else None
    steps, keys, sleep = int(steps), int(keys), float(sleep)
    run = runlake.init("e2e", name, root=root, run_id=run_id, flush_interval=0.05,
                       heartbeat_interval=0.2, system_interval=0, console=False,
                       online_checks=False, total_steps=steps)
    for step in range(steps):
        run.log({f"k{k}": value(name, step, k) for k in range(keys)}, step=step)
        if sleep and step % 50 == 49:
            run.flush()
            print(f"step {step}", flush=True)
            time.sleep(sleep)
    run.finish()


if __name__ == "__main__":
    main()
