"""The dashboard's one colour palette: distinct hues a colour-blind reader can tell apart,
assigned stably by run id (or group label).

Why: Altair's default category scheme gave 50 runs pairs of similar hue (dark/light blue,
red/pink). The palette here is Okabe & Ito's colours (safe under the common colour vision
deficiencies; their black is left out, it is the colour of the marks drawn on curves:
checkpoints, resumes) extended with seven of Paul Tol's "muted" scheme that stay distinct
from them, so up to 14 curves get 14 hues.

Up to 7 names take Okabe & Ito's colours in order of distinctness, by sorted name (blue,
orange, green, purple, vermillion, ...: the first few never look alike); more use all 14.

Stability (more than 7 names): a colour depends on the name, not on where it sits in the selection:
its preferred slot is a hash of the name; when two shown names want the same slot, the
one whose hash comes first keeps it and the other takes the next free slot. Adding a run
to a selection therefore moves at most the runs that collided with it. More than 14 names
reuse hues (the view suggests grouping then).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

__all__ = ["FEW", "OKABE_ITO", "PALETTE", "colors"]

PALETTE: tuple[str, ...] = (
    # Okabe-Ito
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
    # Paul Tol, muted (the ones distinct from the above)
    "#332288", "#882255", "#999933", "#44AA99", "#AA4499", "#CC6677", "#DDCC77",
)
"""Qualitative colours, most distinct first."""

OKABE_ITO = 7
"""The first colours of :data:`PALETTE` (Okabe & Ito's): up to this many names use only
them."""

FEW: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#F0E442",
                        "#56B4E9")
"""Okabe-Ito's colours in the order a few names take them: blue, orange, green, reddish
purple, vermillion, yellow, sky blue (sky blue last: it reads as a lighter blue)."""


def _slot(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")


def colors(names: Iterable[str]) -> dict[str, str]:
    """name → colour for every name (duplicates once); see the module docstring."""
    unique = list(dict.fromkeys(str(n) for n in names))
    if len(unique) <= OKABE_ITO:
        # a few names: Okabe-Ito's colours in order of distinctness, by sorted name (hashed
        # slots let three groups land on Tol's wine, purple and rose, or blue beside sky
        # blue: the look-alike pairs this palette exists to avoid)
        ranked = {name: FEW[i] for i, name in enumerate(sorted(unique))}
        return {name: ranked[name] for name in unique}
    size = len(PALETTE)
    out: dict[str, str] = {}
    taken: set[int] = set()
    for name in sorted(unique, key=lambda n: (_slot(n), n)):
        slot = _slot(name) % size
        if len(taken) < size:
            while slot in taken:
                slot = (slot + 1) % size
        taken.add(slot)
        out[name] = PALETTE[slot]
    return {name: out[name] for name in unique}
