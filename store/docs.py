"""The table reference of ``docs/store.md``, generated from the store's spec.

The tables are declared once (:mod:`runlake.store.spec`); their reference in the docs is
written from that declaration, so the two cannot drift. ``python -m runlake.store.docs``
rewrites the part of ``docs/store.md`` between :data:`BEGIN` and :data:`END` (the prose
above and below is hand-written and kept); ``--check`` changes nothing and exits 1 with a
one-line message when that part is stale, which CI runs (``tests/store/test_store_doc.py``),
as sqlite-utils does with ``cog --check``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import duckdb

from runlake.store.spec import TABLES, VIEWS, Column, Table, ddl

__all__ = ["BEGIN", "DOC", "END", "check", "main", "render", "update"]

BEGIN = "<!-- generated from runlake.store.spec: do not edit by hand -->"
END = "<!-- end generated -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "store.md"
"""``docs/store.md`` of the source tree this module is in."""

_MIGRATIONS_COLUMNS = (  # the ledger runlake.store.migrations.migrate() keeps
    ("version", "INTEGER", "the migration's number (its primary key)"),
    ("description", "VARCHAR", "what it does"),
    ("applied_at", "TIMESTAMP", "when this store ran it"),
)
_KIND = {
    "event": "Append-only.",
    "state": "One row per key, replaced as it changes.",
    "derived": "Computed from the other tables and replaced per run.",
}
_LINK = re.compile(r"(?<![\w/(\[])(?:docs/)?([\w-]+\.md)(#[\w-]+)?")


def _text(doc: str) -> str:
    """A doc line as Markdown: ``ingest.md#run-status`` becomes a link, ``|`` is escaped."""
    doc = doc.replace("|", "\\|")
    return _LINK.sub(lambda m: f"[{m[1]}]({m[1]}{m[2] or ''})", doc)


def _names(columns: tuple[str, ...]) -> str:
    return ", ".join(f"`{c}`" for c in columns)


def _table(t: Table) -> list[str]:
    out = [f"### `{t.name}` — {_text(t.doc)}", ""]
    notes = [_KIND[t.kind]]
    if t.key and t.kind == "state":
        notes.append(f"Key: {_names(t.key)} (the DuckDB file's primary key).")
    if t.sort:
        notes.append(f"The lake sorts its files by {_names(t.sort)}.")
    if t.since > 1:
        notes.append(f"Since migration {t.since}.")
    out += [" ".join(notes), "", "| column | type | meaning |", "|---|---|---|"]
    for c in t.columns:
        typ = f"`{c.duck}`" + ("" if c.nullable else " not null")
        out.append(f"| {c.name} | {typ} | {_text(c.doc)} |")
    return out + [""]


def _types() -> str:
    """The DuckDB types in use and the Arrow type each is stored as in the lake."""
    seen = dict.fromkeys(c.duck for t in TABLES.values() for c in t.columns)
    pairs = ", ".join(f"`{d}` → `{Column('x', d, '').plain_arrow}`" for d in seen)
    return (f"Types are DuckDB's; the lake stores each column with the matching Arrow type "
            f"(Parquet in Delta tables): {pairs}.")


def _view_columns() -> dict[str, list[tuple[str, str]]]:
    """Each view's output columns and DuckDB types, from an empty in-memory store."""
    con = duckdb.connect()
    try:
        for name in TABLES:
            con.execute(ddl(name))
        out = {}
        for name, (_, select) in VIEWS.items():
            con.execute(f"CREATE VIEW {name} AS {select}")
            out[name] = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
        return out
    finally:
        con.close()


def render() -> str:
    """The generated part of ``docs/store.md``, markers included."""
    out = [BEGIN, "", "## Tables", "", _types(), ""]
    for t in TABLES.values():
        out += _table(t)
    out += ["### `schema_migrations` — the migrations this store has run", "",
            "Kept by `runlake.store.migrations.migrate()` (the DuckDB file only).", "",
            "| column | type | meaning |", "|---|---|---|"]
    out += [f"| {n} | `{typ}` | {doc} |" for n, typ, doc in _MIGRATIONS_COLUMNS]
    out.append("")
    for name, columns in _view_columns().items():
        out += [f"### View `{name}`", "", _text(VIEWS[name][0][:1].upper() + VIEWS[name][0][1:])
                + ".", "", "| column | type |", "|---|---|"]
        out += [f"| {c} | `{typ}` |" for c, typ in columns]
        out.append("")
    return "\n".join(out + [END])


def update(text: str) -> str:
    """``text`` (the doc) with its generated part replaced by :func:`render`'s.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} ... {END!r} are missing")
    return text[:start] + render() + text[end + len(END):]


def check(path: Path = DOC) -> str | None:
    """None when ``path``'s generated part is fresh, else a one-line message saying why."""
    text = path.read_text(encoding="utf-8")
    try:
        fresh = update(text)
    except ValueError as exc:
        return f"{path}: {exc}"
    if fresh != text:
        return (f"{path} is stale: its table reference differs from runlake.store.spec; "
                f"run `python -m runlake.store.docs`")
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m runlake.store.docs [--check] [PATH]``: rewrite (or check) the reference."""
    parser = argparse.ArgumentParser(prog="python -m runlake.store.docs",
                                     description="Regenerate docs/store.md's table reference.")
    parser.add_argument("path", nargs="?", type=Path, default=DOC,
                        help="the doc (default: docs/store.md of this source tree)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when the doc is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problem = check(args.path)
            if problem:
                print(problem, file=sys.stderr)
                return 1
            return 0
        text = args.path.read_text(encoding="utf-8")
        fresh = update(text)
    except (OSError, ValueError) as exc:
        print(f"{args.path}: {exc}", file=sys.stderr)
        return 2
    if fresh != text:
        args.path.write_text(fresh, encoding="utf-8")
        print(f"rewrote the table reference of {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
