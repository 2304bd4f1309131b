"""`runlake sql`: one read-only query against the store, within time, memory and row limits."""

from __future__ import annotations

import sys

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand


def register(sub) -> None:
    p = subcommand(
        sub, "sql", "run one read-only SQL query on the store (tables: runs, metrics, ...)",
        "runlake sql \"SELECT run_id, key, last FROM metric_summary WHERE key = 'loss'\" --csv\n"
        "  runlake sql \"PIVOT metric_summary ON key USING last(last) GROUP BY run_id\" "
        "--timeout 2m --memory 4GB")
    add_store_args(p)
    p.add_argument("query", metavar="QUERY", help="one SELECT statement")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="print at most N rows (default 100000; 0 for all)")
    p.add_argument("--timeout", default=None, metavar="S",
                   help="stop the query after S seconds (30, 90s, 2m; 0 for none; "
                        "default $RUNLAKE_SQL_TIMEOUT or 30)")
    p.add_argument("--memory", default=None, metavar="SIZE",
                   help="memory cap, spilling to disk capped at the same size (512MB, 4GB; "
                        "0 for none; default $RUNLAKE_SQL_MEMORY or 2GB)")
    add_format_args(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from runlake.analysis.sql import run_query

    _, db = store_paths(args)
    result = run_query(db, args.query, limit=args.limit, timeout=args.timeout,
                       memory=args.memory)
    emit_rows(result.columns, result.rows, args.fmt)
    if result.truncated and args.limit is None:  # an explicit --limit asked for the cut
        print(f"runlake sql: stopped at {len(result.rows):,} rows (--limit); pass --limit 0 "
              f"for all, or narrow the query", file=sys.stderr)
    return 0
