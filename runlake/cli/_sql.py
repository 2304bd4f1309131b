"""`runlake sql`: one read-only query against the store."""

from __future__ import annotations

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand


def register(sub) -> None:
    p = subcommand(
        sub, "sql", "run one read-only SQL query on the store (tables: runs, metrics, ...)",
        "runlake sql \"SELECT run_id, key, last FROM metric_summary WHERE key = 'loss'\" --csv")
    add_store_args(p)
    p.add_argument("query", metavar="QUERY", help="one SELECT statement")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="print at most N rows")
    add_format_args(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from runlake.analysis.sql import run_readonly

    _, db = store_paths(args)
    columns, rows = run_readonly(db, args.query, limit=args.limit)
    emit_rows(columns, rows, args.fmt)
    return 0
