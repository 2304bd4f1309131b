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

__all__ = [
    "CATALOG",
    "Roles",
    "align",
    "augmentation_breakdown",
    "best_config",
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
    "metric_table",
    "never_seen",
    "run_items",
    "seed_groups",
]
