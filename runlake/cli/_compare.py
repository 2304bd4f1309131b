"""`runlake compare`: metric table, config diff and seed groups / impact for several runs."""

from __future__ import annotations

import json
import sys

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand


def register(sub) -> None:
    p = subcommand(sub, "compare", "compare runs: final/best/last-k table, config diff, seed groups",
                   "runlake compare run-a run-b run-c --metric val/loss --by lr")
    add_store_args(p)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run id, unique name or id prefix")
    p.add_argument("--metric", required=True, metavar="KEY", help="the metric to compare")
    p.add_argument("--by", metavar="CONFIG_KEY",
                   help="group runs by this config key (dotted for nested) and aggregate over seeds")
    p.add_argument("-k", type=int, default=10, help="last-k mean window (default 10)")
    add_format_args(p)
    p.set_defaults(func=_run)


def _labelled(df, labels: dict[str, str], *, keep_id: bool):
    """``df`` with a ``run`` label column first; ``run_id`` stays after it when ``keep_id``
    (machine formats), else it is dropped (the table: names, ids only where names repeat)."""
    if "run_id" not in df.columns:
        return df
    import polars as pl

    named = df.with_columns(pl.col("run_id").replace_strict(labels, default=pl.col("run_id")).alias("run"))
    rest = [c for c in df.columns if c not in ("run", "run_id")]
    return named.select("run", *(["run_id"] if keep_id else []), *rest)


def _run(args) -> int:
    import polars as pl

    from runlake.analysis import compare
    from runlake.analysis.runs import resolve_runs, run_labels
    from runlake.store import read_store

    _, db = store_paths(args)
    with read_store(db) as con:
        run_ids = resolve_runs(con, args.runs)
        labels = run_labels(con, run_ids)
        table = compare.metric_table(con, run_ids, [args.metric], k=args.k)
        diff = compare.config_diff(con, run_ids)
        groups = impact = None
        if args.by:
            groups = compare.seed_groups(con, run_ids, args.metric, k=args.k, by=args.by)
            impact = compare.hparam_impact(con, run_ids, args.metric)
        best = compare.best_config(con, run_ids, args.metric)
    machine = args.fmt != "table"
    table = _labelled(table, labels, keep_id=machine)
    if groups is not None:
        groups = groups.with_columns(
            pl.col("run_ids").list.eval(pl.element().replace_strict(labels, default=pl.element()))
            .alias("runs")).select("group", "runs", *[c for c in groups.columns if c != "group"])
        if not machine:
            groups = groups.drop("run_ids")
    if args.fmt == "json":
        out = {"metric": args.metric, "runs": [{"run_id": r, "run": labels[r]} for r in run_ids],
               "table": table.to_dicts(), "config_diff": diff.to_dicts(), "best": best}
        if groups is not None:
            out["groups"] = groups.to_dicts()
            out["impact"] = impact.to_dicts()
        json.dump(out, sys.stdout, default=str, indent=1)
        sys.stdout.write("\n")
        return 0
    if args.fmt == "csv":
        emit_rows(table.columns, table.rows(), "csv")
        return 0
    print(f"# {args.metric}")
    emit_rows(table.columns, table.rows(), "table")
    print("\n# config differences")
    emit_rows([labels.get(c, c) for c in diff.columns], diff.rows(), "table")
    if groups is not None:
        print(f"\n# groups by {args.by} (mean of the last {args.k} points, 95% t interval)")
        emit_rows(groups.columns, groups.rows(), "table")
        print("\n# hyperparameter impact (Spearman rank correlation with the best value)")
        emit_rows(impact.columns, impact.rows(), "table")
    if best:
        run = labels.get(best["run_id"], best["run_id"])
        also = f" ({best['run_id']})" if run != best["run_id"] else ""
        print(f"\nbest: {run}{also} {args.metric}={best['value']:.6g} "
              f"at step {best['step']} ({best['mode']})")
    return 0
