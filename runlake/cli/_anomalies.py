"""`runlake anomalies`: findings of the anomaly detectors, worst first, with suggestions."""

from __future__ import annotations

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand
from runlake.schemas.severity import SEVERITIES


def register(sub) -> None:
    p = subcommand(sub, "anomalies", "list detected anomalies (loss spikes, divergence, NaN, leaks...) with suggestions",
                   "runlake anomalies --refresh --severity warning my-run")
    add_store_args(p)
    p.add_argument("runs", nargs="*", metavar="RUN", help="run id, unique name or id prefix (default: all runs)")
    p.add_argument("--severity", choices=SEVERITIES, type=str.lower,
                   help="only findings at or above this level")
    p.add_argument("--refresh", action="store_true",
                   help="run the detectors first and store their findings")
    add_format_args(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from runlake.analysis.anomalies import detect, list_anomalies
    from runlake.analysis.runs import resolve_runs, run_labels
    from runlake.store import read_store

    _, db = store_paths(args)
    run_ids = None
    if args.runs:
        with read_store(db) as con:
            run_ids = resolve_runs(con, args.runs)
    stored = detect(db, run_ids) if args.refresh else None
    with read_store(db) as con:
        found = list_anomalies(con, run_ids, severity=args.severity)
        labels = run_labels(con, found["run_id"].unique().to_list())
        if found.is_empty() and args.severity is not None and stored is None:
            stored = list_anomalies(con, run_ids).height
    if args.fmt != "table":
        emit_rows(found.columns, found.rows(), args.fmt)
        return 0
    if found.is_empty():
        print(_nothing_found(args, stored))
        return 0
    for f in found.iter_rows(named=True):
        steps = "" if f["step_start"] is None else (
            f" steps {f['step_start']}–{f['step_end']}" if f["step_end"] != f["step_start"]
            else f" step {f['step_start']}")
        print(f"[{f['severity'].upper()}] {labels.get(f['run_id'], f['run_id'])} {f['kind']} "
              f"{f['key'] or ''}{steps}")
        print(f"    {f['message']}")
        if f["suggestion"]:
            print(f"    → {f['suggestion']}")
    return 0


def _nothing_found(args, stored: int | None) -> str:
    """The line printed when no finding is shown: what was looked at, and what to try."""
    scope = f"in {', '.join(args.runs)}" if args.runs else "in any run"
    level = f" at or above {args.severity}" if args.severity else ""
    if args.refresh:
        head = f"the detectors ran just now and found nothing{level} {scope}"
    else:
        head = f"no anomalies{level} stored {scope}"
    if stored:
        return f"{head} ({stored} below {args.severity}: drop --severity to see them)"
    return head if args.refresh else f"{head} (run with --refresh to run the detectors now)"
