"""`runlake logs`: the log lines a run recorded (Python logging via the emitter).

The query is :func:`runlake.analysis.logs.query_logs`, the same one the dashboard's Logs view
runs: minimum level by number, level names and ``--grep`` case-insensitive."""

from __future__ import annotations

import argparse
import json
import sys
import time

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand

_COLUMNS = ["ts", "rank", "step", "level", "logger", "message"]


def register(sub) -> None:
    p = subcommand(sub, "logs", "show (or follow) the log lines of a run",
                   "runlake logs my-run --level WARNING --grep nan --follow")
    add_store_args(p)
    p.add_argument("run", metavar="RUN", help="run id, unique name, or unique id prefix")
    p.add_argument("--level", default=None,
                   help="minimum level, any case: DEBUG, INFO, WARNING (WARN), ERROR, CRITICAL, "
                        "a custom level the run logged, or a number (default: every line)")
    p.add_argument("--grep", metavar="TEXT",
                   help="only lines whose message or logger contains TEXT (ignoring case)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new lines (needs `runlake ingest --watch`) until Ctrl-C")
    p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    add_format_args(p)
    p.set_defaults(func=_run)


def _fetch(db, run_ref, run_id, level, grep, after, limit):
    """(run id, rows of (cursor, *_COLUMNS)): the run's lines, after the cursor if given."""
    from runlake.analysis.logs import query_logs
    from runlake.analysis.runs import resolve_run
    from runlake.store import read_store

    with read_store(db) as con:
        run_id = run_id or resolve_run(con, run_ref)
        lines = query_logs(con, run_id, level=level, grep=grep, limit=limit, cursor=True,
                           after=after)
    return run_id, lines.select("cursor", *_COLUMNS).rows()


def _print_lines(rows, fmt) -> None:
    for row in rows:
        record = dict(zip(_COLUMNS, row[1:]))
        if fmt == "json":
            print(json.dumps(record, default=str))
        else:
            step = f" step={record['step']}" if record["step"] is not None else ""
            print(f"{record['ts']} [{record['rank']}] {record['level']:<8} "
                  f"{record['logger'] or 'root'}:{step} {record['message']}")
    sys.stdout.flush()


def _run(args) -> int:
    _, db = store_paths(args)
    run_id, rows = _fetch(db, args.run, None, args.level, args.grep, None, args.limit)
    if not args.follow:
        emit_rows(_COLUMNS, [r[1:] for r in rows], args.fmt)
        return 0
    _print_lines(rows, args.fmt)
    last = max((r[0] for r in rows), default=-1)
    try:
        while True:
            time.sleep(args.poll)
            _, rows = _fetch(db, None, run_id, args.level, args.grep, last, None)
            _print_lines(rows, args.fmt)
            last = max((r[0] for r in rows), default=last)
    except KeyboardInterrupt:
        return 0
