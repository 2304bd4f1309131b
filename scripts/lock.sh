#!/usr/bin/env bash
# Refresh requirements/lock.txt: the newest versions pyproject.toml's ranges allow today,
# resolved by uv (installed into a throw-away venv) for CPython 3.11 on this platform, with
# torch held to the CPU build these machines carry. Review the diff, run
# `bash scripts/test.sh`, commit both (docs/dependencies.md).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(mktemp -d)
trap 'rm -rf "$TOOLS"' EXIT
python3 -m venv "$TOOLS"
"$TOOLS/bin/python" -m pip install -q "uv>=0.9,<1" 2> >(grep -v "is ignored" >&2)
"$TOOLS/bin/uv" pip compile pyproject.toml --extra dev --python-version 3.11 \
  --find-links "${PIP_FIND_LINKS:-/opt/wheels}" -c requirements/torch-cpu.txt \
  --upgrade -o requirements/lock.txt "$@"
