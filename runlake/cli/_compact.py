"""`runlake compact`: compact a lake's small files now (ingest also does it when due).

Compaction runs only in the process holding the root's ingest lock, so this command takes
it; while an ``ingest --watch`` holds it, the watch compacts on its own and this command
says so (exit code 2). A DuckDB file needs no compaction (DuckDB reuses freed blocks): on
one, the command runs DuckDB's ``CHECKPOINT``, which folds a write-ahead log a crashed
writer left into the file.
"""

from __future__ import annotations

from runlake.cli._common import add_store_args, subcommand


def register(sub) -> None:
    p = subcommand(
        sub, "compact", "compact the lake's small files, checkpoint its log, vacuum (lake only)",
        "runlake compact --root runs/",
    )
    add_store_args(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from runlake.ingest.loader import check_root
    from runlake.ingest.lock import IngestLock
    from runlake.schemas.errors import StoreBusyError, StoreError
    from runlake.schemas.objects import is_url
    from runlake.store import locate

    root = check_root(args.root)
    location = locate(root, args.db)
    if not location.exists():
        raise StoreError(f"no store at {location.path}: nothing to compact (run `runlake "
                         f"ingest` first)")
    try:
        if is_url(root):  # no lock file on a bucket: the lake's ingest lease (held_store)
            from runlake.ingest.pipeline import held_store

            lock = held_store(root, args.db, None, False)
            lock.__enter__()
        else:
            lock = IngestLock(root).__enter__()
    except StoreBusyError as exc:
        raise StoreBusyError(
            f"{exc}. Compaction runs in the ingest process: an `ingest --watch` compacts the "
            f"store automatically when due, so there is nothing to do; after a one-off "
            f"ingest, run `runlake compact` again") from None
    try:
        if location.kind == "duckdb":
            from runlake.store.rebuild import checkpoint

            checkpoint(location.path, always=True)
            print(f"{location.path} is a DuckDB file: nothing to compact (DuckDB reuses freed "
                  f"space); checkpointed it")
            return 0
        from runlake.store.lake import compact

        done = compact(location)
    finally:
        lock.__exit__(None, None, None)
    print(_summary(location.path, done))
    return 0


def _summary(path, done: dict) -> str:
    """One line from the lake's per-table report: files before and after, vacuumed."""
    before = sum(t.get("files_before", 0) for t in done.values())
    after = sum(t.get("files_after", 0) for t in done.values())
    rewritten = [name for name, t in done.items() if t.get("rewritten")]
    vacuumed = sum(t.get("vacuumed", 0) for t in done.values())
    return (f"compacted {path}: {before:,} data files -> {after:,} ({len(rewritten)} table(s) "
            f"rewritten), {vacuumed:,} unused file(s) vacuumed")
