"""The store's tables, declared once.

Every table of the store is one :class:`Table` here: its columns (name, DuckDB type, Arrow
type, nullability, one line of doc), what a row is, and how the lake lays it out. The DuckDB
DDL (:func:`ddl`), the Arrow schemas ingest builds (:func:`arrow_schema`), the lake's Delta
schemas and ``docs/store.md``'s table reference (``python -m runlake.store.docs``) are all
generated from it. The frozen migrations (:mod:`runlake.store.migrations`) are not: a
released migration never changes, and a test checks that running all of them gives exactly
the tables declared here.

Kinds of table:

* ``event``: append-only rows decoded from segments (metrics, logs ...).
* ``state``: one row per :attr:`Table.key`, replaced as it changes (runs, writers, the
  ledger). The DuckDB file upserts; the lake appends versions and reads the latest.
* ``derived``: rows computed from the others and replaced per run (anomalies).

Adding a column: append it to the table here, add a migration that adds it, run
``python -m runlake.store.docs`` (CI fails while docs/store.md is stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from runlake.schemas.severity import SEVERITIES

__all__ = ["Column", "TABLES", "Table", "VIEWS", "arrow_schema", "ddl", "table"]

_TS = pa.timestamp("us")
_DICT = pa.dictionary(pa.int32(), pa.string())
_SEVERITY_DOC = " · ".join(SEVERITIES)

_ARROW: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),  # JSON text
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": _TS,  # UTC, microseconds
    "VARCHAR[]": pa.list_(pa.string()),
    "DOUBLE[]": pa.list_(pa.float64()),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``duck`` is the DuckDB type; the Arrow type follows from it."""

    name: str
    duck: str
    doc: str
    nullable: bool = True
    dictionary: bool = False  # ingest builds it dictionary-encoded (few distinct values)

    @property
    def arrow(self) -> pa.DataType:
        """The Arrow type ingest builds (dictionary-encoded strings where few repeat)."""
        return _DICT if self.dictionary else _ARROW[self.duck]

    @property
    def plain_arrow(self) -> pa.DataType:
        """The Arrow type as stored (a dictionary column is a plain string on disk)."""
        return _ARROW[self.duck]


@dataclass(frozen=True, slots=True)
class Table:
    """One table: its rows, columns and layout.

    ``key``: the columns identifying a row of a ``state`` table (its primary key in DuckDB).
    ``sort``: the order the lake writes and compacts its files in (curve queries prune by
    it). ``since``: the migration that created the table.
    """

    name: str
    doc: str
    kind: Literal["event", "state", "derived"]
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    sort: tuple[str, ...] = ()
    since: int = 1
    per_run: bool = field(default=True)  # has run_id rows that exports copy

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")


def _c(name: str, duck: str, doc: str, *, null: bool = True, dictionary: bool = False) -> Column:
    return Column(name, duck, doc, null, dictionary)


_STATUS = "`running` · `finished` · `failed` · `killed` · `crashed`"

_TABLE_LIST: tuple[Table, ...] = (
    Table("runs", "one row per run", "state", (
        _c("run_id", "VARCHAR", "the run id (folder name), shared by all ranks and attempts",
           null=False),
        _c("project", "VARCHAR", "from rank 0's latest `run_start`", null=False),
        _c("name", "VARCHAR", "from rank 0's latest `run_start`"),
        _c("group_name", "VARCHAR", "from rank 0's latest `run_start`"),
        _c("status", "VARCHAR", f"{_STATUS} (see ingest.md#run-status)", null=False),
        _c("started_at", "TIMESTAMP", "the first `run_start`"),
        _c("ended_at", "TIMESTAMP", "end of the last attempt (when ended)"),
        _c("last_seen_at", "TIMESTAMP", "the latest event"),
        _c("config", "JSON", "hyperparameters"),
        _c("tags", "VARCHAR[]", "tags"),
        _c("git_commit", "VARCHAR", "repository state"),
        _c("git_branch", "VARCHAR", "repository state"),
        _c("git_dirty", "BOOLEAN", "repository state"),
        _c("host", "JSON", "hostname, pid, python, torch/CUDA, GPUs, CPU, RAM"),
        _c("argv", "JSON", "the command line"),
        _c("world_size", "INTEGER", "ranks"),
        _c("attempts", "INTEGER", "number of distinct attempts (resumes + 1)"),
        _c("last_step", "BIGINT", "progress from metrics and heartbeats"),
        _c("total_steps", "BIGINT", "progress from heartbeats"),
        _c("eta_s", "DOUBLE", "estimated seconds left (while running)"),
        _c("heartbeat_s", "DOUBLE", "expected heartbeat interval"),
        _c("exit_reason", "VARCHAR", "from `run_end`"),
        _c("traceback", "VARCHAR", "from `run_end`"),
        _c("summary", "JSON", "from `run_end`"),
        _c("dropped", "BIGINT", "events the emitters counted as dropped (sum over writers)"),
    ), key=("run_id",), sort=("run_id",)),
    Table("writers", "one row per writing process (run × rank × attempt)", "state", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("writer", "VARCHAR", "the writer id (folder name)", null=False),
        _c("rank", "INTEGER", "its rank"),
        _c("attempt", "INTEGER", "its attempt (0 first)"),
        _c("hostname", "VARCHAR", "where it ran"),
        _c("pid", "INTEGER", "its process id"),
        _c("status", "VARCHAR", _STATUS, null=False),
        _c("started_at", "TIMESTAMP", "its `run_start`"),
        _c("ended_at", "TIMESTAMP", "its `run_end`"),
        _c("last_seen_at", "TIMESTAMP", "its latest event"),
        _c("last_step", "BIGINT", "its latest step"),
        _c("total_steps", "BIGINT", "from its heartbeats"),
        _c("eta_s", "DOUBLE", "from its heartbeats"),
        _c("heartbeat_s", "DOUBLE", "its heartbeat interval"),
        _c("events", "BIGINT", "events ingested"),
        _c("dropped", "JSON", "drop counters by cause"),
        _c("exit_reason", "VARCHAR", "from its `run_end`"),
    ), key=("run_id", "writer"), sort=("run_id", "writer")),
    Table("metrics", "long format, one row per scalar; system samples under `sys/` keys",
          "event", (
        _c("run_id", "VARCHAR", "the run", null=False, dictionary=True),
        _c("rank", "INTEGER", "the rank that logged it", null=False),
        _c("step", "BIGINT", "the step"),
        _c("epoch", "INTEGER", "the epoch, when given"),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("key", "VARCHAR", "the metric name", null=False, dictionary=True),
        _c("value", "DOUBLE", "the value; NaN and ±Inf kept"),
    ), sort=("run_id", "key", "step")),
    Table("data_items", "lineage, one row per item consumed", "event", (
        _c("run_id", "VARCHAR", "the run", null=False, dictionary=True),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("step", "BIGINT", "the step"),
        _c("epoch", "INTEGER", "the epoch"),
        _c("split", "VARCHAR", "train, val, test ..."),
        _c("item_id", "VARCHAR", "file, sample id or content hash", null=False),
        _c("source", "VARCHAR", "where it came from"),
        _c("dataset", "VARCHAR", "the dataset's name"),
        _c("augment", "JSON", "augmentation parameters, per item or shared by the event's items"),
        _c("cache_hit", "BOOLEAN", "served from a cache"),
        _c("load_ms", "DOUBLE", "load time"),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
    ), sort=("run_id", "step")),
    Table("datasets", "one row per dataset registered", "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("step", "BIGINT", "the step"),
        _c("name", "VARCHAR", "the dataset", null=False),
        _c("version", "VARCHAR", "its version"),
        _c("digest", "VARCHAR", "its content digest"),
        _c("items", "BIGINT", "its item count"),
        _c("source", "VARCHAR", "where it lives"),
        _c("split", "VARCHAR", "the split"),
        _c("meta", "JSON", "anything else logged"),
    ), sort=("run_id",)),
    Table("checkpoints", "one row per checkpoint saved (or deleted by retention)", "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("step", "BIGINT", "the step"),
        _c("uri", "VARCHAR", "where the file is", null=False),
        _c("bytes", "BIGINT", "its size"),
        _c("sha256", "VARCHAR", "its digest"),
        _c("metrics", "JSON", "metrics at save, as logged"),
        _c("tags", "VARCHAR[]", "best, latest ...; `deleted`: retention removed the file "
                                "(the files that still exist are `uri`s whose latest row is "
                                "not `deleted`, docs/torch.md)"),
    ), sort=("run_id",)),
    Table("samples", "one row per quality score of a generated or evaluated sample", "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("step", "BIGINT", "the step"),
        _c("name", "VARCHAR", "the sample", null=False),
        _c("uri", "VARCHAR", "where its file is"),
        _c("split", "VARCHAR", "the split"),
        _c("item_id", "VARCHAR", "the input item"),
        _c("key", "VARCHAR", "the score's name (`''` for a sample without scores)",
           null=False),
        _c("value", "DOUBLE", "the score (NULL without scores)"),
        _c("meta", "JSON", "anything else logged"),
    ), sort=("run_id", "step")),
    Table("logs", "one row per log line", "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("step", "BIGINT", "the step"),
        _c("level", "VARCHAR", "DEBUG, INFO, WARNING, ERROR, CRITICAL, or the logger's own",
           null=False),
        _c("levelno", "INTEGER", "Python's level number"),
        _c("logger", "VARCHAR", "the logger's name"),
        _c("message", "VARCHAR", "the line"),
    ), sort=("run_id", "ts")),
    Table("alerts", "one row per alert raised in the training process", "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("ts", "TIMESTAMP", "when it was raised", null=False),
        _c("step", "BIGINT", "the step"),
        _c("alert", "VARCHAR", "its kind: nonfinite, exploding, user ..."),
        _c("severity", "VARCHAR", _SEVERITY_DOC),
        _c("key", "VARCHAR", "the metric it is about"),
        _c("value", "DOUBLE", "the value that raised it"),
        _c("message", "VARCHAR", "what happened"),
        _c("suggestion", "VARCHAR", "what to try"),
        _c("source", "VARCHAR", "`online` (an emitter check) or `user`"),
    ), sort=("run_id", "ts")),
    Table("histograms", "one row per histogram: bucket counts of a key at a step", "event", (
        _c("run_id", "VARCHAR", "the run", null=False, dictionary=True),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("step", "BIGINT", "the step"),
        _c("epoch", "INTEGER", "the epoch, when given"),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("key", "VARCHAR", "the histogram's name (`grad/<param>`, `param/<param>` from "
                             "`watch()`)", null=False, dictionary=True),
        _c("edges", "DOUBLE[]", "the len(counts)+1 ascending bucket boundaries", null=False),
        _c("counts", "DOUBLE[]", "values per bucket", null=False),
        _c("min", "DOUBLE", "smallest value, when known"),
        _c("max", "DOUBLE", "largest value, when known"),
        _c("num", "DOUBLE", "number of values, when known"),
        _c("sum", "DOUBLE", "sum of the values, when known"),
        _c("sum_squares", "DOUBLE", "sum of their squares, when known"),
    ), sort=("run_id", "key", "step"), since=3),
    Table("media", "one row per image, audio clip, video, table, text or file logged",
          "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("step", "BIGINT", "the step"),
        _c("ts", "TIMESTAMP", "when it was logged", null=False),
        _c("key", "VARCHAR", "the key it was logged under", null=False),
        _c("media", "VARCHAR", "image · audio · video · table · text · file", null=False),
        _c("sha256", "VARCHAR", "the blob's SHA-256 (hex): its name and checksum", null=False),
        _c("bytes", "BIGINT", "the blob's size", null=False),
        _c("mime", "VARCHAR", "its type: image/png, audio/wav ..."),
        _c("caption", "VARCHAR", "the caption"),
        _c("name", "VARCHAR", "the original file name"),
        _c("blob", "VARCHAR", "the blob's path relative to the root "
                              "(`<project>/<run>/blobs/<sha[:2]>/<sha>`)", null=False),
        _c("meta", "JSON", "width/height, sample_rate/duration_s, columns/rows, scores ..."),
    ), sort=("run_id", "key", "step"), since=3),
    Table("updates", "one row per change to a run after its start (config, summary, tags, "
                     "notes, metric definitions); `runs` holds the merged result", "event", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("rank", "INTEGER", "the rank", null=False),
        _c("step", "BIGINT", "the step"),
        _c("ts", "TIMESTAMP", "when it was made", null=False),
        _c("config", "JSON", "config keys set"),
        _c("summary", "JSON", "summary keys set"),
        _c("tags", "VARCHAR[]", "the new tags (NULL: unchanged)"),
        _c("notes", "VARCHAR", "the new notes (NULL: unchanged)"),
        _c("metrics", "JSON", "metric definitions: name or glob -> step_metric, summary, goal"),
    ), sort=("run_id", "ts"), since=3),
    Table("anomalies", "findings of runlake.analysis.anomalies, replaced per run", "derived", (
        _c("run_id", "VARCHAR", "the run", null=False),
        _c("kind", "VARCHAR", "the finding: spike, nonfinite, plateau ...", null=False),
        _c("severity", "VARCHAR", _SEVERITY_DOC, null=False),
        _c("key", "VARCHAR", "the metric"),
        _c("step_start", "BIGINT", "first step of the finding"),
        _c("step_end", "BIGINT", "last step of the finding"),
        _c("value", "DOUBLE", "the telling value"),
        _c("message", "VARCHAR", "what was found", null=False),
        _c("suggestion", "VARCHAR", "what to try"),
        _c("detector", "VARCHAR", "which detector", null=False),
        _c("detected_at", "TIMESTAMP", "when", null=False),
    ), key=("run_id",), sort=("run_id",)),
    Table("ingest_ledger", "one row per segment: how far ingest has read it", "state", (
        _c("segment", "VARCHAR", "sealed path relative to the root", null=False),
        _c("project", "VARCHAR", "from its folder"),
        _c("run_id", "VARCHAR", "from its folder"),
        _c("writer", "VARCHAR", "from its folder"),
        _c("bytes", "BIGINT", "bytes consumed (whole frames only)", null=False),
        _c("frames", "BIGINT", "frames read", null=False),
        _c("events", "BIGINT", "events loaded", null=False),
        _c("sealed", "BOOLEAN", "the segment was sealed when last read", null=False),
        _c("status", "VARCHAR", "`live` · `done` · `damaged` · `skipped` (a link, FIFO, "
                                "device or folder in a segment's place, not read)", null=False),
        _c("error", "VARCHAR", "its first problem"),
        _c("updated_at", "TIMESTAMP", "last change", null=False),
        _c("seq_lo", "BIGINT", "lowest seq identifying its loaded frames (migration 2; NULL "
                               "for rows from before it until they are made known)"),
        _c("seq_hi", "BIGINT", "highest such seq"),
    ), key=("segment",), sort=("segment",), per_run=False),
    Table("ingest_frames", "one row per loaded frame: copies of it are not loaded again",
          "event", (
        _c("run_id", "VARCHAR", "from the run folder (= the events' run_id)", null=False),
        _c("writer", "VARCHAR", "from the writer folder (= the events' writer)", null=False),
        _c("seq", "BIGINT", "seq of one event of the frame (unique per writer)", null=False),
        _c("checksum", "BIGINT", "the frame's zstd content checksum", null=False),
        _c("segment", "VARCHAR", "where it was loaded from", null=False),
        _c("byte_offset", "BIGINT", "where in it", null=False),
    ), sort=("run_id", "writer", "seq"), since=2, per_run=False),
    Table("quarantine", "what could not be loaded, and why", "event", (
        _c("segment", "VARCHAR", "the file", null=False),
        _c("byte_offset", "BIGINT", "where in it", null=False),
        _c("byte_length", "BIGINT", "how many bytes"),
        _c("line_no", "INTEGER", "line within the frame (1-based), for bad lines"),
        _c("reason", "VARCHAR", "why", null=False),
        _c("excerpt", "VARCHAR", "the line's start, or the bytes in hex"),
        _c("detected_at", "TIMESTAMP", "when", null=False),
    ), sort=("segment",), per_run=False),
)

TABLES: dict[str, Table] = {t.name: t for t in _TABLE_LIST}
"""Every store table by name, in the order the docs list them."""

VIEWS: dict[str, tuple[str, str]] = {
    "metric_summary": (
        "per run and key: points, first_step, last_step, last (value at the last step), "
        "min, max (finite values only), nonfinite (count of NaN/Inf)",
        """SELECT run_id, key,
               count(*)                          AS points,
               min(step)                         AS first_step,
               max(step)                         AS last_step,
               arg_max(value, step)              AS last,
               min(value) FILTER (WHERE isfinite(value)) AS min,
               max(value) FILTER (WHERE isfinite(value)) AS max,
               count(*) FILTER (WHERE NOT isfinite(value)) AS nonfinite
        FROM metrics GROUP BY run_id, key""",
    ),
}
"""``name -> (doc, SELECT)``: views both backends create over the tables."""


def table(name: str) -> Table:
    """The table called ``name``; KeyError naming the known ones otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no store table {name!r}; tables: {', '.join(TABLES)}") from None


def arrow_schema(name: str, *, plain: bool = False) -> pa.Schema:
    """The Arrow schema of table ``name``: as ingest builds it, or ``plain`` as stored."""
    t = table(name)
    return pa.schema([pa.field(c.name, c.plain_arrow if plain else c.arrow, c.nullable)
                      for c in t.columns])


def ddl(name: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for table ``name`` (the DuckDB file's layout)."""
    t = table(name)
    lines = [f"    {c.name} {c.duck}{'' if c.nullable else ' NOT NULL'}" for c in t.columns]
    if t.kind == "state" and t.key:
        if len(t.key) == 1:
            i = t.names.index(t.key[0])
            lines[i] += " PRIMARY KEY"
        else:
            lines.append(f"    PRIMARY KEY ({', '.join(t.key)})")
    return f"CREATE TABLE IF NOT EXISTS {t.name} (\n" + ",\n".join(lines) + "\n)"
