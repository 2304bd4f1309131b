"""The ``runlake`` command: one entry point, one module per subcommand group.

Each ``runlake/cli/_<name>.py`` module defines ``register(subparsers)`` adding its
subcommand(s) with ``set_defaults(func=...)``; ``func(args) -> int | None``. Heavy imports
(duckdb, polars, torch, streamlit) happen inside the command functions so ``runlake
--help`` stays instant. Every RunlakeError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from runlake.schemas.errors import RunlakeError

__all__ = ["build_parser", "main"]

# Order is the order of `runlake --help`.
_MODULES = (
    "_demo",
    "_ingest",
    "_compact",
    "_runs",
    "_sql",
    "_logs",
    "_schema",
    "_anomalies",
    "_compare",
    "_lineage",
    "_report",
    "_ui",
    "_transfer",
    "_push",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runlake",
        description="runlake: local-first metrics pipeline for ML training.",
        epilog="Every command finds the store from --root/--db or $RUNLAKE_DIR "
        "(default ./runlake-data/runlake.duckdb). `runlake COMMAND --help` shows an example.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        try:
            module = importlib.import_module(f"runlake.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"runlake.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RunlakeError as exc:
        print(f"runlake {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
