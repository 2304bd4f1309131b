"""The lake read by a cluster engine (Ray Data): the visibility rule outside DuckDB.

A lake's Delta tables (:mod:`runlake.store.lake`) are readable by any Delta reader, but a
reader that only reads the tables sees too much: rows of a chunk an ingester was killed
in the middle of (``_chunk > C(app)``), and every version of a state table's rows. Every
engine must apply the same rule that :func:`runlake.store.connect`'s views apply:

* a row is visible when ``_chunk <= C(_app)``, C(app) being the highest ``chunk`` of that
  app in ``_commits`` (:func:`visibility`; an app with no complete chunk shows nothing);
* a ``state`` table (runs, writers, ingest_ledger) shows, per :attr:`Table.key`, the
  visible row with the highest ``_chunk``.

Here that rule runs as Ray Data pipelines over ``ray.data.read_delta``, each table read at
the Delta version of one snapshot (``read_snapshot``: C read before and after the tables,
the same consistency the DuckDB views get), with the snapshot's reader lease held while a
pipeline runs so vacuum keeps its files. :func:`runs_table` is the ``runs`` view;
:func:`curve` is :func:`runlake.analysis.curves.downsample` (x = step, ``minmax``) with
``points = 4 * buckets``, computed per run after a shuffle by run_id; both return exactly
what DuckDB returns on the same snapshot (tests/analysis/test_cluster_*.py). For Spark,
Databricks and Trino the same rule is SQL: :func:`visible_sql` (docs/scale-out.md).

``ray`` is imported only when a pipeline runs: ``pip install 'runlake[cluster]'``.
"""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from runlake.schemas.errors import ConfigError, StoreError
from runlake.store.spec import TABLES

__all__ = ["Visibility", "curve", "local_cluster", "read_visible", "runs_table",
           "visibility", "visible_sql"]

_HIDDEN = ("_app", "_chunk")
_CURVE_COLUMNS = ["run_id", "rank", "step", "value"]


@dataclass
class Visibility:
    """What one snapshot of a lake shows: C per app, and the Delta version of each table.

    ``chunks``: ``{app: C(app)}``; ``versions``: ``{table: Delta version}``;
    ``storage_options``: for an ``s3://`` lake, what deltalake needs to reach it.
    """

    lake: str
    chunks: dict[str, int]
    versions: dict[str, int] = field(default_factory=dict)
    storage_options: dict[str, str] | None = None
    _release: Any = field(default=None, repr=False)

    def table(self, name: str) -> str:
        """The table's path or URL (a folder of the lake)."""
        return f"{self.lake.rstrip('/')}/{name}"

    def expression(self) -> pds.Expression:
        """The rule as a pyarrow filter (pushed into the Parquet scan)."""
        expr = pds.scalar(False)
        for app, chunk in sorted(self.chunks.items()):
            expr = expr | ((pds.field("_app") == app) & (pds.field("_chunk") <= chunk))
        return expr

    def predicate(self) -> str:
        """The rule as a SQL predicate (ANSI: Spark, Databricks, Trino, DuckDB)."""
        if not self.chunks:
            return "false"
        return " OR ".join(f"(_app = {_lit(a)} AND _chunk <= {int(c)})"
                           for a, c in sorted(self.chunks.items()))

    def release(self) -> None:
        """Drop the snapshot's reader lease (vacuum may then remove its files)."""
        if self._release is not None:
            self._release()
            self._release = None


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lake_of(lake: Any) -> str:
    """A lake folder or URL from a StoreLocation (``.path``), a path or a URL string."""
    return str(getattr(lake, "path", lake))


def _storage_options(lake: str) -> dict[str, str] | None:
    from runlake.schemas.objects import is_url, storage_options  # S3 settings' one home

    return storage_options(lake) if is_url(lake) else None


def visibility(lake: Any, *, lease: bool = False) -> Visibility:
    """The visibility rule of ``lake``'s current snapshot: C per app, table versions.

    Args:
        lake: the lake folder, its ``s3://`` URL, or a StoreLocation.
        lease: leave a reader lease (vacuum keeps the snapshot's files) until
            :meth:`Visibility.release`; the pipelines here take one for their duration.

    Raises:
        StoreError: no lake there, or it is damaged or newer than this runlake.
    """
    from runlake.store._lake_read import read_snapshot  # the snapshot rule's one home

    from runlake.schemas.objects import is_url

    where = _lake_of(lake)
    snap = read_snapshot(where if is_url(where) else Path(where), lease=lease)
    return Visibility(where, dict(snap.chunks), dict(snap.versions),
                      _storage_options(where), snap.release if lease else None)


@contextmanager
def _snapshot(lake: Any) -> Iterator[Visibility]:
    vis = lake if isinstance(lake, Visibility) else visibility(lake, lease=True)
    try:
        yield vis
    finally:
        if vis is not lake:
            vis.release()


def visible_sql(name: str, vis: Visibility, source: str | None = None) -> str:
    """A portable SELECT of table ``name``'s visible rows, for engines without runlake.

    ``source`` is how the engine names the Delta table (default ``delta.`<path>```, Spark's
    path syntax). State tables keep the latest row per key with ``row_number()`` in a
    subquery (Trino has no QUALIFY). Example (Spark)::

        spark.sql(visible_sql("runs", visibility("s3://bucket/runs/runlake-lake")))
    """
    if name not in TABLES:
        raise ConfigError(f"no table {name!r} in the store (tables: {', '.join(TABLES)})")
    t = TABLES[name]
    src = source or f"delta.`{vis.table(name)}`"
    cols = ", ".join(_q(c) for c in t.names)
    if t.kind == "derived":
        return f"SELECT {cols} FROM {src}"
    where = f"SELECT * FROM {src} WHERE {vis.predicate()}"
    if t.kind == "event":
        return f"SELECT {cols} FROM ({where}) v"
    key = ", ".join(_q(k) for k in t.key)
    return (f"SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {key} "
            f"ORDER BY _chunk DESC) AS _latest FROM ({where}) v) s WHERE _latest = 1")


@contextmanager
def local_cluster(num_cpus: int = 2, *, object_store_mb: int = 256) -> Iterator[None]:
    """A private local Ray cluster on 127.0.0.1 for this process (tests, benches, a
    laptop), shut down on exit, with Ray Data's sort-based shuffle. On a real cluster call
    ``ray.init(address=...)`` instead; the functions here use whatever Ray this process
    is connected to (its shuffle strategy too)."""
    import ray
    import ray.data

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             _node_ip_address="127.0.0.1", _temp_dir=temp, log_to_driver=False,
             object_store_memory=object_store_mb * 1024 * 1024, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # tasks, not Ray's default hash-shuffle actors: a pool of actors per groupby costs
    # 10-60 s on a small machine; the sort shuffle reuses the workers (~1 s warm)
    ctx.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        yield
    finally:
        ray.shutdown()


def _partitions() -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(1, cpus)


def read_visible(vis: Visibility, name: str, *, columns: Sequence[str] | None = None,
                 where: pds.Expression | None = None):
    """A Ray Dataset of table ``name``'s visible rows at ``vis``'s version (hidden
    columns kept: state tables still hold every version; see :func:`runs_table`).
    ``where`` is ANDed into the pushed-down filter."""
    import ray.data

    if name not in vis.versions:
        raise StoreError(f"the lake {vis.lake} has no table {name!r}")
    expr = vis.expression() if TABLES[name].kind != "derived" else pds.scalar(True)
    if where is not None:
        expr = expr & where
    cols = None if columns is None else list(dict.fromkeys([*columns, *_HIDDEN]))
    return ray.data.read_delta(vis.table(name), version=vis.versions[name],
                               storage_options=vis.storage_options, columns=cols,
                               filter=expr)


def _latest(batch: pa.Table) -> pa.Table:
    """One key's group: its row of the highest chunk."""
    i = int(pc.index(batch["_chunk"], pc.max(batch["_chunk"])).as_py())
    return batch.slice(i, 1)


def runs_table(lake: Any) -> pa.Table:
    """The ``runs`` view as Ray computes it: visible rows, latest per run_id, sorted by
    run_id; columns and stored types of the spec (JSON columns are JSON text).

    Raises:
        StoreError: no lake there, or it cannot be read.
    """
    schema = pa.schema([(c.name, c.plain_arrow) for c in TABLES["runs"].columns])
    with _snapshot(lake) as vis:
        ds = read_visible(vis, "runs").groupby("run_id", num_partitions=_partitions())
        parts = ds.map_groups(_latest, batch_format="pyarrow").to_arrow_refs()
        import ray

        tables = [t for t in ray.get(parts) if t.num_rows]
    if not tables:
        return schema.empty_table()
    out = pa.concat_tables(tables, promote_options="permissive").select(schema.names)
    return out.cast(schema).sort_by("run_id")


def _bucket_points(x: np.ndarray, v: np.ndarray) -> list[tuple[float, float]]:
    """first, min, max, first non-finite and last point of one bucket (x ascending),
    distinct; DuckDB's arg_min/arg_max, ties broken by the smallest x."""
    fin = np.isfinite(v)
    picked = [(x[0], v[0])]
    if fin.any():
        fv = np.where(fin, v, np.inf)
        picked.append((x[int(np.argmin(fv))], v[int(np.argmin(fv))]))
        fv = np.where(fin, v, -np.inf)
        picked.append((x[int(np.argmax(fv))], v[int(np.argmax(fv))]))
    nf = np.flatnonzero(~fin)
    if nf.size:
        picked.append((x[nf[0]], v[nf[0]]))
    picked.append((x[-1], v[-1]))
    out, seen = [], set()
    for px, pv in picked:
        key = (float(px), "nan" if math.isnan(pv) else float(pv))  # NaN equals NaN
        if key not in seen:
            seen.add(key)
            out.append((float(px), float(pv)))
    return out


def _curve_of_run(points: int, nb: int):
    def one(batch: pa.Table) -> pa.Table:
        rank = batch["rank"].to_numpy()
        xr = batch["step"].to_numpy().astype(np.float64)
        value = batch["value"].to_numpy(zero_copy_only=False).astype(np.float64)
        # span: over every rank of the run; points: its lowest rank only
        n, x0, x1, rk = len(xr), xr.min(), xr.max(), rank.min()
        nbx = n if n <= points else nb
        keep = rank == rk
        x, v = xr[keep], value[keep]
        b = np.minimum(np.floor((x - x0) * float(nbx) / max(x1 - x0, 1e-300)), nbx - 1)
        order = np.lexsort((x, b))
        x, v, b = x[order], v[order], b[order]
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        ends = np.r_[starts[1:], len(b)]
        xs, vs = [], []
        for s, e in zip(starts, ends):
            for px, pv in _bucket_points(x[s:e], v[s:e]):
                xs.append(px)
                vs.append(pv)
        run_id = batch["run_id"][0].as_py()
        return pa.table({"run_id": pa.array([run_id] * len(xs), pa.string()),
                         "x": pa.array(xs, pa.float64()), "value": pa.array(vs, pa.float64())})
    return one


def curve(lake: Any, run_ids: Sequence[str] | None, key: str, buckets: int = 250) -> pa.Table:
    """:func:`runlake.analysis.curves.downsample` (x = step, minmax, ``points = 4 *
    buckets``) as a Ray Data pipeline: read the key's visible points (filter pushed into
    the scan), shuffle by run_id, and cut each run into buckets keeping its first, min,
    max, first non-finite and last point.

    Args:
        lake: the lake (folder, URL, StoreLocation) or a :class:`Visibility` to reuse.
        run_ids: the runs (None: every run with the key).
        key: the metric key.
        buckets: buckets per run (a run with at most ``4 * buckets`` points gets one
            bucket per point, as in downsample).

    Returns:
        run_id, x, value sorted by run_id, then x.

    Raises:
        ConfigError: ``buckets`` < 1.
        StoreError: no lake there, or it cannot be read.
    """
    if buckets < 1:
        raise ConfigError(f"buckets must be at least 1, got {buckets}")
    points = 4 * buckets
    empty = pa.schema([("run_id", pa.string()), ("x", pa.float64()), ("value", pa.float64())])
    ids = None if run_ids is None else [str(r) for r in run_ids]
    if ids is not None and not ids:
        return empty.empty_table()
    where = (pds.field("key") == key) & ~pds.field("step").is_null()
    if ids is not None:
        where = where & pds.field("run_id").isin(ids)
    with _snapshot(lake) as vis:
        ds = read_visible(vis, "metrics", columns=_CURVE_COLUMNS, where=where)
        grouped = ds.select_columns(_CURVE_COLUMNS).groupby(
            "run_id", num_partitions=_partitions())
        refs = grouped.map_groups(_curve_of_run(points, points // 4),
                                  batch_format="pyarrow").to_arrow_refs()
        import ray

        tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return empty.empty_table()
    return pa.concat_tables(tables).cast(empty).sort_by([("run_id", "ascending"),
                                                         ("x", "ascending")])

