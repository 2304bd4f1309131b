"""Analysis over the store: anomaly detection, run comparison, data lineage, reports.

Every function takes an open DuckDB connection (``runlake.store.read_store``) and
returns polars DataFrames, except ``detect``, ``build_report``/``write_report`` and the
exports, which open the store themselves. See ``docs/analysis.md``. Names load on first use
(PEP 562): ``import runlake.analysis`` costs nothing until a function is touched.
"""

from __future__ import annotations

import typing as _typing

from runlake._lazy import lazy_exports as _lazy_exports

__all__ = [
    "CATALOG",
    "Roles",
    "align",
    "augmentation_breakdown",
    "best_config",
    "build_report",
    "check_query",
    "config_diff",
    "coverage",
    "data_diff",
    "detect",
    "downsample",
    "duplicates_within_epoch",
    "ema",
    "export_tables",
    "export_tensorboard",
    "find",
    "hparam_impact",
    "item_runs",
    "leakage",
    "list_anomalies",
    "list_runs",
    "metric_table",
    "never_seen",
    "query_logs",
    "resolve_run",
    "resolve_runs",
    "run_configs",
    "run_items",
    "run_labels",
    "run_readonly",
    "seed_groups",
    "write_report",
]

_HOME = {
    "CATALOG": "runlake.analysis.anomalies",
    "Roles": "runlake.analysis.anomalies",
    "detect": "runlake.analysis.anomalies",
    "find": "runlake.analysis.anomalies",
    "list_anomalies": "runlake.analysis.anomalies",
    "align": "runlake.analysis.curves",
    "downsample": "runlake.analysis.curves",
    "ema": "runlake.analysis.curves",
    "best_config": "runlake.analysis.compare",
    "config_diff": "runlake.analysis.compare",
    "hparam_impact": "runlake.analysis.compare",
    "metric_table": "runlake.analysis.compare",
    "run_configs": "runlake.analysis.compare",
    "seed_groups": "runlake.analysis.compare",
    "augmentation_breakdown": "runlake.analysis.lineage",
    "coverage": "runlake.analysis.lineage",
    "data_diff": "runlake.analysis.lineage",
    "duplicates_within_epoch": "runlake.analysis.lineage",
    "item_runs": "runlake.analysis.lineage",
    "leakage": "runlake.analysis.lineage",
    "never_seen": "runlake.analysis.lineage",
    "run_items": "runlake.analysis.lineage",
    "query_logs": "runlake.analysis.logs",
    "list_runs": "runlake.analysis.runs",
    "resolve_run": "runlake.analysis.runs",
    "resolve_runs": "runlake.analysis.runs",
    "run_labels": "runlake.analysis.runs",
    "check_query": "runlake.analysis.sql",
    "run_readonly": "runlake.analysis.sql",
    "build_report": "runlake.analysis.report",
    "write_report": "runlake.analysis.report",
    "export_tables": "runlake.analysis.export",
    "export_tensorboard": "runlake.analysis.export",
}

if _typing.TYPE_CHECKING:
    from runlake.analysis.anomalies import CATALOG, Roles, detect, find, list_anomalies
    from runlake.analysis.curves import align, downsample, ema
    from runlake.analysis.compare import (
        best_config, config_diff, hparam_impact, metric_table, run_configs, seed_groups)
    from runlake.analysis.lineage import (
        augmentation_breakdown, coverage, data_diff, duplicates_within_epoch, item_runs, leakage,
        never_seen, run_items)
    from runlake.analysis.logs import query_logs
    from runlake.analysis.runs import list_runs, resolve_run, resolve_runs, run_labels
    from runlake.analysis.sql import check_query, run_readonly
    from runlake.analysis.report import build_report, write_report
    from runlake.analysis.export import export_tables, export_tensorboard

__getattr__, __dir__ = _lazy_exports(__name__, _HOME, globals())
