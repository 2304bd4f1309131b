"""`runlake import tensorboard|mlflow|trackio|wandb` and `runlake export parquet|csv|tensorboard`."""

from __future__ import annotations

from runlake.cli._common import add_format_args, add_store_args, emit_rows, store_paths, subcommand

_EXPORT_TABLES_HELP = (
    "table to export (repeatable); default: every per-run table "
    "(runs, writers, metrics, data_items, datasets, checkpoints, samples, logs, alerts, anomalies, metric_summary)"
)


def register(sub) -> None:
    p = subcommand(sub, "import", "import runs from other tools into the store",
                   "runlake import tensorboard ./tb_logs --project old-experiments")
    isub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    tb = subcommand(isub, "tensorboard", "import TensorBoard event files: each run directory becomes a run",
                    "runlake import tensorboard ./tb_logs --project old-experiments")
    tb.add_argument("logdir", metavar="DIR", help="TensorBoard log directory (searched recursively)")
    tb.add_argument("--project", default="tensorboard", help="runlake project of the imported runs (default: tensorboard)")
    add_store_args(tb)
    add_format_args(tb)
    tb.set_defaults(func=_import_tensorboard)
    for tool, arg, helptext, example in (
        ("mlflow", "SOURCE", "MLflow file store (mlruns/ folder or file: URI) or SQLite backend "
         "(sqlite:///mlflow.db or the .db path)", "runlake import mlflow ./mlruns"),
        ("trackio", "DB", "trackio project database (~/.cache/huggingface/trackio/<project>.db)",
         "runlake import trackio ~/.cache/huggingface/trackio/my-project.db"),
        ("wandb", "PATH", "a wandb/ folder, one offline-run-*/run-* folder or a .wandb file "
         "(read locally: nothing is uploaded)", "runlake import wandb ./wandb --project old-experiments"),
    ):
        fp = subcommand(isub, tool, f"import {tool} runs (read-only): each run becomes a run", example)
        fp.add_argument("source", metavar=arg, help=helptext)
        fp.add_argument("--project", help=f"runlake project of the imported runs (default: the {tool} "
                                          f"{'experiment' if tool == 'mlflow' else 'project'} name)")
        add_store_args(fp)
        add_format_args(fp)
        fp.set_defaults(func=_import_foreign, tool=tool)

    p = subcommand(sub, "export", "export runs from the store to files",
                   "runlake export parquet RUN -o out/   |   runlake export tensorboard RUN1 RUN2 -o tb/")
    esub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for fmt in ("parquet", "csv"):
        e = subcommand(esub, fmt, f"write the runs' rows as {fmt}, one file per table (<DIR>/<table>.{fmt})",
                       f"runlake export {fmt} RUN [RUN...] --table metrics -o out/")
        e.add_argument("runs", metavar="RUN", nargs="+", help="run id, unique run name or unique id prefix")
        e.add_argument("--table", "-t", action="append", dest="tables", help=_EXPORT_TABLES_HELP)
        e.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory")
        add_store_args(e)
        add_format_args(e)
        e.set_defaults(func=_export_tables, export_format=fmt)
    e = subcommand(esub, "tensorboard", "write TensorBoard event files, one run directory per run",
                   "runlake export tensorboard RUN [RUN...] -o tb/ && tensorboard --logdir tb/")
    e.add_argument("runs", metavar="RUN", nargs="+", help="run id, unique run name or unique id prefix")
    e.add_argument("-o", "--out", required=True, metavar="DIR", help="output log directory")
    add_store_args(e)
    add_format_args(e)
    e.set_defaults(func=_export_tensorboard)


def _import_tensorboard(args) -> int:
    import sys
    from dataclasses import asdict

    from runlake.ingest.tensorboard import import_tensorboard

    root, db = store_paths(args)
    results = import_tensorboard(args.logdir, project=args.project, root=root, db=db)
    if args.fmt == "json":
        dicts = [{**asdict(r), "path": str(r.path)} for r in results]
        emit_rows(list(dicts[0]), [list(d.values()) for d in dicts], "json")
        return 0
    rows = [[r.run_id, r.name, r.status, r.ranks, ", ".join(f"{k}: {v}" for k, v in r.imported.items()),
             "; ".join(r.skipped)] for r in results]
    emit_rows(["run_id", "name", "status", "ranks", "imported (summaries)", "not imported"], rows, args.fmt)
    sys.stdout.flush()
    for r in results:  # the full story per run: merged folders, skipped kinds, damaged files
        lines = [f"  merged {f}" for f in r.folders] + [f"  not imported: {s}" for s in r.skipped]
        if lines and r.imported:
            lines.insert(0, "  imported: " + ", ".join(f"{k}: {v}" for k, v in r.imported.items()))
        lines += [f"  note: {n}" for n in r.notes] + [f"  warning: {p}" for p in r.problems]
        if lines:
            print(f"{r.name} ({r.run_id}):", *lines, sep="\n", file=sys.stderr)
    return 0


def _import_foreign(args) -> int:
    """`runlake import mlflow|trackio`: a table of runs, then each run's story on stderr."""
    import sys
    from dataclasses import asdict

    if args.tool == "mlflow":
        from runlake.ingest.import_mlflow import import_mlflow as importer
    elif args.tool == "wandb":
        from runlake.ingest.import_wandb import import_wandb as importer
    else:
        from runlake.ingest.import_trackio import import_trackio as importer
    root, db = store_paths(args)
    results = importer(args.source, project=args.project, root=root, db=db)
    if args.fmt == "json":
        dicts = [asdict(r) for r in results]
        emit_rows(list(dicts[0]) if dicts else [], [list(d.values()) for d in dicts], "json")
        return 0
    rows = [[r.run_id, r.name, r.status, ", ".join(f"{k}: {v}" for k, v in r.counts.items()),
             "; ".join(r.skipped)] for r in results]
    emit_rows(["run_id", "name", "status", "imported", "not imported"], rows, args.fmt)
    sys.stdout.flush()
    for r in results:
        lines = [f"  note: {n}" for n in r.notes] + [f"  warning: {p}" for p in r.problems]
        if lines:
            print(f"{r.name} ({r.run_id}):", *lines, sep="\n", file=sys.stderr)
    return 0


def _export_tables(args) -> int:
    from runlake.analysis.export import export_tables

    _, db = store_paths(args)
    results = export_tables(db, args.runs, args.out, fmt=args.export_format, tables=args.tables)
    emit_rows(["table", "rows", "path"], [[r.table, r.rows, str(r.path)] for r in results], args.fmt)
    return 0


def _export_tensorboard(args) -> int:
    from runlake.analysis.export import export_tensorboard

    root, db = store_paths(args)
    results = export_tensorboard(db, args.runs, args.out, root=root)
    emit_rows(["run", "scalars", "histograms", "media", "not exported", "path"],
              [[r.path.name, r.rows, r.histograms, r.media, ", ".join(f"{k}: {v}" for k, v in r.skipped.items()),
                str(r.path)] for r in results], args.fmt)
    return 0
