"""`runlake push`: upload what a killed training process left in its object-storage spool.

A process writing to an ``s3://`` root uploads its own spool while it lives
(:mod:`runlake.emitter.upload`); after SIGKILL, an OOM kill or a lost endpoint its sealed
segments (and its last ``.open`` one) stay on the node. This command seals the leftovers of
dead writers, uploads them with ``put_new`` and deletes them once confirmed; a writer folder
still locked by a live process is skipped, never touched (:mod:`runlake.emitter.spool`).
"""

from __future__ import annotations

import os

from runlake.cli._common import add_format_args, emit_rows, subcommand


def register(sub) -> None:
    p = subcommand(
        sub, "push", "upload the segments a dead process left in its object-storage spool",
        "runlake push --spool ~/.cache/runlake/spool/my-bucket/runs --root s3://my-bucket/runs",
    )
    p.add_argument("--spool", metavar="DIR",
                   help="the spool folder (default $RUNLAKE_SPOOL, else the one of --root "
                        "under ~/.cache/runlake/spool)")
    p.add_argument("--root", metavar="URL",
                   help="s3://bucket/prefix to upload to (default: the URL the spool records, "
                        "else $RUNLAKE_DIR)")
    add_format_args(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from runlake.emitter.spool import default_spool, push
    from runlake.schemas.errors import RootError
    from runlake.schemas.objects import is_url

    root = args.root or (os.environ.get("RUNLAKE_DIR") if not args.spool else None) or None
    if root is not None and not is_url(root):
        if args.root:
            raise RootError(f"--root {root!r} is not an object-storage URL; runlake push "
                            f"uploads to s3://bucket/prefix")
        root = None
    if args.spool:
        spool = Path(args.spool)
    elif root:
        spool = default_spool(root)  # $RUNLAKE_SPOOL, else the URL's folder in the cache
    elif os.environ.get("RUNLAKE_SPOOL"):
        spool = Path(os.environ["RUNLAKE_SPOOL"])
    else:
        raise RootError("no spool to push: pass --spool DIR or --root s3://bucket/prefix")
    report = push(spool, root)
    emit_rows(["what", "count", "detail"], report.rows(), args.fmt)
    return 1 if report.left else 0
