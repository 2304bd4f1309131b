"""Options and output shared by every subcommand: store location, RUN arguments, formats."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from runlake.schemas.segments import resolve_root
from runlake.store.location import locate

__all__ = ["add_format_args", "add_store_args", "emit_rows", "store_paths", "subcommand"]


def subcommand(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """Add a subparser whose --help ends with an example."""
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="storage root (default $RUNLAKE_DIR or ./runlake-data)")
    parser.add_argument("--db", help="store file (default <root>/runlake.duckdb)")


def store_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(root, store path) from --root/--db/$RUNLAKE_DIR (and ``args.kind``, the store kind
    flag, where the command has one), by :func:`runlake.store.locate`."""
    root = resolve_root(getattr(args, "root", None))
    db = locate(root, getattr(args, "db", None) or None, getattr(args, "kind", None)).path
    return root, db


def add_format_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    group.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    parser.set_defaults(fmt="table")


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _csv_cell(value: Any) -> Any:
    """A CSV field: empty for None, JSON for lists, dicts and tuples (what another tool can
    parse back; Python's repr, ``['a', 'b']``, is not JSON), the value itself otherwise."""
    if value is None:
        return ""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, default=str)
    return value


def emit_rows(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out=None
) -> None:
    """Print rows as an aligned table (default), JSON (list of objects) or CSV."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump([dict(zip(columns, r)) for r in rows], out, default=str, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([[_csv_cell(v) for v in r] for r in rows])
        return
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    if not rows:
        out.write("(no rows)\n")
