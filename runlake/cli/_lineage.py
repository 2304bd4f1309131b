"""`runlake lineage`: which runs used an item, what a run or checkpoint saw, data diffs."""

from __future__ import annotations

import json

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand


def register(sub) -> None:
    p = subcommand(sub, "lineage", "data lineage: items per run/checkpoint, runs per item, data diff",
                   "runlake lineage run my-run --checkpoint 2000")
    lsub = p.add_subparsers(dest="lineage_cmd", metavar="WHAT", required=True)
    item = subcommand(lsub, "item", "runs and checkpoints that consumed an item",
                      "runlake lineage item img_00042.png")
    item.add_argument("item_id", metavar="ID")
    run = subcommand(lsub, "run", "items a run (or one of its checkpoints) consumed, coverage, leakage",
                     "runlake lineage run my-run --checkpoint 2000")
    run.add_argument("run", metavar="RUN")
    run.add_argument("--checkpoint", type=int, metavar="STEP", help="only items seen up to this checkpoint")
    diff = subcommand(lsub, "diff", "items only in run A, only in run B, in both",
                      "runlake lineage diff run-a run-b")
    diff.add_argument("run_a", metavar="RUN_A")
    diff.add_argument("run_b", metavar="RUN_B")
    for q in (item, run, diff):
        add_store_args(q)
        add_format_args(q)
        q.set_defaults(func=_run)


def _run(args) -> int:
    from runlake.analysis import lineage
    from runlake.analysis.runs import resolve_run, resolve_runs
    from runlake.store import read_store

    _, db = store_paths(args)
    with read_store(db) as con:
        if args.lineage_cmd == "item":
            df = lineage.item_runs(con, args.item_id)
            if df.is_empty() and args.fmt == "table":
                print(f"no run consumed item {args.item_id!r}")
                return 0
            emit_rows(df.columns, df.rows(), args.fmt)
            return 0
        if args.lineage_cmd == "diff":
            a, b = resolve_runs(con, [args.run_a, args.run_b])
            out = lineage.data_diff(con, a, b)
            if args.fmt == "json":
                print(json.dumps(out, indent=1))
            else:
                rows = [[side, out[side], ", ".join(out[f"examples_{side}"])]
                        for side in ("only_a", "only_b", "both")]
                emit_rows(["side", "items", "examples"], rows, args.fmt)
            return 0
        run_id = resolve_run(con, args.run)
        items = lineage.run_items(con, run_id, checkpoint_step=args.checkpoint)
        if args.fmt != "table":
            emit_rows(items.columns, items.rows(), args.fmt)
            return 0
        cov = lineage.coverage(con, run_id, checkpoint_step=args.checkpoint)
        leak = lineage.leakage(con, [run_id], upto_step=args.checkpoint)
    upto = f" up to checkpoint step {args.checkpoint}" if args.checkpoint is not None else ""
    print(f"# {run_id}: {items.height} distinct items{upto}")
    emit_rows(items.columns, items.head(50).rows(), "table")
    if items.height > 50:
        print(f"... {items.height - 50} more (use --csv for all)")
    print(f"\n# coverage per epoch and split{upto}")
    emit_rows(cov.columns, cov.rows(), "table")
    print(f"\n# train/eval overlap{upto}: {leak.height} items")
    if leak.height:
        emit_rows(leak.columns, leak.head(20).rows(), "table")
    return 0
