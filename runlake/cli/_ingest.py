"""`runlake ingest`: load new segment bytes into the store (once, or continuously).

``--lake``/``--duckdb`` (or ``$RUNLAKE_STORE``) choose the root's store; ``--lake`` on a
root whose store is a DuckDB file converts it first and remembers the choice in the root
(docs/ingest.md#choosing-the-store-duckdb-file-or-lake). ``--rebuild`` rebuilds the
chosen store from the segments.
"""

from __future__ import annotations

import logging
import sys

from runlake.cli._common import add_store_args, subcommand
from runlake.schemas.errors import ConfigError


def register(sub) -> None:
    p = subcommand(
        sub, "ingest", "load new segments into the store (DuckDB file or lake), exactly once",
        "runlake ingest --root runs/            # one pass\n"
        "  runlake ingest --watch --interval 2    # keep the store fresh while training runs\n"
        "  runlake ingest --lake                  # move the root to the lake (converts the file)\n"
        "  runlake ingest --rebuild               # rebuild the store from the segments\n"
        "  runlake ingest --shard 1/2 --watch     # with --shard 2/2 elsewhere: two ingesters",
    )
    add_store_args(p)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--lake", dest="kind", action="store_const", const="lake",
                      help="use the root's Delta lake (<root>/runlake-lake/); the first time, "
                           "a DuckDB store is converted into it and the root remembers")
    kind.add_argument("--duckdb", dest="kind", action="store_const", const="duckdb",
                      help="use the root's DuckDB file (the default; $RUNLAKE_STORE and the "
                           "root's setting can choose the lake)")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the store from the segments beside the old one, then swap "
                        "it in (the old one is kept as <name>.old)")
    p.add_argument("--shard", metavar="I/N", default=None,
                   help="ingest only the runs of shard I of N into the root's lake, while N-1 "
                        "other processes (any machines) ingest the others; every shard uses "
                        "the same N (docs/ingest.md#sharded-ingest)")
    p.add_argument("--wait", type=float, default=None, metavar="S",
                   help="with --shard: seconds to wait while another process holds the same "
                        "shard, then exit 2 naming it (default 3; on s3:// the lease TTL + 5)")
    p.add_argument("--watch", action="store_true", help="keep ingesting until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between passes with --watch (default 1)")
    p.add_argument("--stale-after", type=float, default=None, metavar="S",
                   help="seconds of writer silence that mark a run crashed "
                        "(default 3 x heartbeat + 5)")
    p.add_argument("--analyze", action="store_true",
                   help="run the anomaly detectors on the runs that got new data")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar, summary or warnings")
    p.set_defaults(func=_run)


def _detector():
    try:
        from runlake.analysis.anomalies import detect
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("runlake.analysis"):
            raise ConfigError(
                "--analyze needs runlake.analysis.anomalies, which is not available in this "
                "installation; run without --analyze") from None
        raise
    return detect


def _run(args) -> int:
    from runlake.ingest import ingest, watch
    from runlake.schemas.segments import resolve_root
    from runlake.store import locate

    root, db = resolve_root(args.root), args.db
    if args.interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {args.interval}")
    shard = None
    if args.shard is not None:
        from runlake.ingest.shard import parse_shard

        shard = parse_shard(args.shard)
    if args.wait is not None and (shard is None or not args.wait >= 0):
        raise ConfigError("--wait needs --shard and a number of seconds >= 0, got "
                          f"{args.wait:g}" + ("" if shard else " without --shard"))
    detect = _detector() if args.analyze else None
    if args.quiet:
        logging.getLogger("runlake.ingest").setLevel(logging.ERROR)
    progress = not args.quiet and sys.stderr.isatty()

    def after(report) -> None:
        if not args.quiet:
            for note in report.notes:
                print(note, flush=True)
        touched = sorted(report.runs) if report.points or report.events else []
        if detect is not None and touched:
            found = detect(locate(root, db, args.kind), run_ids=touched)
            if not args.quiet:
                print(f"anomalies: {found} found in {len(touched)} run(s)", flush=True)
        if not args.quiet and (report.segments or report.notes or not args.watch):
            print(report.summary(), flush=True)

    if args.watch:
        if not args.quiet:
            print(f"watching {root} every {args.interval:g}s (Ctrl-C to stop)", file=sys.stderr)
        try:
            watch(root, db, interval=args.interval, on_pass=after, kind=args.kind,
                  rebuild=args.rebuild, progress=progress, stale_after=args.stale_after,
                  shard=shard, wait_s=args.wait)
        except KeyboardInterrupt:
            return 0
        return 0
    after(ingest(root, db, kind=args.kind, rebuild=args.rebuild, progress=progress,
                 stale_after=args.stale_after, shard=shard, wait_s=args.wait))
    return 0
