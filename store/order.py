"""Reading an event table in ingest order, on either store: ``runlake logs --follow``.

A follower asks for "the rows committed since the last ones I saw". The DuckDB file answers
with its row ids (rows are only ever appended, in commit order). The lake has no row ids;
its connections carry, per event table, a view :data:`ORDERED` whose ``ingest_order`` is
the chunk that committed the row (:mod:`runlake.store.lake`): a chunk becomes visible
whole, so rows with ``ingest_order`` above the highest seen are exactly the newer ones.
"""

from __future__ import annotations

import duckdb

__all__ = ["ORDERED", "in_ingest_order"]

ORDERED = "_runlake_{}_in_ingest_order"
"""The lake's view of event table ``{}`` with a leading ``ingest_order`` column."""


def in_ingest_order(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """A FROM item: ``table``'s rows with a leading ``ingest_order`` column (BIGINT) that
    increases with each commit, on a DuckDB-file or lake connection."""
    view = ORDERED.format(table)
    found = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
                        [view]).fetchall()[0][0]
    quoted = '"' + table.replace('"', '""') + '"'
    if found:
        return '"' + view.replace('"', '""') + '"'
    return f"(SELECT rowid AS ingest_order, * FROM {quoted})"
