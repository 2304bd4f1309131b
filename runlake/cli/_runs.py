"""`runlake runs`: the runs in the store, newest first."""

from __future__ import annotations

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand

_STATUSES = ("running", "finished", "failed", "killed", "crashed")


def register(sub) -> None:
    p = subcommand(sub, "runs", "list runs with status, progress and latest loss/accuracy",
                   "runlake runs --project mnist --status running --limit 20")
    add_store_args(p)
    p.add_argument("--project", help="only this project")
    p.add_argument("--status", choices=_STATUSES, help="only runs with this status")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="at most N runs (default 50; 0 = all)")
    add_format_args(p)
    p.set_defaults(func=_run)


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _progress(run) -> str:
    if run["progress"] is None:
        return ""
    text = f"{run['progress']:.0%}"
    if run["eta_s"] is not None and run["status"] == "running":
        text += f" eta {_duration(run['eta_s'])}"
    return text


def _run(args) -> int:
    from runlake.analysis.runs import list_runs
    from runlake.store import read_store

    _, db = store_paths(args)
    with read_store(db) as con:
        runs = list_runs(con, project=args.project, status=args.status,
                         limit=args.limit or None)
    if args.fmt != "table":
        columns = list(runs[0]) if runs else ["run_id"]
        emit_rows(columns, [[r[c] for c in columns] for r in runs], args.fmt)
        return 0
    columns = ["id", "project", "name", "status", "started", "duration", "step", "progress",
               "metrics", "tags"]
    rows = [
        [r["run_id"], r["project"], r["name"], r["status"],
         r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "",
         _duration(r["duration_s"]), r["last_step"], _progress(r),
         " ".join(f"{k}={v:.4g}" for k, v in r["metrics"].items()),
         ",".join(r["tags"] or [])]
        for r in runs
    ]
    emit_rows(columns, rows, "table")
    return 0
