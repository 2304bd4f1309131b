"""The AppTest fields Streamlit renders as Markdown (the hostile-text tests' one scan)."""

from __future__ import annotations


def markdown_fields(at) -> list[tuple[str, str]]:
    """``(element type, text)`` for every field Streamlit renders as Markdown: bodies of
    markdown/caption/headings/alerts, expander and tab labels, widget labels and help,
    radio options."""
    fields = []

    def walk(node) -> None:
        kind = getattr(node, "type", type(node).__name__)
        for attr in ("label", "help"):
            value = getattr(node, attr, None)
            if isinstance(value, str):
                fields.append((f"{kind}.{attr}", value))
        proto = getattr(node, "proto", None)
        if kind in ("markdown", "caption", "title", "header", "subheader", "divider", "latex",
                    "info", "warning", "error", "success", "toast"):
            body = getattr(proto, "body", None)
            fields.append((kind, body if isinstance(body, str) else str(getattr(node, "value", ""))))
        if kind == "radio":
            fields.extend(("radio.option", str(o)) for o in getattr(proto, "options", []))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return fields
