"""Severities of alerts and findings: the one ordered list, and the helpers that use its order.

Three levels, least severe first: ``info`` < ``warning`` < ``critical``. The emitter's
alerts, the analysis detectors, ``runlake anomalies --severity``, the dashboard's filters
and colours, reports and every SQL ordering by severity take them from here, so a level
added or renamed here reaches all of them (a code-scan test keeps the names from being
listed anywhere else). It lives in ``schemas`` because the emitter needs it and must not
import ``analysis``.
"""

from __future__ import annotations

from typing import Literal, Mapping, get_args

from runlake.schemas.errors import ConfigError

__all__ = [
    "FOREIGN_LEVELS",
    "SEVERITIES",
    "Severity",
    "at_least",
    "by_severity",
    "parse_severity",
    "severity_from_level",
    "severity_order_sql",
    "severity_rank",
]

Severity = Literal["info", "warning", "critical"]
"""The type of a severity field (the event schema's ``Alert.severity``)."""

SEVERITIES: tuple[str, ...] = get_args(Severity)
"""Every severity, least severe first (rank = position)."""

_RANK = {name: i for i, name in enumerate(SEVERITIES)}

FOREIGN_LEVELS: Mapping[str, str] = {
    "info": SEVERITIES[0], "warn": SEVERITIES[1], "warning": SEVERITIES[1],
    "error": SEVERITIES[2], "critical": SEVERITIES[2], "fatal": SEVERITIES[2],
}
"""Alert levels of other trackers (W&B's ``AlertLevel`` INFO/WARN/ERROR, trackio's
info/warn/error), lowercased, -> runlake's severity: what the W&B surface and the importers
map through."""


def severity_from_level(level: object, default: str | None = SEVERITIES[1]) -> str | None:
    """runlake's severity for another tracker's alert level (case-insensitive, an enum's
    ``.value`` read), or ``default`` for a level it does not know."""
    name = getattr(level, "value", level)
    return FOREIGN_LEVELS.get(str(name).strip().lower(), default)


def severity_rank(name: str) -> int:
    """Position of ``name`` in :data:`SEVERITIES` (0 = least severe).

    Raises:
        ConfigError: ``name`` is no severity (the message lists the valid ones).
    """
    try:
        return _RANK[name]
    except (KeyError, TypeError):
        raise ConfigError(f"severity must be one of {', '.join(SEVERITIES)}; got {name!r}") from None


def parse_severity(value: str, what: str = "severity") -> str:
    """The canonical severity for ``value``, case-insensitively (``"WARNING"`` -> ``"warning"``).

    Raises:
        ConfigError: not a severity; the message names ``what`` and lists the valid ones.
    """
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in _RANK:
        raise ConfigError(f"{what} must be one of {', '.join(SEVERITIES)}; got {value!r}")
    return name


def at_least(minimum: str | None) -> tuple[str, ...]:
    """The severities at or above ``minimum`` (all of them for None), least severe first.

    >>> at_least("warning")
    ('warning', 'critical')
    """
    if minimum is None:
        return SEVERITIES
    return SEVERITIES[severity_rank(parse_severity(minimum)):]


def by_severity(values: Mapping[str, str] | tuple | list) -> dict[str, str]:
    """A per-severity table (colours, labels) checked against :data:`SEVERITIES`.

    ``values`` is one entry per severity in :data:`SEVERITIES` order (a sequence), or a
    mapping that must have exactly the severities as keys. Checking at import time means a
    severity added here fails loudly where a palette lacks it.

    Raises:
        ValueError: a severity missing, or one too many.
    """
    if isinstance(values, Mapping):
        if set(values) != set(SEVERITIES):
            raise ValueError(f"need one entry per severity {SEVERITIES}, got {sorted(values)}")
        return {s: values[s] for s in SEVERITIES}
    if len(values) != len(SEVERITIES):
        raise ValueError(f"need one entry per severity {SEVERITIES}, got {len(values)}: {values!r}")
    return dict(zip(SEVERITIES, values))


def severity_order_sql(column: str = "severity", *, worst_first: bool = True) -> str:
    """A SQL expression ranking ``column`` by severity, for ``ORDER BY``.

    ``worst_first`` ranks critical 0 (the usual listing order); unknown values sort last.

    >>> severity_order_sql()
    "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END"
    """
    names = reversed(SEVERITIES) if worst_first else SEVERITIES
    whens = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(names))
    return f"CASE {column} {whens} ELSE {len(SEVERITIES)} END"
