"""Automatic anomaly detection over the whole store, with a suggestion for every finding.

``find`` computes findings without writing; ``detect`` computes them and replaces the
``anomalies`` rows of the analysed runs in one transaction (re-running is idempotent);
``list_anomalies`` reads what was stored. Detection is set-based: one pass of robust
bucket statistics over ``metrics`` (see ``series``), then SQL per detector over buckets and
over the few raw points inside flagged buckets — never a Python loop over points. Which
key is a loss, a gradient norm, a learning rate... is decided by :class:`Roles`.

Finding columns: run_id, kind, severity, key, step_start, step_end, value, message,
suggestion, detector, detected_at.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Sequence

import duckdb
import polars as pl

from runlake.analysis._common import frame, run_ids_list, run_scope
from runlake.analysis.catalog import CATALOG, Detector, by_name
from runlake.analysis.detectors import METRIC_DETECTORS, overfitting
from runlake.analysis.roles import Roles
from runlake.analysis.run_checks import RUN_DETECTORS
from runlake.analysis.series import SeriesTables
from runlake.schemas.errors import ConfigError
from runlake.schemas.severity import SEVERITIES, at_least, severity_order_sql

__all__ = ["CATALOG", "COLUMNS", "Detector", "Roles", "detect", "find", "list_anomalies"]

COLUMNS = ["run_id", "kind", "severity", "key", "step_start", "step_end", "value", "message",
           "suggestion", "detector", "detected_at"]
_SCHEMA = {
    "run_id": pl.Utf8, "kind": pl.Utf8, "severity": pl.Utf8, "key": pl.Utf8,
    "step_start": pl.Int64, "step_end": pl.Int64, "value": pl.Float64, "message": pl.Utf8,
    "suggestion": pl.Utf8, "detector": pl.Utf8, "detected_at": pl.Datetime("us"),
}
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
_STRIP = re.compile(r"(^|[/_.-])(train|training|val|valid|validation|eval|test)(?=$|[/_.-])")


def _stem(key: str) -> str:
    return _STRIP.sub(r"\1", key.lower()).strip("/_.-")


def _pairs(series: pl.DataFrame) -> pl.DataFrame:
    """Pair each validation loss with the training loss of the same run and closest name."""
    rows = []
    by_run: dict[str, dict[str, list[str]]] = {}
    for run_id, key, role in series.select("run_id", "key", "role").iter_rows():
        by_run.setdefault(run_id, {}).setdefault(role, []).append(key)
    for run_id, roles in by_run.items():
        trains = sorted(roles.get("train_loss", []), key=len)
        for val in roles.get("val_loss", []):
            if not trains:
                continue
            same = [t for t in trains if _stem(t) == _stem(val)]
            rows.append((run_id, val, (same or trains)[0]))
    return pl.DataFrame(rows, schema={"run_id": pl.Utf8, "val_key": pl.Utf8, "train_key": pl.Utf8},
                        orient="row")


def _families(raw: pl.DataFrame, roles: Roles) -> pl.DataFrame:
    """Findings of one detector on many members of a key family (``grad/norm/<param>``,
    with ``grad/norm`` itself) at overlapping steps become one finding on the family key
    whose note lists the members. Why: one bad step of a watched model is one problem,
    not one per tensor."""
    if raw.is_empty():
        return raw
    keys = set(raw["key"].to_list())
    fam = {k: roles.family(k) for k in keys}
    bases = {f for f in fam.values() if f is not None}
    group_of = {k: fam[k] or (k if k in bases else None) for k in keys}
    if not bases:
        return raw
    rows, pending = [], {}
    for f in raw.sort("step_start", nulls_last=True).iter_rows(named=True):
        g = group_of.get(f["key"])
        if g is None or f["step_start"] is None:
            rows.append(f)
            continue
        slot = (f["run_id"], f["detector"], g)
        open_ = pending.get(slot)
        if open_ and f["step_start"] <= open_[-1]["_end"]:
            open_.append({**f, "_end": max(open_[-1]["_end"], f["step_end"])})
        else:
            if open_:
                rows.append(_merge(open_, g))
            pending[slot] = [{**f, "_end": f["step_end"]}]
    rows += [_merge(group, slot[2]) for slot, group in pending.items()]
    return pl.DataFrame(rows, schema=raw.schema) if rows else raw.clear()


def _merge(group: list[dict], base: str) -> dict:
    members = sorted({f["key"] for f in group})
    if len(members) == 1:
        out = dict(group[0])
    else:
        own = [f for f in group if f["key"] == base]
        top = own[0] if own else max(group, key=lambda f: f["value"] if f["value"] is not None else float("-inf"))
        worst = max(group, key=lambda f: _RANK.get(f["severity"], 0))["severity"]
        parts = [m[len(base) + 1:] if m.startswith(base + "/") else m for m in members if m != base]
        shown = ", ".join(parts[:8]) + (f" and {len(parts) - 8} more" if len(parts) > 8 else "")
        note = f"Also on {len(parts)} per-parameter keys under {base}/: {shown}."
        out = {**top, "key": base, "severity": worst,
               "step_start": min(f["step_start"] for f in group),
               "step_end": max(f["step_end"] for f in group),
               "note": " ".join(n for n in (top.get("note"), note) if n)}
        if not own:  # the aggregate key itself is fine: name the family, not the aggregate
            out["key"] = f"{base}/*"
            out["note"] = f"On {len(parts)} per-parameter keys under {base}/: {shown}."
    out.pop("_end", None)
    return out


def _word(raw: pl.DataFrame, now: dt.datetime) -> pl.DataFrame:
    detectors = by_name()
    out = []
    for f in raw.iter_rows(named=True):
        d = detectors[f["detector"]]
        message = d.message(f)
        if f.get("note"):
            message = f"{message} {f['note']}"
        out.append({
            "run_id": f["run_id"], "kind": d.kind, "severity": f["severity"], "key": f["key"],
            "step_start": f["step_start"], "step_end": f["step_end"], "value": f["value"],
            "message": message, "suggestion": d.suggestion(f), "detector": d.name,
            "detected_at": now,
        })
    df = pl.DataFrame(out, schema=_SCHEMA)
    return df.with_columns(
        pl.col("severity").replace_strict(_RANK, default=0).alias("_r")
    ).sort(["run_id", "_r", "step_start"], descending=[False, True, False], nulls_last=True).drop("_r")


def find(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | str | None = None,
    *,
    roles: Roles | None = None,
    detectors: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """Run every detector (or the named ones) and return the findings; writes nothing.

    Args:
        con: an open store connection (read-only is fine: only temp tables are created).
        run_ids: the runs to analyse (None: all).
        roles: key naming patterns; default :class:`Roles()`.
        detectors: names from ``CATALOG`` to run (default all).
        now: the current UTC time for stall detection (default: now).

    Returns:
        One row per finding with ``COLUMNS``, sorted by run, severity (worst first), step.

    Raises:
        ConfigError: an unknown detector name.
    """
    ids = run_ids_list(run_ids)
    roles = roles or Roles()
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    names = set(detectors) if detectors is not None else set(by_name())
    unknown = names - set(by_name())
    if unknown:
        raise ConfigError(f"unknown detector(s) {sorted(unknown)}; known: {sorted(by_name())}")
    parts = []
    with SeriesTables(con, ids, classify=roles.classify) as st:
        for name, fn in METRIC_DETECTORS.items():
            if name in names:
                parts.append(fn(st))
        if "overfitting" in names:
            series = st.frame("SELECT run_id, key, role FROM {series}")
            parts.append(overfitting(st, _pairs(series)))
    for name, fn in RUN_DETECTORS.items():
        if name in names:
            parts.append(fn(con, ids, now))
    raw = pl.concat([p for p in parts if not p.is_empty()]) if any(not p.is_empty() for p in parts) else None
    if raw is None:
        return pl.DataFrame(schema=_SCHEMA)
    return _word(_families(raw, roles), now)


def detect(
    db: str | Path | None = None,
    run_ids: Sequence[str] | str | None = None,
    *,
    roles: Roles | None = None,
    root: str | Path | None = None,
) -> int:
    """Find anomalies and store them: the ``anomalies`` rows of those runs are replaced.

    The store is opened read-only to compute. A DuckDB file is then opened read-write only
    for the replacement (one transaction), so ingest and readers are blocked for
    milliseconds; a lake replaces the rows in one atomic Delta commit
    (:func:`runlake.store.lake.write_anomalies`) that blocks nobody.

    Args:
        db: the store (a ``.duckdb`` file, a lake folder or a ``StoreLocation``); default
            the root's (:func:`runlake.store.locate`).

    Returns:
        The number of findings stored.

    Raises:
        StoreError / StoreBusyError: the store cannot be opened.
    """
    from runlake.store import StoreLocation, locate, read_store

    location = db if isinstance(db, StoreLocation) else locate(root, db)
    ids = run_ids_list(run_ids)
    with read_store(location) as con:
        found = find(con, ids, roles=roles)
    if location.kind == "lake":
        from runlake.store.lake import write_anomalies

        write_anomalies(location, ids, found.select(COLUMNS).to_arrow())
        return found.height
    from runlake.store.duck import write_store

    with write_store(location.path) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            scope, params = run_scope(ids)
            con.execute(f"DELETE FROM anomalies WHERE {scope}", params)
            if not found.is_empty():
                con.register("_rl_found", found)
                con.execute(f"INSERT INTO anomalies ({', '.join(COLUMNS)}) "
                            f"SELECT {', '.join(COLUMNS)} FROM _rl_found")
                con.unregister("_rl_found")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return found.height


def list_anomalies(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | str | None = None,
    severity: str | None = None,
) -> pl.DataFrame:
    """Stored findings (from the last ``detect``), optionally at or above a severity.

    Args:
        con: an open store connection.
        run_ids: the runs (None: all).
        severity: the minimum severity, any case (one of ``SEVERITIES``; None: all).

    Returns:
        ``COLUMNS`` rows sorted by run, severity (worst first), step.

    Raises:
        ConfigError: unknown severity.
    """
    allowed = list(at_least(severity))
    ids = run_ids_list(run_ids)
    scope, params = run_scope(ids)
    df = frame(
        con,
        f"""SELECT {', '.join(COLUMNS)} FROM anomalies
            WHERE {scope} AND severity IN (SELECT unnest(?::VARCHAR[]))
            ORDER BY run_id, {severity_order_sql()},
                     step_start NULLS LAST, kind""",
        [*params, allowed],
    )
    return df.cast({c: t for c, t in _SCHEMA.items() if c in df.columns})
