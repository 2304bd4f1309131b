"""Which metric key plays which role (loss, val loss, grad norm, learning rate, ...).

Detectors do not guess from hard-coded names: they ask a :class:`Roles` object, whose glob
patterns (case-insensitive, ``fnmatch`` syntax) default to common conventions and can be
replaced by the user, e.g. ``Roles(loss=("nll*",), val=("dev/*",))``.

The rule has one home, ``runlake.schemas.metric_keys`` (the emitter's online checks use it
too and must not import the analysis package); this module re-exports it. The same rule
gives each key its direction (``lower_is_better``), used by ``compare`` to pick a "best"
value and by the detectors.
"""

from __future__ import annotations

from runlake.schemas.metric_keys import (
    DEFAULT_ROLES,
    DIRECTIONS,
    ROLE_NAMES,
    Roles,
    direction,
    lower_is_better,
)

__all__ = ["DEFAULT_ROLES", "DIRECTIONS", "ROLE_NAMES", "Roles", "direction", "lower_is_better"]
