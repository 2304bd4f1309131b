"""Escaping user text for Markdown: the one rule behind the dashboard and the reports.

Run names, tags, metric keys, config values, log lines and item ids are user text. Shown
through Markdown, ``![b](http://host/b.png)`` would become an image the browser fetches,
``[x](javascript:...)`` a link, ``$x$`` math and ``<script>`` raw HTML. Every place that puts
user text into Markdown calls :func:`escape_markdown`, so it is shown literally.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["escape_markdown"]

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Punctuation that opens no inline markup mid-line: left bare in files meant to be read.
_PLAIN = frozenset(".,-/;?%'\"=")
_ALL = frozenset(string.punctuation)
_READABLE = _ALL - _PLAIN - set(_ENTITIES)
_BREAKS = "\r\n\u2028\u2029"


def escape_markdown(text: Any, *, entities: bool = False) -> str:
    r"""``text`` as inert Markdown: shown literally, never as markup, image, link or math.

    Args:
        text: any value (``str()`` is applied).
        entities: ``&<>`` become HTML entities and harmless punctuation stays bare (for a
            Markdown file people read as text); otherwise every ASCII punctuation character
            gets a backslash (CommonMark allows it for all of them; Streamlit's renderer).

    Line breaks become spaces, so the text stays in its cell, heading or label.

    Example:
        >>> print(escape_markdown("![b](x.png) $x$"))
        \!\[b\]\(x\.png\) \$x\$
        >>> print(escape_markdown("[x](javascript:alert(1)) <img>", entities=True))
        \[x\]\(javascript\:alert\(1\)\) &lt;img&gt;
    """
    escaped = _READABLE if entities else _ALL
    out = []
    for ch in str(text):
        if entities and ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in escaped:
            out.append("\\" + ch)
        elif ch in _BREAKS:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)
