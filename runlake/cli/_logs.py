"""`runlake logs`: the log lines a run recorded (Python logging via the emitter)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand
from runlake.schemas.errors import ConfigError

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
_COLUMNS = ["ts", "rank", "step", "level", "logger", "message"]


def register(sub) -> None:
    p = subcommand(sub, "logs", "show (or follow) the log lines of a run",
                   "runlake logs my-run --level WARNING --grep nan --follow")
    add_store_args(p)
    p.add_argument("run", metavar="RUN", help="run id, unique name, or unique id prefix")
    p.add_argument("--level", default="DEBUG", type=str.upper,
                   help="minimum level: DEBUG, INFO, WARNING, ERROR, CRITICAL (default all)")
    p.add_argument("--grep", metavar="TEXT", help="only lines whose message contains TEXT")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new lines (needs `runlake ingest --watch`) until Ctrl-C")
    p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    add_format_args(p)
    p.set_defaults(func=_run)


def _fetch(db, run_ref, run_id, levelno, grep, after_rowid, limit):
    from runlake.analysis._common import rows as query_rows
    from runlake.analysis.runs import resolve_run
    from runlake.store import read_store

    with read_store(db) as con:
        run_id = run_id or resolve_run(con, run_ref)
        where = ["run_id = ?", "coalesce(levelno, 0) >= ?"]
        params = [run_id, levelno]
        if after_rowid >= 0:
            where.append("rowid > ?")
            params.append(after_rowid)
        if grep:
            where.append("contains(message, ?)")
            params.append(grep)
        sql = f"SELECT rowid, {', '.join(_COLUMNS)} FROM logs WHERE {' AND '.join(where)}"
        if limit:  # the last N lines
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, rowid DESC LIMIT {int(limit)})"
        sql += " ORDER BY ts, rowid"
        rows = query_rows(con, sql, params)
    return run_id, rows


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
    levelno = _LEVELS.get(args.level)
    if levelno is None:
        raise ConfigError(f"unknown --level {args.level!r}; expected one of "
                          f"DEBUG, INFO, WARNING, ERROR, CRITICAL")
    run_id, rows = _fetch(db, args.run, None, levelno, args.grep, -1, args.limit)
    if not args.follow:
        emit_rows(_COLUMNS, [r[1:] for r in rows], args.fmt)
        return 0
    _print_lines(rows, args.fmt)
    last = max((r[0] for r in rows), default=-1)
    try:
        while True:
            time.sleep(args.poll)
            _, rows = _fetch(db, None, run_id, levelno, args.grep, last, None)
            _print_lines(rows, args.fmt)
            last = max((r[0] for r in rows), default=last)
    except KeyboardInterrupt:
        return 0
