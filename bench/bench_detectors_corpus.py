"""False alarms and recall of the anomaly detectors on a healthy and a sick corpus.

    .venv/bin/python bench/bench_detectors_corpus.py [--healthy 220] [--sick-per-kind 3] [--seed 0]

Writes every run through the real emitter (``runlake.init`` / ``run.log``) into segments
under a temporary folder, ingests them into a real DuckDB store, runs ``anomalies.detect``
and scores the stored findings (see ``tests/analysis/_corpus.py`` for what the runs look
like). Prints:

* warnings (severity >= warning) on healthy runs: the goal is 0;
* online alerts (emitter/checks.py) on healthy runs: the goal is 0;
* recall on sick runs: a warning+ finding of the planted kind, on the planted key, near
  the planted steps, for every sick run: the goal is 100%.

Exits 1 when a goal is missed, listing each false alarm and each miss.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.analysis import _corpus  # noqa: E402  (the generator the tests use)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=220, help="healthy runs (default 220)")
    parser.add_argument("--sick-per-kind", type=int, default=3,
                        help=f"runs per sick kind ({len(_corpus.SICK_KINDS)} kinds; default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the segments and store here (default: a temporary folder)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="runlake-corpus-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        r = _corpus.run_corpus(work, args.healthy, args.sick_per_kind, args.seed)
    wall = time.perf_counter() - t0
    print(f"corpus: {r['healthy_runs']} healthy + {r['sick_runs']} sick runs, "
          f"{r['points']:,} metric points, seed {args.seed}, {wall:.0f} s")
    print(f"healthy: {r['healthy_warnings']} warnings+ on {r['healthy_runs_warned']} runs "
          f"({r['healthy_info']} info findings); {len(r['online_false_alarms'])} online alerts")
    print(f"sick: {r['sick_found']}/{r['sick_runs']} found with the right kind, key and steps "
          f"(recall {r['recall']:.0%})")
    for f in r["false_alarms"]:
        print("  false alarm:", *f)
    for f in r["online_false_alarms"]:
        print("  online false alarm:", *f)
    for m in r["missed"]:
        print("  missed:", *m)
    ok = not r["false_alarms"] and not r["online_false_alarms"] and r["recall"] == 1.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
