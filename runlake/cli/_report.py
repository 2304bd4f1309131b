"""`runlake report`: a batch comparison report as one self-contained HTML (or MD/JSON) file."""

from __future__ import annotations

from runlake.cli._common import add_store_args, store_paths, subcommand


def register(sub) -> None:
    p = subcommand(sub, "report", "write a comparison report: curves, tables, config diff, anomalies, lineage",
                   "runlake report run-a run-b run-c --group-by lr -o sweep.html")
    add_store_args(p)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run id, unique name or id prefix")
    p.add_argument("--group-by", metavar="CONFIG_KEY", help="aggregate runs by this config key (seed groups)")
    p.add_argument("--metric", action="append", dest="metrics", metavar="KEY",
                   help="metric to include (repeatable; default: all non-system keys, up to 12)")
    p.add_argument("-o", "--output", default=None, help="output file (default report.<format>)")
    p.add_argument("--format", choices=("html", "md", "json"), default=None,
                   help="output format (default from the file suffix, else html)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from runlake.analysis.report import build_report, write_report
    from runlake.analysis.runs import resolve_runs
    from runlake.store import read_store

    _, db = store_paths(args)
    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
        fmt = {"htm": "html", "markdown": "md"}.get(suffix, suffix) if suffix in (
            "html", "htm", "md", "markdown", "json") else "html"
    out = Path(args.output or f"report.{fmt}")
    with read_store(db) as con:
        run_ids = resolve_runs(con, args.runs)
    report = build_report(db, run_ids, group_by=args.group_by, metrics=args.metrics)
    write_report(report, out, fmt=fmt)
    print(f"wrote {out} ({len(run_ids)} runs, {len(report['metrics'])} metrics, "
          f"{len(report['anomalies'])} anomalies)")
    return 0
