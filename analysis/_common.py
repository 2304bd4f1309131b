"""Small helpers shared by the analysis modules: run selection, config flattening, direction.

Private: the public names live in ``anomalies``, ``compare``, ``lineage`` and ``report``.
"""

from __future__ import annotations

import json
import math
from fnmatch import fnmatchcase
from typing import Any, Iterable, Sequence

from runlake.schemas.errors import ConfigError

__all__ = [
    "LOWER_IS_BETTER",
    "flatten",
    "frame",
    "json_cell",
    "lower_is_better",
    "run_ids_list",
    "run_scope",
]

# Patterns of metric names where a smaller value is better (besides every loss).
LOWER_IS_BETTER = (
    "*loss*", "*err*", "*perplexity*", "*ppl*", "*fid*", "*mse*", "*mae*", "*rmse*",
    "*wer", "*cer", "*distance*", "*lpips*", "*nll*", "*regret*", "*latency*",
)


def frame(con, sql: str, params: Sequence[Any] | None = None):
    """Run one SELECT and return a polars DataFrame (the whole result is fetched)."""
    rel = con.sql(sql, params=list(params) if params else None)
    if rel is None:
        raise ValueError("frame() needs a SELECT statement")
    return rel.pl()


def run_ids_list(run_ids: str | Iterable[str] | None) -> list[str] | None:
    """Normalise a run id argument: None (all runs), one id, or an iterable of ids."""
    if run_ids is None:
        return None
    if isinstance(run_ids, str):
        return [run_ids]
    out = [str(r) for r in run_ids]
    return out


def run_scope(run_ids: Sequence[str] | None, column: str = "run_id") -> tuple[str, list]:
    """A SQL predicate restricting ``column`` to ``run_ids`` (TRUE for None) and its params."""
    if run_ids is None:
        return "TRUE", []
    return f"{column} IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys: ``{"opt": {"lr": 1}}`` -> ``{"opt.lr": 1}``.

    Lists stay values (compared as a whole). A JSON string is parsed first.
    """
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return {prefix or "value": config}
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def json_cell(value: Any) -> str | None:
    """A config value as a compact, comparable string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def lower_is_better(key: str, mode: str | None = None) -> bool:
    """Whether smaller values of ``key`` are better; ``mode`` ("min"/"max") overrides.

    Raises:
        ConfigError: ``mode`` is neither None, "min" nor "max".
    """
    if mode is not None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        return mode == "min"
    low = key.lower()
    return any(fnmatchcase(low, p) for p in LOWER_IS_BETTER)


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
