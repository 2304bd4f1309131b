"""The raw finding shape and the SQL "gaps and islands" step every detector shares.

Raw findings (one row per contiguous flagged range): ``run_id, key, detector, severity,
step_start, step_end, value, ref, note`` where ``value`` is the most extreme observed value,
``ref`` the reference it was judged against (local level, running best, baseline...) and
``note`` an optional sentence appended to the worded message.
"""

from __future__ import annotations

import polars as pl

__all__ = ["RAW_COLUMNS", "islands", "shape"]

RAW_SCHEMA = {
    "run_id": pl.Utf8, "key": pl.Utf8, "detector": pl.Utf8, "severity": pl.Utf8,
    "step_start": pl.Int64, "step_end": pl.Int64, "value": pl.Float64, "ref": pl.Float64,
    "note": pl.Utf8,
}
RAW_COLUMNS = list(RAW_SCHEMA)


def shape(df: pl.DataFrame) -> pl.DataFrame:
    """A detector's result cast to the raw schema (``note`` is optional)."""
    if df.is_empty():
        return pl.DataFrame(schema=RAW_SCHEMA)
    if "note" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias("note"))
    return df.select([pl.col(c).cast(t) for c, t in RAW_SCHEMA.items()])


def islands(flagged: str, order: str = "bi", gap: str = "1") -> str:
    """SQL adding an ``island`` id to a flagged relation (run_id, rank, key, <order>, ...):
    rows whose ``order`` is within ``gap`` of the previous one share an island."""
    return f"""
        SELECT *, sum(CASE WHEN {order} - prev > {gap} OR prev IS NULL THEN 1 ELSE 0 END)
                  OVER (PARTITION BY run_id, rank, key ORDER BY {order}) AS island
        FROM (SELECT *, lag({order}) OVER (PARTITION BY run_id, rank, key ORDER BY {order}) AS prev
              FROM ({flagged}))"""
