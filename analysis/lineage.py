"""Data lineage: which items a run or checkpoint saw, who used an item, coverage and leakage.

Answers come from the ``data_items`` table (one row per item drawn: run, rank, step, epoch,
split, item id, augmentation) joined with ``checkpoints`` and ``datasets``. A checkpoint
saved at step S "saw" every item its run consumed at a step <= S. Splits named val, valid,
validation, test, eval (any case, also as a prefix such as ``val_clean``) count as eval
splits; everything else counts as training.
"""

from __future__ import annotations

from typing import Sequence

import duckdb
import polars as pl

from runlake.analysis._common import frame, rows, run_ids_list, run_scope, scalar
from runlake.schemas.errors import ConfigError

__all__ = [
    "EVAL_SPLITS",
    "augmentation_breakdown",
    "coverage",
    "data_diff",
    "duplicates_within_epoch",
    "eval_split_sql",
    "item_runs",
    "leakage",
    "never_seen",
    "run_items",
]

EVAL_SPLITS = ("val", "valid", "validation", "test", "eval", "evaluation", "dev")


def eval_split_sql(column: str = "split") -> str:
    """SQL predicate: the split column names an evaluation split."""
    names = ", ".join(f"'{s}'" for s in EVAL_SPLITS)
    return (
        f"(lower({column}) IN ({names}) OR "
        f"regexp_matches(lower({column}), '^({'|'.join(EVAL_SPLITS)})[_/.-]'))"
    )


def _upto(con, run_id: str, upto_step: int | None, checkpoint_step: int | None) -> int | None:
    """The last step a question about ``run_id`` covers: ``upto_step``, capped at
    ``checkpoint_step`` once that is checked to be one of the run's checkpoints.

    Raises:
        ConfigError: ``checkpoint_step`` names no checkpoint of the run.
    """
    if checkpoint_step is None:
        return upto_step
    found = scalar(con, "SELECT count(*) FROM checkpoints WHERE run_id = ? AND step = ?",
                   [run_id, checkpoint_step])
    if not found:
        steps = [r[0] for r in rows(
            con, "SELECT DISTINCT step FROM checkpoints WHERE run_id = ? ORDER BY step", [run_id]
        )]
        raise ConfigError(
            f"run {run_id} has no checkpoint at step {checkpoint_step}; its checkpoints are "
            f"at steps {steps or 'none'}; pass one of those"
        )
    return checkpoint_step if upto_step is None else min(upto_step, checkpoint_step)


def run_items(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    upto_step: int | None = None,
    checkpoint_step: int | None = None,
    split: str | None = None,
) -> pl.DataFrame:
    """The items a run consumed (optionally up to a step or a checkpoint).

    Args:
        con: an open store connection.
        run_id: the run.
        upto_step: only draws at step <= this.
        checkpoint_step: the step of one of the run's checkpoints; same as ``upto_step`` but
            checked against the ``checkpoints`` table.
        split: only this split.

    Returns:
        item_id, times_seen, first_step, last_step, splits (sorted list), epochs (distinct
        count) — sorted by first_step, item_id.

    Raises:
        ConfigError: ``checkpoint_step`` names no checkpoint of the run.
    """
    upto_step = _upto(con, run_id, upto_step, checkpoint_step)
    conds, params = ["run_id = ?"], [run_id]
    if upto_step is not None:
        conds.append("step <= ?")
        params.append(upto_step)
    if split is not None:
        conds.append("split = ?")
        params.append(split)
    return frame(
        con,
        f"""SELECT item_id, count(*) AS times_seen, min(step) AS first_step,
                   max(step) AS last_step, list_sort(list_distinct(list(split))) AS splits,
                   count(DISTINCT epoch) AS epochs
            FROM data_items WHERE {' AND '.join(conds)}
            GROUP BY item_id ORDER BY first_step NULLS LAST, item_id""",
        params,
    )


def item_runs(con: duckdb.DuckDBPyConnection, item_id: str) -> pl.DataFrame:
    """Every run that consumed an item, and the checkpoints that therefore saw it.

    Returns:
        run_id, name, split, times_seen, first_step, last_step, checkpoints (list of
        {step, uri} saved at or after the first draw) — sorted by run.
    """
    return frame(
        con,
        """WITH d AS (
               SELECT run_id, split, count(*) AS times_seen, min(step) AS first_step,
                      max(step) AS last_step
               FROM data_items WHERE item_id = ? GROUP BY run_id, split),
             f AS (SELECT run_id, min(first_step) AS first_step FROM d GROUP BY run_id),
             c AS (SELECT c.run_id, list({'step': c.step, 'uri': c.uri} ORDER BY c.step) AS cks
                   FROM checkpoints c JOIN f ON c.run_id = f.run_id
                   WHERE c.step >= f.first_step AND NOT list_contains(coalesce(c.tags, []), 'deleted')
                   GROUP BY c.run_id)
           SELECT d.run_id, r.name, d.split, d.times_seen, d.first_step, d.last_step,
                  coalesce(c.cks, []) AS checkpoints
           FROM d LEFT JOIN runs r USING (run_id) LEFT JOIN c USING (run_id)
           ORDER BY d.run_id, d.split""",
        [item_id],
    )


def _dataset_size(con, run_id: str, split: str | None) -> int | None:
    sizes = dict(rows(
        con,
        """SELECT split, max(items) FROM datasets WHERE run_id = ? AND items IS NOT NULL
           GROUP BY split""",
        [run_id],
    ))
    if split in sizes:
        return sizes[split]
    if None in sizes:
        return sizes[None]
    return None


def coverage(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    dataset_size: int | None = None,
    upto_step: int | None = None,
    checkpoint_step: int | None = None,
) -> pl.DataFrame:
    """Per epoch and split: distinct items, total draws and (when known) coverage fraction.

    Args:
        con: an open store connection.
        run_id: the run.
        dataset_size: number of items in the dataset; default from the run's ``datasets``
            rows (matching split, else the row without a split).
        upto_step, checkpoint_step: only draws up to this step / this checkpoint, as in
            :func:`run_items` (what a checkpoint had seen).

    Returns:
        epoch, split, distinct_items, draws, duplicates (draws - distinct), dataset_size,
        coverage (distinct / dataset_size, null when unknown).

    Raises:
        ConfigError: ``checkpoint_step`` names no checkpoint of the run.
    """
    upto_step = _upto(con, run_id, upto_step, checkpoint_step)
    step_pred = "TRUE" if upto_step is None else "step <= ?"
    df = frame(
        con,
        f"""SELECT epoch, split, count(DISTINCT item_id) AS distinct_items, count(*) AS draws
            FROM data_items WHERE run_id = ? AND {step_pred} GROUP BY epoch, split
            ORDER BY split, epoch NULLS FIRST""",
        [run_id] if upto_step is None else [run_id, upto_step],
    )
    sizes = {
        s: (dataset_size if dataset_size is not None else _dataset_size(con, run_id, s))
        for s in df["split"].unique().to_list()
    }
    size_col = pl.Series("dataset_size", [sizes[s] for s in df["split"].to_list()], dtype=pl.Int64)
    return df.with_columns(
        (pl.col("draws") - pl.col("distinct_items")).alias("duplicates"), size_col
    ).with_columns(
        (pl.col("distinct_items") / pl.col("dataset_size")).alias("coverage")
    )


def augmentation_breakdown(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """How often each augmentation parameter value was applied in a run.

    Returns:
        split, param, value (as JSON text), draws, items (distinct), fraction (of the split's
        draws) — sorted by split, param, draws descending. Draws without augmentation appear
        as param "(none)". Parameter names are read with ``json_each``, never spliced into a
        JSON path, so any key (quotes, dots, ``$``) is counted as written.
    """
    return frame(
        con,
        """WITH d AS (SELECT split, item_id, augment FROM data_items WHERE run_id = ?),
             tot AS (SELECT split, count(*) AS n FROM d GROUP BY split),
             obj AS (SELECT * FROM d WHERE augment IS NOT NULL AND json_type(augment) = 'OBJECT'),
             vals AS (
               SELECT obj.split, obj.item_id, j.key AS param, j.value::VARCHAR AS value
               FROM obj, json_each(obj.augment) j
               UNION ALL
               SELECT split, item_id, '(none)', NULL FROM d
               WHERE augment IS NULL OR json_type(augment) <> 'OBJECT')
           SELECT v.split, v.param, v.value, count(*) AS draws,
                  count(DISTINCT v.item_id) AS items, count(*) / any_value(t.n) AS fraction
           FROM vals v JOIN tot t USING (split)
           GROUP BY v.split, v.param, v.value ORDER BY v.split, v.param, draws DESC, v.value""",
        [run_id],
    )


def leakage(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None = None,
    *,
    upto_step: int | None = None,
) -> pl.DataFrame:
    """Items that appear in both a training split and an eval split of the same run.

    Args:
        con: an open store connection.
        run_ids: the runs (None: all).
        upto_step: only draws at step <= this (what a checkpoint had seen).

    Returns:
        run_id, item_id, train_splits (list), eval_splits (list), train_draws, eval_draws,
        first_train_step, first_eval_step — sorted by run and item.
    """
    scope, params = run_scope(run_ids_list(run_ids))
    if upto_step is not None:
        scope, params = f"{scope} AND step <= ?", [*params, upto_step]
    ev = eval_split_sql()
    return frame(
        con,
        f"""WITH d AS (SELECT run_id, item_id, split, step, {ev} AS is_eval
                       FROM data_items WHERE {scope} AND split IS NOT NULL)
           SELECT run_id, item_id,
                  list_sort(list_distinct(list(split) FILTER (WHERE NOT is_eval))) AS train_splits,
                  list_sort(list_distinct(list(split) FILTER (WHERE is_eval))) AS eval_splits,
                  count(*) FILTER (WHERE NOT is_eval) AS train_draws,
                  count(*) FILTER (WHERE is_eval) AS eval_draws,
                  min(step) FILTER (WHERE NOT is_eval) AS first_train_step,
                  min(step) FILTER (WHERE is_eval) AS first_eval_step
           FROM d GROUP BY run_id, item_id
           HAVING bool_or(is_eval) AND bool_or(NOT is_eval)
           ORDER BY run_id, item_id""",
        params,
    )


def duplicates_within_epoch(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """Items drawn more than once within the same epoch and split.

    Returns:
        epoch, split, item_id, draws, steps (sorted list) — sorted by epoch, split, item.
    """
    return frame(
        con,
        """SELECT epoch, split, item_id, count(*) AS draws, list_sort(list(step)) AS steps
           FROM data_items WHERE run_id = ? AND epoch IS NOT NULL
           GROUP BY epoch, split, item_id HAVING count(*) > 1
           ORDER BY epoch, split, item_id""",
        [run_id],
    )


def never_seen(
    con: duckdb.DuckDBPyConnection, run_id: str, universe: Sequence[str] | None = None
) -> pl.DataFrame | dict:
    """Items of the dataset the run never consumed.

    Args:
        con: an open store connection.
        run_id: the run.
        universe: every item id of the dataset. Without it only counts are known (from the
            ``datasets`` table), so a dict is returned instead of item ids.

    Returns:
        With ``universe``: a DataFrame ``item_id`` of the unseen items (sorted). Without:
        ``{"dataset_size", "seen", "never_seen"}`` (never_seen None when the size is unknown).
    """
    if universe is None:
        seen = scalar(
            con,
            f"""SELECT count(DISTINCT item_id) FROM data_items
                WHERE run_id = ? AND NOT {eval_split_sql()}""",
            [run_id],
        )
        size = _dataset_size(con, run_id, "train")
        return {
            "dataset_size": size,
            "seen": seen,
            "never_seen": (size - seen) if size is not None else None,
        }
    uni = pl.DataFrame({"item_id": [str(u) for u in universe]}, schema={"item_id": pl.Utf8})
    seen_df = frame(con, "SELECT DISTINCT item_id FROM data_items WHERE run_id = ?", [run_id])
    return uni.unique().join(seen_df, on="item_id", how="anti").sort("item_id")


def data_diff(
    con: duckdb.DuckDBPyConnection, run_a: str, run_b: str, *, examples: int = 10
) -> dict:
    """Compare the items two runs consumed.

    Returns:
        {"run_a", "run_b", "only_a", "only_b", "both" (counts), "examples_only_a",
        "examples_only_b", "examples_both" (up to ``examples`` sorted ids each)}.
    """
    sides = rows(
        con,
        """WITH a AS (SELECT DISTINCT item_id FROM data_items WHERE run_id = ?),
                b AS (SELECT DISTINCT item_id FROM data_items WHERE run_id = ?),
                j AS (SELECT coalesce(a.item_id, b.item_id) AS item_id,
                             CASE WHEN a.item_id IS NULL THEN 'only_b'
                                  WHEN b.item_id IS NULL THEN 'only_a' ELSE 'both' END AS side
                      FROM a FULL OUTER JOIN b ON a.item_id = b.item_id)
           SELECT side, count(*), list_sort(list(item_id))[1:?] FROM j GROUP BY side""",
        [run_a, run_b, examples],
    )
    out = {"run_a": run_a, "run_b": run_b, "only_a": 0, "only_b": 0, "both": 0,
           "examples_only_a": [], "examples_only_b": [], "examples_both": []}
    for side, n, ex in sides:
        out[side] = n
        out[f"examples_{side}"] = ex
    return out
