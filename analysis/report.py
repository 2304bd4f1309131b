"""Batch comparison reports: everything about a set of runs in one file.

``build_report`` gathers the content as JSON-able data (curves downsampled with
``curves.downsample``, the metric table, config diff, seed groups and hyperparameter
impact when ``group_by`` is given, anomalies found now by ``anomalies.find`` (read-only,
so the report is always current), and a lineage summary). ``write_report`` renders it as
one self-contained HTML file (inline SVG charts, inline CSS, no script, no network),
Markdown, or JSON. The store is held read-only only while the data is gathered.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any, Sequence

from runlake.analysis._common import lower_is_better, rows
from runlake.analysis.charts import PALETTE, line_chart
from runlake.analysis.runs import run_labels
from runlake.schemas.errors import ConfigError

__all__ = ["build_report", "write_report"]

MAX_METRICS = 12
POINTS = 400


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _records(df) -> list[dict]:
    return [_jsonable(r) for r in df.to_dicts()]


def _default_metrics(con, run_ids: list[str]) -> list[str]:
    from runlake.analysis.roles import Roles

    keys = [r[0] for r in rows(
        con, """SELECT key FROM metrics WHERE run_id IN (SELECT unnest(?::VARCHAR[]))
                AND key NOT LIKE 'sys/%' GROUP BY key ORDER BY key""", [run_ids])]
    order = {"val_loss": 0, "train_loss": 1, "accuracy": 2, "grad_norm": 3, "lr": 4, "throughput": 5}
    roles = Roles()
    keys.sort(key=lambda k: (order.get(roles.role_of(k) or "", 6), k))
    return keys[:MAX_METRICS]


def build_report(
    db: str | Path | None,
    run_ids: Sequence[str],
    *,
    group_by: str | None = None,
    metrics: Sequence[str] | None = None,
    root: str | Path | None = None,
    points: int = POINTS,
) -> dict:
    """Gather a comparison report of ``run_ids`` as JSON-able data.

    Args:
        db: the store file (None: ``<root>/runlake.duckdb``).
        run_ids: run ids (resolve names first with ``analysis.runs.resolve_runs``).
        group_by: a config key (dotted) to aggregate runs by; adds seed groups and impact.
        metrics: metric keys (default: non-``sys/`` keys, losses first, at most 12).
        root: storage root used when ``db`` is None.
        points: points per run per curve.

    Returns:
        dict with title, generated_at, runs, metrics, primary, curves, table, best,
        config_diff, groups, impact, anomalies, lineage. Each run carries a ``label``
        (``analysis.runs.run_labels``: its name, its id where names repeat) that the
        rendered report shows for it.

    Raises:
        ConfigError: no run ids given.
        RunNotFoundError: a run id is not in the store.
    """
    from runlake.analysis import compare, lineage
    from runlake.analysis.curves import downsample
    from runlake.analysis.anomalies import find
    from runlake.store import read_store

    run_ids = list(run_ids)
    if not run_ids:
        raise ConfigError("a report needs at least one run; pass run ids or names")
    with read_store(db, root=root) as con:
        configs = compare.run_configs(con, run_ids)  # raises for unknown runs
        meta = {r[0]: r for r in rows(
            con, """SELECT run_id, name, project, group_name, status, started_at, ended_at, last_step
                    FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""", [run_ids])}
        labels = run_labels(con, run_ids)
        keys = list(metrics) if metrics else _default_metrics(con, run_ids)
        primary = next((k for k in keys if "loss" in k.lower() and "val" in k.lower()), None) \
            or next((k for k in keys if lower_is_better(k)), keys[0] if keys else None)
        found = find(con, run_ids)
        curves = {}
        for key in keys:
            ds = downsample(con, run_ids, key, points=points)
            per_run = {}
            for (rid,), part in ds.group_by(["run_id"], maintain_order=True):
                per_run[rid] = {"x": part["x"].to_list(), "y": _jsonable(part["value"].to_list())}
            marks = found.filter(found["key"] == key)
            curves[key] = {"runs": per_run, "anomalies": _records(marks.select(
                "run_id", "kind", "severity", "step_start", "step_end", "message"))}
        table = compare.metric_table(con, run_ids, keys) if keys else None
        best = {k: _jsonable(compare.best_config(con, run_ids, k)) for k in keys[:3]}
        diff = compare.config_diff(con, run_ids)
        groups, impact = {}, []
        if group_by:
            for key in keys[:3]:
                groups[key] = _records(compare.seed_groups(con, run_ids, key, by=group_by))
            if primary:
                impact = _records(compare.hparam_impact(con, run_ids, primary))
        lin = []
        leak = lineage.leakage(con, run_ids)
        for rid in run_ids:
            cov = lineage.coverage(con, rid)
            dup = lineage.duplicates_within_epoch(con, rid)
            lin.append({
                "run_id": rid,
                "coverage": _records(cov),
                "leaked_items": int(leak.filter(leak["run_id"] == rid).height),
                "leaked_examples": leak.filter(leak["run_id"] == rid)["item_id"].head(5).to_list(),
                "duplicate_items": int(dup.height),
            })
    runs = []
    for i, rid in enumerate(run_ids):
        m = meta.get(rid)
        runs.append(_jsonable({
            "run_id": rid, "name": m[1] if m else rid, "label": labels[rid], "project": m[2] if m else None,
            "group": m[3] if m else None, "status": m[4] if m else None,
            "started_at": m[5] if m else None, "ended_at": m[6] if m else None,
            "last_step": m[7] if m else None, "color": PALETTE[i % len(PALETTE)],
            "config": configs.get(rid, {}),
        }))
    return {
        "title": f"runlake report: {len(run_ids)} runs",
        "generated_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds"),
        "runs": runs,
        "metrics": keys,
        "primary": primary,
        "group_by": group_by,
        "curves": curves,
        "table": _records(table) if table is not None else [],
        "best": best,
        "config_diff": {"columns": diff.columns, "rows": [list(r) for r in diff.rows()]},
        "groups": groups,
        "impact": impact,
        "anomalies": _records(found.drop("detected_at")),
        "lineage": lin,
    }


def write_report(report: dict, path: str | Path, fmt: str = "html") -> Path:
    """Write a report built by ``build_report``.

    Args:
        report: the dict from ``build_report``.
        path: output file.
        fmt: "html" (self-contained, inline SVG), "md" or "json".

    Returns:
        The path written.

    Raises:
        ConfigError: unknown format.
    """
    from runlake.analysis._report_render import render_html, render_md

    path = Path(path)
    if fmt == "json":
        text = json.dumps(report, indent=1, default=str)
    elif fmt == "md":
        text = render_md(report)
    elif fmt == "html":
        text = render_html(report, line_chart)
    else:
        raise ConfigError(f"report format must be html, md or json; got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
