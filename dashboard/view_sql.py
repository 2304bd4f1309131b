"""SQL view: a read-only console over the store, with the schema and example queries.

Queries go through ``runlake.analysis.sql.run_readonly``: a read-only connection with
external access disabled and the configuration locked, so the console cannot write,
attach, install extensions or read files outside the store. Refusals show as errors.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from runlake.analysis.sql import run_readonly
from runlake.dashboard import data
from runlake.schemas.errors import QueryError

__all__ = ["EXAMPLES", "render"]

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


def _schema(db: str, token: tuple) -> None:
    cols = data.schema_columns(db, token)
    with st.expander(f"Schema ({cols['table_name'].n_unique()} tables and views)"):
        for (table,), part in cols.group_by(["table_name"], maintain_order=True):
            st.markdown(f"**{table}** — " + ", ".join(
                f"`{c}` {t.lower()}" for c, t in zip(part["column_name"], part["data_type"])))


def _pick_example() -> None:
    st.session_state["sql_text"] = EXAMPLES[st.session_state["sql_example"]]


def render(db: str, token: tuple) -> None:
    """Draw the SQL view."""
    _schema(db, token)
    st.selectbox("Example queries", list(EXAMPLES), index=None, key="sql_example",
                 on_change=_pick_example, placeholder="pick an example to load it")
    st.session_state.setdefault("sql_text", EXAMPLES["Latest runs"])
    sql = st.text_area("Query (read-only)", key="sql_text", height=140)
    if not st.button("Run", type="primary", key="sql_run") and "sql_result" not in st.session_state:
        return
    if st.session_state.get("sql_run"):
        try:
            columns, rows = run_readonly(db, sql, limit=MAX_ROWS)
        except QueryError as exc:
            st.session_state.pop("sql_result", None)
            st.error(f"Query refused: {exc}")
            return
        st.session_state["sql_result"] = (columns, rows)
    columns, rows = st.session_state["sql_result"]
    frame = pl.DataFrame([list(r) for r in rows], schema=list(columns), orient="row",
                         infer_schema_length=None, strict=False) if rows else pl.DataFrame(
        {c: [] for c in columns})
    st.caption(f"{frame.height} row(s)" + (f" (capped at {MAX_ROWS})" if frame.height >= MAX_ROWS else ""))
    st.dataframe(frame, hide_index=True)
    st.download_button("Download CSV", frame.write_csv(), file_name="runlake-query.csv", mime="text/csv")
