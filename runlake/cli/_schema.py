"""`runlake schema`: print the JSON Schema of segment events."""

from __future__ import annotations

import json

from runlake.cli._common import subcommand


def register(sub) -> None:
    p = subcommand(sub, "schema", "print the JSON Schema of every event kind", "runlake schema > events.schema.json")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from runlake.schemas.jsonschema import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0
