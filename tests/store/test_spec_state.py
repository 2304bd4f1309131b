"""The spec is the one home of the store's columns: ingest's in-memory state rows, the Arrow
tables ingest builds and the export list follow it."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

import pytest

from runlake.analysis.export import EXPORT_TABLES
from runlake.ingest.decode import FrameSummary
from runlake.ingest.status import RunState, StatusBook, WriterState
from runlake.store.spec import TABLES, VIEWS, arrow_schema


@pytest.mark.parametrize("state, table", [(RunState, "runs"), (WriterState, "writers")])
def test_state_dataclasses_have_the_spec_columns(state, table):
    """RunState/WriterState fields are the runs/writers columns, in order (rows are read
    positionally from ``SELECT <columns>``)."""
    assert [f.name for f in fields(state)] == TABLES[table].names


def test_status_rows_have_the_stored_schema():
    """The runs and writers rows ingest commits have the spec's stored Arrow schema; the
    writer's drop counters become JSON text."""
    book = StatusBook()
    book.observe("p", "r", "w", FrameSummary(events=3, last_ts_us=1_000_000, last_step=7,
                                             control=[]))
    book.writers[("r", "w")].dropped = {"full": 2}
    runs, writers = book.take_dirty()
    assert runs.schema == arrow_schema("runs", plain=True)
    assert writers.schema == arrow_schema("writers", plain=True)
    assert writers.column("dropped").to_pylist() == ['{"full": 2}']
    assert writers.column("last_seen_at").to_pylist() == [datetime(1970, 1, 1, 0, 0, 1)]
    assert runs.column("project").to_pylist() == ["p"]


def test_export_tables_are_the_per_run_tables_and_views():
    """Every per-run table and view can be exported; ledger, frame keys and quarantine not."""
    assert set(EXPORT_TABLES) == {t.name for t in TABLES.values() if t.per_run} | set(VIEWS)
    assert not {"ingest_ledger", "ingest_frames", "quarantine"} & set(EXPORT_TABLES)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_keys_and_sort_name_columns(name):
    """Keys and sort orders name columns of their table; every column has a one-line doc."""
    t = TABLES[name]
    assert set(t.key) <= set(t.names) and set(t.sort) <= set(t.names)
    assert all(c.doc and "\n" not in c.doc for c in t.columns) and t.doc
    assert len(set(t.names)) == len(t.names)
