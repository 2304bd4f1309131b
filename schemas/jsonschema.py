"""JSON Schema export of every event kind (``runlake schema``), generated from the structs."""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from runlake.schemas.codec import CURRENT_VERSIONS
from runlake.schemas.events import AnyLine

__all__ = ["json_schema"]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one segment line, with each kind's current version recorded.

    Returns:
        A JSON-able dict: ``anyOf`` over the kinds, ``$defs`` per kind, and
        ``x-runlake-versions`` mapping kind -> the version written today.
    """
    schema = msgspec.json.schema(AnyLine)
    for definition in schema.get("$defs", {}).values():
        # msgspec versions differ in dedenting docstrings; pin one form
        if isinstance(definition.get("description"), str):
            definition["description"] = inspect.cleandoc(definition["description"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "runlake segment event"
    schema["x-runlake-versions"] = dict(sorted(CURRENT_VERSIONS.items()))
    return schema
