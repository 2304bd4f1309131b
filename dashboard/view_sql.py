"""SQL view: a read-only console over the store, with the schema and example queries.

Queries go through ``runlake.analysis.sql.run_query``: a read-only connection with
external access disabled and the configuration locked, so the console cannot write,
attach, install extensions or read files outside the store, and with the console's time,
memory and row limits (``$RUNLAKE_SQL_TIMEOUT``, ``$RUNLAKE_SQL_MEMORY``). Refusals show as
errors. Any DuckDB type displays: :func:`display_frame` keeps plain columns typed and turns
the rest (lists, structs, maps, blobs, huge integers, UUIDs, intervals) into text.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
from typing import Any, Sequence

import polars as pl
import streamlit as st

from runlake.analysis.sql import run_query
from runlake.dashboard import data, selection
from runlake.dashboard.widgets import escape_md
from runlake.schemas.errors import RunlakeError

__all__ = ["EXAMPLES", "display_frame", "render"]

TITLE = "SQL"
EXAMPLES: dict[str, str] = {
    "Latest runs": "SELECT run_id, project, name, status, started_at, last_step\n"
                   "FROM runs ORDER BY started_at DESC LIMIT 20",
    "Last value of every metric": "SELECT run_id, key, last, min, max, points\n"
                                  "FROM metric_summary ORDER BY run_id, key",
    "Loss every 100 steps": "SELECT run_id, step, value FROM metrics\n"
                            "WHERE key = 'loss' AND step % 100 = 0 ORDER BY run_id, step",
    "Non-finite values": "SELECT run_id, key, min(step) AS first_step, count(*) AS n\n"
                         "FROM metrics WHERE NOT isfinite(value) GROUP BY ALL",
    "Critical findings": "SELECT run_id, kind, key, step_start, message, suggestion\n"
                         "FROM anomalies WHERE severity = 'critical'",
    "Items seen by several runs": "SELECT item_id, count(DISTINCT run_id) AS runs\n"
                                  "FROM data_items GROUP BY item_id HAVING runs > 1 ORDER BY runs DESC LIMIT 50",
}
MAX_ROWS = 10_000
_INT64 = (-(2**63), 2**63 - 1)
_TEXT_CHARS = 2_000
_TYPED = {bool: pl.Boolean, float: pl.Float64, str: pl.String, _dt.date: pl.Date,
          _dt.time: pl.Time}


def _text(value: Any) -> str | None:
    """One cell as display text: JSON for lists/structs/maps, ``\\xAB`` for blobs."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = "".join(f"\\x{b:02X}" for b in bytes(value)[:_TEXT_CHARS // 4])
    elif isinstance(value, (list, tuple, dict)):
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):  # keys JSON cannot hold, e.g. a map keyed by lists
            text = str(value)
    else:
        text = str(value)
    return text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS - 1] + "…"


def _column(name: str, values: list[Any]) -> pl.Series:
    kinds = {type(v) for v in values if v is not None}
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    try:
        if not kinds:
            return pl.Series(name, values, dtype=pl.String)
        if kind in _TYPED:
            return pl.Series(name, values, dtype=_TYPED[kind])
        if kind is int and all(_INT64[0] <= v <= _INT64[1] for v in values if v is not None):
            return pl.Series(name, values, dtype=pl.Int64)
        if kind is decimal.Decimal:
            return pl.Series(name, [None if v is None else float(v) for v in values],
                             dtype=pl.Float64)
        if kind is _dt.datetime and len({v.tzinfo is None for v in values if v}) == 1:
            return pl.Series(name, values)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        pass  # a value the typed column cannot hold: show the column as text
    return pl.Series(name, [_text(v) for v in values], dtype=pl.String)


def display_frame(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> pl.DataFrame:
    """Any query result as a frame that ``st.dataframe`` and ``write_csv`` accept.

    A column whose values share one plain type (bool, int64, float with NaN/Inf, text,
    date, time, timestamp) stays typed; decimals become floats; everything else (lists,
    structs, maps, blobs, integers beyond int64, UUIDs, intervals, mixed types) becomes
    text, lists and structs as JSON. Repeated column names get a ``_2``, ``_3`` suffix.
    """
    names: list[str] = []
    for column in columns:
        name, n = str(column), 1
        while name in names:
            n += 1
            name = f"{column}_{n}"
        names.append(name)
    return pl.DataFrame([_column(name, [r[i] for r in rows]) for i, name in enumerate(names)])


def _schema(db: str, token: tuple) -> None:
    cols = data.schema_columns(db, token)
    with st.expander(f"Schema ({cols['table_name'].n_unique()} tables and views)"):
        for (table,), part in cols.group_by(["table_name"], maintain_order=True):
            st.markdown(f"**{table}** — " + ", ".join(
                f"`{c}` {t.lower()}" for c, t in zip(part["column_name"], part["data_type"])))


def _pick_example() -> None:
    st.session_state["sql_text"] = EXAMPLES[st.session_state["sql_example"]]


def _from_url() -> bool:
    """``?sql=`` (checked and bounded by ``selection.runs_view_params``) loads the query
    once per link; returns whether to run it now."""
    params, notices = selection.runs_view_params()
    for notice in notices:
        st.warning(escape_md(notice), icon="⚠️")
    sql = params.get("sql")
    if sql is None or st.session_state.get("sql_from_url") == sql:
        return False
    st.session_state["sql_from_url"] = sql
    st.session_state["sql_text"] = sql
    return True


def render(db: str, token: tuple) -> None:
    """Draw the SQL view. A link ``?view=sql&sql=SELECT...`` runs its query on load, in
    the same read-only sandbox as the Run button; running a query puts it in the URL."""
    _schema(db, token)
    st.selectbox("Example queries", list(EXAMPLES), index=None, key="sql_example",
                 on_change=_pick_example, placeholder="pick an example to load it")
    linked = _from_url()
    st.session_state.setdefault("sql_text", EXAMPLES["Latest runs"])
    sql = st.text_area("Query (read-only)", key="sql_text", height=140)
    clicked = st.button("Run", type="primary", key="sql_run")
    if not (clicked or linked) and "sql_result" not in st.session_state:
        return
    if clicked or linked:
        if len(sql) <= selection.MAX_SQL_CHARS:
            st.query_params["sql"] = sql
            st.session_state["sql_from_url"] = sql
        elif "sql" in st.query_params:
            del st.query_params["sql"]
        try:
            result = run_query(db, sql, limit=MAX_ROWS)
        except RunlakeError as exc:  # refused, failed, over a limit, store busy
            st.session_state.pop("sql_result", None)
            st.error(f"Query refused: {escape_md(exc)}")
            return
        st.session_state["sql_result"] = (display_frame(result.columns, result.rows),
                                          result.truncated)
    frame, truncated = st.session_state["sql_result"]
    st.caption(f"{frame.height} row(s)" + (f" (stopped at {MAX_ROWS}; narrow the query to see "
                                           f"the rest)" if truncated else ""))
    st.dataframe(frame, hide_index=True)
    st.download_button("Download CSV", frame.write_csv(), file_name="runlake-query.csv",
                       mime="text/csv")
