"""Analysis over the store: anomaly detection, run comparison, data lineage, reports.

Every function takes an open DuckDB connection (``runlake.ingest.store.read_store``) and
returns polars DataFrames, except ``detect`` and ``build_report`` which open the store
themselves. See ``docs/analysis.md``.
"""

from runlake.analysis.anomalies import CATALOG, Roles, detect, find, list_anomalies
from runlake.analysis.compare import (
    align,
    best_config,
    config_diff,
    downsample,
    ema,
    hparam_impact,
    metric_table,
    seed_groups,
)
from runlake.analysis.lineage import (
    augmentation_breakdown,
    coverage,
    data_diff,
    duplicates_within_epoch,
    item_runs,
    leakage,
    never_seen,
    run_items,
)
from runlake.analysis.runs import list_runs, resolve_run, resolve_runs
from runlake.analysis.sql import check_query, run_readonly

__all__ = [
    "CATALOG",
    "Roles",
    "align",
    "augmentation_breakdown",
    "best_config",
    "check_query",
    "config_diff",
    "coverage",
    "data_diff",
    "detect",
    "downsample",
    "duplicates_within_epoch",
    "ema",
    "find",
    "hparam_impact",
    "item_runs",
    "leakage",
    "list_anomalies",
    "list_runs",
    "metric_table",
    "never_seen",
    "resolve_run",
    "resolve_runs",
    "run_items",
    "run_readonly",
    "seed_groups",
]
