"""Run and writer status: what each writer last said, and what that makes of its run.

Every writing process (one per rank and attempt) is a row of ``writers``; its run_start,
heartbeats, run_end and the timestamps of all its events update that row. The ``runs`` row
is derived from the run's writers plus the run-level metadata of rank 0's latest
run_start.

A writer's own status is its run_end's (``finished``/``failed``/``killed``) or, without one,
decided by one liveness rule (:meth:`StatusBook.writer_status`): ``crashed`` once it has been
silent for longer than stale_after (default per writer: 3 x its heartbeat interval + 5 s) or
once a later attempt of its run started after its last event (a killed process that was
resumed), else ``running``. The rule keeps being applied to a writer still ``running`` after
its run ended (a pass loads such runs too), so no writer stays ``running`` forever.

The run's status is derived from its writers (only the latest attempt's writers count, so a
resumed run is running again):

* any writer failed                          -> ``failed``
* every writer ended                         -> ``finished`` (``killed`` if one was killed)
* a writer crashed                           -> ``crashed``
* otherwise                                  -> ``running``

Run updates (``update`` events: W&B's ``config.update``, ``summary``) are merged into the
run in the order ingest sees them (per writer: event order): ``config`` key by key over
rank 0's latest run_start config (a later run_start, a resume, gets the updates merged
again, stored ones included), ``summary`` key by key with ``run_end.summary`` on top, and
``tags`` replaced by the latest update that sets them. Notes and metric definitions stay in
the ``updates`` table. An update ingested after its run's ``run_end`` in a later pass (only
another rank's can be) is merged over that run_end's summary keys.

The state lives in memory during a pass (loaded from the store for the runs the pass
touches and for every run not yet ended) and is written back inside the same transaction
as the rows that changed it, so it is exactly as durable as the data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pyarrow as pa

from runlake.ingest.decode import FrameSummary, ts_us
from runlake.schemas import events as E
from runlake.store.spec import TABLES, arrow_schema

__all__ = ["RunState", "StatusBook", "TERMINAL", "WriterState"]

TERMINAL = ("finished", "failed", "killed")


@dataclass(slots=True)
class WriterState:
    run_id: str
    writer: str
    rank: int | None = None
    attempt: int | None = None
    hostname: str | None = None
    pid: int | None = None
    status: str = "running"
    started_at: int | None = None  # all timestamps: int microseconds UTC
    ended_at: int | None = None
    last_seen_at: int | None = None
    last_step: int | None = None
    total_steps: int | None = None
    eta_s: float | None = None
    heartbeat_s: float | None = None
    events: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    exit_reason: str | None = None

    def ended(self) -> bool:
        return self.status in TERMINAL


@dataclass(slots=True)
class RunState:
    run_id: str
    project: str
    name: str | None = None
    group_name: str | None = None
    status: str = "running"
    started_at: int | None = None
    ended_at: int | None = None
    last_seen_at: int | None = None
    config: str | None = None  # JSON columns are kept as JSON text
    tags: list[str] | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    host: str | None = None
    argv: str | None = None
    world_size: int | None = None
    attempts: int | None = None
    last_step: int | None = None
    total_steps: int | None = None
    eta_s: float | None = None
    heartbeat_s: float | None = None
    exit_reason: str | None = None
    traceback: str | None = None
    summary: str | None = None
    dropped: int | None = None


_W_FIELDS = TABLES["writers"].names  # the dataclasses' fields, in this order (a test checks)
_R_FIELDS = TABLES["runs"].names
_TS_COLS = ("started_at", "ended_at", "last_seen_at")


def _select(columns: list[str]) -> str:
    return ", ".join(f"epoch_us({c})" if c in _TS_COLS else c for c in columns)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _loads(text: str | None) -> dict[str, Any]:
    """A JSON column's object (``{}`` for NULL or a value that is not an object)."""
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


class StatusBook:
    """In-memory writers and runs for one pass; tracks which rows changed."""

    def __init__(self, stale_after: float | None = None) -> None:
        self.stale_after = stale_after
        self.writers: dict[tuple[str, str], WriterState] = {}
        self.runs: dict[str, RunState] = {}
        self._by_run: dict[str, dict[str, WriterState]] = {}  # run_id -> writer -> state
        self._dirty: set[str] = set()
        # per run, its updates' (config, tags) in order (stored ones loaded first): what a
        # rank-0 run_start replacing the config merges again; and run_end summaries seen
        self._updates: dict[str, list[tuple[dict[str, Any], list[str] | None]]] = {}
        self._end_summary: dict[str, dict[str, Any]] = {}
        # runs :meth:`refresh` re-derives: touched since the last refresh, or with a writer
        # not ended (its liveness depends on the clock); the others cannot change
        self._pending: set[str] = set()

    # -- loading ---------------------------------------------------------------------
    def load(self, con, run_ids: set[str], owns=None) -> None:
        """Load the given runs, every run not yet ended and every run with a writer still
        ``running`` (its liveness is still to be decided), with their writers. ``owns``
        (sharded ingest): only runs it accepts, so a shard never marks another shard's
        writer crashed (each run's rows have one owner)."""
        # the wanted ids as one list parameter (one row per id cost ~0.3 ms each)
        where = (f"run_id IN (SELECT unnest(?::VARCHAR[])) OR run_id IN (SELECT run_id FROM "
                 f"runs WHERE status NOT IN {TERMINAL}) OR run_id IN (SELECT run_id FROM "
                 f"writers WHERE status = 'running')")
        want = [sorted(run_ids)]
        for row in con.execute(f"SELECT {_select(_R_FIELDS)} FROM runs WHERE {where}",
                               want).fetchall():
            state = RunState(*row)
            if owns is not None and not owns(state.run_id):
                continue
            self.runs[state.run_id] = state
            self._pending.add(state.run_id)
        for row in con.execute(f"SELECT {_select(_W_FIELDS)} FROM writers WHERE {where}",
                               want).fetchall():
            state = WriterState(*row)
            if owns is not None and not owns(state.run_id):
                continue
            state.dropped = json.loads(state.dropped) if state.dropped else {}
            self._add_writer(state)
        if self.runs:
            self._load_updates(con, sorted(self.runs))

    def _load_updates(self, con, run_ids: list[str]) -> None:
        """The stored updates' config and tags of the loaded runs, in order."""
        rows = con.execute(
            "SELECT run_id, config, tags FROM updates WHERE run_id IN (SELECT unnest(?::VARCHAR[]))"
            " AND (config IS NOT NULL OR tags IS NOT NULL) ORDER BY run_id, ts, rank",
            [run_ids]).fetchall()
        for run_id, config, tags in rows:
            self._updates.setdefault(run_id, []).append((_loads(config), tags))

    def _add_writer(self, w: WriterState) -> WriterState:
        self.writers[(w.run_id, w.writer)] = w
        self._by_run.setdefault(w.run_id, {})[w.writer] = w
        self._pending.add(w.run_id)
        return w

    # -- updating --------------------------------------------------------------------
    def observe(self, project: str, run_id: str, writer: str, summary: FrameSummary) -> None:
        """Apply one frame's liveness, progress and control events to its writer and run."""
        w = self.writers.get((run_id, writer))
        if w is None:
            w = self._add_writer(WriterState(run_id, writer))
        if run_id not in self.runs:
            self.runs[run_id] = RunState(run_id, project)
        w.events += summary.events
        if summary.last_ts_us is not None and (w.last_seen_at or 0) < summary.last_ts_us:
            w.last_seen_at = summary.last_ts_us
        if summary.last_step is not None:
            w.last_step = max(w.last_step or summary.last_step, summary.last_step)
        if not w.ended():
            w.status = "running"  # new bytes from a writer thought crashed: alive again
        for ev in summary.control:
            cls = ev.__class__
            if cls is E.RunStart:
                self._run_start(w, ev)
            elif cls is E.Heartbeat:
                if ev.step is not None:
                    w.last_step = max(w.last_step or ev.step, ev.step)
                w.total_steps = ev.total_steps if ev.total_steps is not None else w.total_steps
                w.eta_s = ev.eta_s
                w.heartbeat_s = ev.interval_s
                w.dropped = dict(ev.dropped) or w.dropped
            elif cls is E.RunEnd:
                self._run_end(w, ev)
            elif cls is E.RunUpdate:
                self._update(w, ev)
        self._dirty.add(run_id)
        self._pending.add(run_id)

    def _run_start(self, w: WriterState, ev: E.RunStart) -> None:
        w.rank, w.attempt = ev.rank, ev.attempt
        w.started_at = ts_us(ev.ts)
        w.heartbeat_s = ev.heartbeat_s
        w.total_steps = ev.total_steps
        if ev.host is not None:
            w.hostname, w.pid = ev.host.hostname or None, ev.host.pid or None
        run = self.runs[w.run_id]
        latest = max((x.attempt or 0 for x in self._writers_of(w.run_id)), default=0)
        if run.name is None or (ev.rank == 0 and ev.attempt >= latest):
            run.project, run.name, run.group_name = ev.project, ev.name, ev.group
            config, tags = dict(ev.config), list(ev.tags)
            for upd_config, upd_tags in self._updates.get(w.run_id, ()):  # updates stay merged
                config.update(upd_config)
                tags = upd_tags if upd_tags is not None else tags
            run.config, run.tags, run.argv = _json(config), tags, _json(ev.argv)
            run.world_size = ev.world_size
            run.host = _json(msgspec.to_builtins(ev.host)) if ev.host else None
            if ev.git is not None:
                run.git_commit, run.git_branch, run.git_dirty = (
                    ev.git.commit, ev.git.branch, ev.git.dirty)

    def _run_end(self, w: WriterState, ev: E.RunEnd) -> None:
        w.status = ev.status
        w.ended_at = ts_us(ev.ts)
        w.exit_reason = ev.exit_reason
        w.dropped = dict(ev.dropped) or w.dropped
        if ev.step is not None:
            w.last_step = max(w.last_step or ev.step, ev.step)
        run = self.runs[w.run_id]
        if ev.status == "failed" or ev.rank == 0 or run.exit_reason is None:
            if ev.exit_reason is not None:
                run.exit_reason = ev.exit_reason
            if ev.traceback is not None:
                run.traceback = ev.traceback
        if ev.summary and (ev.rank == 0 or run.summary is None):
            self._end_summary[w.run_id] = dict(ev.summary)
            run.summary = _json({**_loads(run.summary), **ev.summary})

    def _update(self, w: WriterState, ev: E.RunUpdate) -> None:
        """Merge an update into its run (:mod:`module docstring <runlake.ingest.status>`)."""
        run = self.runs[w.run_id]
        self._updates.setdefault(w.run_id, []).append((dict(ev.config), ev.tags))
        if ev.config:
            run.config = _json({**_loads(run.config), **ev.config})
        if ev.summary:  # run_end.summary (seen this pass) stays on top
            run.summary = _json({**_loads(run.summary), **ev.summary,
                                 **self._end_summary.get(w.run_id, {})})
        if ev.tags is not None:
            run.tags = list(ev.tags)

    def _writers_of(self, run_id: str) -> list[WriterState]:
        return list(self._by_run.get(run_id, {}).values())

    # -- status ----------------------------------------------------------------------
    def _stale_limit_us(self, w: WriterState) -> int:
        if self.stale_after is not None:
            return int(self.stale_after * 1e6)
        return int((3 * (w.heartbeat_s or 30.0) + 5.0) * 1e6)

    def writer_status(self, w: WriterState, run_writers: list[WriterState], now_us: int) -> str:
        """The liveness rule for a writer without run_end: ``crashed`` or ``running``.

        Crashed when silent past its stale limit, or when a later attempt of the same run
        started after the writer's last event (the process was killed and resumed; it is
        not coming back). New bytes from it make it ``running`` again (see :meth:`observe`).
        """
        seen = w.last_seen_at or w.started_at or 0
        if now_us - seen > self._stale_limit_us(w):
            return "crashed"
        attempt = w.attempt or 0
        if any((x.attempt or 0) > attempt and x.started_at is not None and x.started_at >= seen
               for x in run_writers):
            return "crashed"
        return "running"

    def refresh(self, now_us: int | None = None) -> None:
        """Recompute the fields and status of every loaded run that can have changed (touched
        since the last refresh, or with a writer not ended); mark the runs that changed.

        A run whose writers have all ended and that saw no new event derives the same
        fields again, so it is skipped: a pass over many finished runs costs nothing per
        run and chunk.
        """
        now_us = now_us if now_us is not None else time.time_ns() // 1000
        pending, self._pending = self._pending, set()
        for run_id in pending:
            run = self.runs.get(run_id)
            if run is None:
                continue
            writers = self._writers_of(run_id)
            before = (run.status, run.ended_at, [w.status for w in writers])
            live = False
            for w in writers:
                if not w.ended():
                    w.status = self.writer_status(w, writers, now_us)
                    live = True
            self._derive(run, writers)
            if (run.status, run.ended_at, [w.status for w in writers]) != before:
                self._dirty.add(run_id)
            if live:
                self._pending.add(run_id)  # liveness is decided again at the next refresh

    def _derive(self, run: RunState, writers: list[WriterState]) -> None:
        if not writers:
            return
        latest = max(w.attempt or 0 for w in writers)
        current = [w for w in writers if (w.attempt or 0) == latest]
        run.attempts = len({w.attempt or 0 for w in writers})
        run.started_at = min((w.started_at for w in writers if w.started_at), default=None)
        run.last_seen_at = max((w.last_seen_at for w in writers if w.last_seen_at), default=None)
        run.last_step = max((w.last_step for w in writers if w.last_step is not None),
                            default=None)
        run.total_steps = max((w.total_steps for w in writers if w.total_steps is not None),
                              default=None)
        run.heartbeat_s = max((w.heartbeat_s for w in writers if w.heartbeat_s), default=None)
        freshest = max(current, key=lambda w: w.last_seen_at or 0)
        run.eta_s = freshest.eta_s
        run.dropped = sum(sum(w.dropped.values()) for w in writers)
        statuses = {w.status for w in current}
        if "failed" in statuses:
            run.status = "failed"
        elif statuses <= set(TERMINAL):
            run.status = "killed" if "killed" in statuses else "finished"
        elif "crashed" in statuses:
            run.status = "crashed"
        else:
            run.status = "running"
        if run.status in TERMINAL:
            run.ended_at = max((w.ended_at for w in current if w.ended_at), default=None)
            run.eta_s = None
        else:
            run.ended_at = None

    # -- writing ---------------------------------------------------------------------
    def take_dirty(self) -> tuple[pa.Table | None, pa.Table | None]:
        """Arrow tables of the changed runs and their writers (snapshots), then clear."""
        if not self._dirty:
            return None, None
        dirty, self._dirty = self._dirty, set()
        order = sorted(dirty)
        runs = [self.runs[r] for r in order]
        writers = [w for r in order for _, w in sorted(self._by_run.get(r, {}).items())]
        return _table(runs, "runs"), _table(writers, "writers")

    def statuses(self) -> dict[str, str]:
        return {r: s.status for r, s in self.runs.items()}


def _table(rows: list, table: str) -> pa.Table:
    """``rows`` (states) as an Arrow table of the spec's stored schema for ``table``."""
    schema = arrow_schema(table, plain=True)
    cols = []
    for f in schema:
        values = [getattr(r, f.name) for r in rows]
        if TABLES[table].column(f.name).duck == "JSON":  # JSON text; a dict (dropped) encoded
            values = [v if v is None or isinstance(v, str) else _json(v) for v in values]
        cols.append(pa.array(values, f.type))  # timestamps: int microseconds
    return pa.Table.from_arrays(cols, schema=schema)
