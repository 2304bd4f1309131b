"""Robust rolling statistics of every metric series, computed once per detection pass.

Detectors need, for each (run, key) series, a local level and a noise scale that adapt to
the series itself. Computing rolling medians point by point is slow on a big store, so
each run's step range is cut into at most 500 buckets (about 16 steps per bucket; runs of
64 steps or fewer get one step per bucket) and one GROUP BY pass
over ``metrics`` computes per bucket the median, quartiles, extremes and first/last point.
A second, small pass over the bucket table adds robust rolling statistics:

* ``center`` — rolling median of bucket medians (5 buckets): a Hampel-filter level;
* ``sigma`` — the larger of the rolling median of within-bucket IQR/1.349 and the rolling
  median of |Δ bucket median| / 0.954 (both estimate a point's standard deviation and are
  robust to outliers; the second works when buckets hold one point);
* ``sigma_med`` — the noise of one bucket median (sigma * 1.25 / sqrt(points));
* ``prior_min`` — the running minimum of bucket medians before this bucket;
* ``bi`` — the bucket's index among the series' buckets that hold data (1, 2, ...), so a
  sparse series (logged every 50 steps) has consecutive buckets too.

Only keys with a role the detectors use (:data:`ANALYSED_ROLES`) get buckets: an accuracy
or a score is never judged, so it costs nothing.

Detectors screen buckets first and only look at raw points inside flagged buckets, so
the whole pass costs about one scan of the metrics table. Only the lowest rank of each
run is analysed (rank 0 logs the metrics in data-parallel training).
"""

from __future__ import annotations

import uuid
from typing import Mapping, Sequence

import duckdb
import polars as pl

from runlake.analysis._common import frame, rows, run_scope

__all__ = ["ANALYSED_ROLES", "SeriesTables"]

ANALYSED_ROLES = ("train_loss", "val_loss", "grad_norm", "lr", "loss_scale", "throughput", "memory")
"""Roles some detector reads; keys of other roles (accuracy, scores, errors) are not bucketed."""


class SeriesTables:
    """Temporary tables ``series`` (one row per series) and ``buckets`` on a connection.

    Use as a context manager; the temp tables are dropped on exit. ``self.t`` maps the
    logical names ``series``, ``buckets``, ``stats`` to the unique temp table names.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        run_ids: Sequence[str] | None,
        roles: Mapping[str, str] | None = None,
        *,
        classify=None,
    ):
        self.con = con
        self.run_ids = run_ids
        self.classify = classify
        suffix = uuid.uuid4().hex[:8]
        self.t = {n: f"_rl_{n}_{suffix}" for n in ("stats", "series", "buckets", "roles", "geometry")}

    def __enter__(self) -> "SeriesTables":
        con, t = self.con, self.t
        scope, params = run_scope(self.run_ids)
        con.execute(
            f"""CREATE TEMP TABLE {t['stats']} AS
                SELECT run_id, rank, key, count(*) AS n, min(step) AS f, max(step) AS l
                FROM metrics WHERE {scope} AND step IS NOT NULL
                GROUP BY run_id, rank, key""",
            params,
        )
        keys = [r[0] for r in rows(con, f"SELECT DISTINCT key FROM {t['stats']}")]
        role_map = self.classify(keys) if self.classify else {}
        role_map = {k: r for k, r in role_map.items() if r in ANALYSED_ROLES}
        roles_df = pl.DataFrame(
            {"key": list(role_map), "role": list(role_map.values())},
            schema={"key": pl.Utf8, "role": pl.Utf8},
        )
        con.register(t["roles"] + "_v", roles_df)
        con.execute(f"CREATE TEMP TABLE {t['roles']} AS SELECT * FROM {t['roles']}_v")
        con.unregister(t["roles"] + "_v")
        # one series per (run, key): the lowest rank that logged it
        con.execute(
            f"""CREATE TEMP TABLE {t['series']} AS
                SELECT s.run_id, s.rank, s.key, r.role, s.n, s.f, s.l
                FROM {t['stats']} s JOIN {t['roles']} r USING (key)
                QUALIFY s.rank = min(s.rank) OVER (PARTITION BY s.run_id, s.key)"""
        )
        # bucket geometry per run (shared by its keys, so the big join is on run_id only):
        # about 16 steps per bucket, at most 500 and at least min(span, 64) buckets
        con.execute(
            f"""CREATE TEMP TABLE {t['geometry']} AS
                SELECT run_id, min(rank) AS rk, min(f) AS f, max(l) AS l,
                       least(500, greatest(least(max(l) - min(f) + 1, 64),
                                           (max(l) - min(f) + 1) // 16))::BIGINT AS nb
                FROM {t['series']} GROUP BY run_id"""
        )
        con.execute(
            f"""CREATE TEMP TABLE {t['buckets']} AS
            WITH raw AS (
                SELECT m.run_id, m.rank, m.key, g.nb,
                       least(floor((m.step - g.f) * g.nb / (g.l - g.f + 1)), g.nb - 1)::BIGINT AS b,
                       m.step, m.value,
                       CASE WHEN isfinite(m.value) THEN m.value END AS fv  -- faster than FILTER
                FROM metrics m JOIN {t['geometry']} g ON m.run_id = g.run_id
                WHERE m.step IS NOT NULL AND m.rank = g.rk
                  AND m.key IN (SELECT key FROM {t['roles']})),
            agg AS (
                SELECT run_id, rank, key, any_value(nb) AS nb, b,
                       count(*) AS cnt,
                       count(fv) AS nfin,
                       quantile_cont(fv, [0.25, 0.5, 0.75]) AS q,
                       min(fv) AS vmin, max(fv) AS vmax,
                       min(step) AS s0, max(step) AS s1,
                       arg_min(value, step) AS v0, arg_max(value, step) AS v1,
                       sum(CASE WHEN value <= 0 THEN 1 ELSE 0 END) AS nonpos
                FROM raw GROUP BY run_id, rank, key, b),
            base AS (
                SELECT * EXCLUDE (q), q[2] AS med, (q[3] - q[1]) / 1.349 AS iqr_sigma
                FROM agg),
            d AS (
                SELECT *, abs(med - lag(med) OVER w) AS dmed
                FROM base WINDOW w AS (PARTITION BY run_id, rank, key ORDER BY b))
            SELECT d.*, r.role,
                   row_number() OVER (PARTITION BY run_id, rank, key ORDER BY b) AS bi,
                   median(med) OVER w5 AS center,
                   greatest(median(iqr_sigma) OVER w7, coalesce(median(dmed) OVER w7, 0) / 0.954,
                            1e-12 + 1e-6 * abs(med)) AS sigma,
                   min(med) OVER (PARTITION BY run_id, rank, key ORDER BY b
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_min
            FROM d JOIN {t['roles']} r USING (key)
            WINDOW w5 AS (PARTITION BY run_id, rank, key ORDER BY b ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING),
                   w7 AS (PARTITION BY run_id, rank, key ORDER BY b ROWS BETWEEN 3 PRECEDING AND 3 FOLLOWING)"""
        )
        con.execute(
            f"""ALTER TABLE {t['buckets']} ADD COLUMN sigma_med DOUBLE;
                UPDATE {t['buckets']} SET sigma_med = sigma * 1.25 / sqrt(greatest(nfin, 1))"""
        )
        return self

    def __exit__(self, *exc) -> None:
        for name in ("buckets", "geometry", "series", "roles", "stats"):
            self.con.execute(f"DROP TABLE IF EXISTS {self.t[name]}")

    def frame(self, sql: str, params=None) -> pl.DataFrame:
        """Run a query where ``{series}``, ``{buckets}``, ``{stats}`` name the temp tables."""
        return frame(self.con, sql.format(**self.t), params)
