"""``define_metric`` rules and the summary they produce, with W&B's meaning.

W&B (0.31) accepts a metric name or a name ending in one ``*`` (a prefix glob: ``"val/*"``),
and per rule a ``step_metric`` (the chart's x axis; with ``step_sync``, the default when a
step metric is given, the step metric's last value is added to a row that lacks it), a
``summary`` of comma-separated operations (``min``, ``max``, ``mean``, ``first``, ``last``,
``none``; ``copy`` is W&B's deprecated plain last value) and ``hidden``. A key's summary is
its last value, or - when a rule names operations - ``{"min": .., "max": ..}``; ``none``
leaves the key out.

Matching a key against the rules happens once per key and rule set (:meth:`Rules.rule`
caches it), never per ``log()`` call: the hot path only asks whether a key is "plain" (no
rule applies), which the run caches in a set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from runlake.wandb._errors import Error

__all__ = ["Aggregate", "Rule", "Rules", "SUMMARY_OPS"]

SUMMARY_OPS = ("min", "max", "mean", "first", "last", "none", "copy")
"""What ``define_metric(summary=)`` may name (W&B's list; ``best`` needs ``goal=``)."""


@dataclass(frozen=True)
class Rule:
    """One ``define_metric`` call, as stored in ``RunUpdate.metrics``."""

    name: str
    step_metric: str | None = None
    step_sync: bool = False
    summary: tuple[str, ...] = ()
    hidden: bool = False
    goal: str | None = None

    def as_event(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.step_metric is not None:
            out["step_metric"] = self.step_metric
            out["step_sync"] = self.step_sync
        if self.summary:
            out["summary"] = ",".join(self.summary)
        if self.goal is not None:
            out["goal"] = self.goal
        if self.hidden:
            out["hidden"] = True
        return out


def parse_rule(name: Any, step_metric: Any, step_sync: Any, summary: Any, goal: Any,
               hidden: Any, previous: Rule | None, overwrite: bool | None) -> Rule:
    """Validate one call like W&B does (same rules, one-line messages)."""
    if not isinstance(name, str) or not name:
        raise Error(f"define_metric() needs a non-empty metric name, got {name!r}")
    if "*" in (name[:-1] if name.endswith("*") else name):
        raise Error(f"define_metric({name!r}): only a trailing '*' glob is supported "
                          f"(W&B's rule too), e.g. 'val/*'")
    step_metric = getattr(step_metric, "name", step_metric)  # a Metric handle is accepted
    if step_metric is not None and not isinstance(step_metric, str):
        raise Error(f"define_metric({name!r}): step_metric must be a metric name, "
                          f"got {step_metric!r}")
    ops: tuple[str, ...] = ()
    if summary is not None:
        if not isinstance(summary, str):
            raise Error(f"define_metric({name!r}): summary must be a string like "
                              f"'min,max', got {summary!r}")
        ops = tuple(s.strip().lower() for s in summary.split(",") if s.strip())
        if goal is not None:
            goal = str(goal).lower()
            if goal not in ("minimize", "maximize"):
                raise Error(f"define_metric({name!r}): goal must be 'minimize' or "
                                  f"'maximize', got {goal!r}")
            ops = tuple(("min" if goal == "minimize" else "max") if s == "best" else s
                        for s in ops)
        bad = [s for s in ops if s not in SUMMARY_OPS]
        if bad:
            raise Error(f"define_metric({name!r}): unknown summary operation {bad[0]!r};"
                              f" expected some of {', '.join(SUMMARY_OPS)}")
    keep = previous if previous is not None and not overwrite else Rule(name)
    sm = step_metric if step_metric is not None else keep.step_metric
    sync = bool(step_sync) if step_sync is not None else (
        keep.step_sync if step_metric is None else sm is not None)
    return Rule(name=name, step_metric=sm, step_sync=sync and sm is not None,
                summary=ops if summary is not None else keep.summary,
                hidden=bool(hidden) if hidden is not None else keep.hidden,
                goal=goal if goal is not None else keep.goal)


class Rules:
    """The run's ``define_metric`` rules; ``rule(key)`` is cached per key."""

    def __init__(self) -> None:
        self.by_name: dict[str, Rule] = {}
        self._globs: list[tuple[str, Rule]] = []
        self._cache: dict[str, Rule | None] = {}

    def add(self, rule: Rule) -> None:
        self.by_name[rule.name] = rule
        self._globs = sorted(((r.name[:-1], r) for r in self.by_name.values()
                              if r.name.endswith("*")), key=lambda g: -len(g[0]))
        self._cache.clear()

    def rule(self, key: str) -> Rule | None:
        """The rule for ``key``: its own name first, else the longest matching glob."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self.by_name.get(key)
        if found is None or found.name.endswith("*"):
            found = next((r for prefix, r in self._globs if key.startswith(prefix)), None)
        if found is not None and found.step_metric == key:
            found = Rule(key, summary=found.summary, hidden=found.hidden)  # not its own x axis
        self._cache[key] = found
        return found

    def __bool__(self) -> bool:
        return bool(self.by_name)


@dataclass
class Aggregate:
    """The running summary of one key whose rule names operations."""

    ops: tuple[str, ...]
    first: float | None = None
    last: float | None = None
    lo: float = math.inf
    hi: float = -math.inf
    total: float = 0.0
    n: int = 0
    seen: bool = field(default=False)

    def add(self, value: float) -> None:
        if not self.seen:
            self.first, self.seen = value, True
        self.last = value
        if value == value and value not in (math.inf, -math.inf):  # W&B skips NaN/Inf here
            self.lo = min(self.lo, value)
            self.hi = max(self.hi, value)
            self.total += value
            self.n += 1

    def value(self) -> Any:
        """W&B's summary value: ``{"max": ..}``-style, the last value for ``copy``."""
        out: dict[str, Any] = {}
        for op in self.ops:
            if op == "min" and self.n:
                out["min"] = self.lo
            elif op == "max" and self.n:
                out["max"] = self.hi
            elif op == "mean" and self.n:
                out["mean"] = self.total / self.n
            elif op == "first":
                out["first"] = self.first
            elif op == "last":
                out["last"] = self.last
            elif op == "copy":
                return self.last
        return out
