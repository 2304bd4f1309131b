#!/usr/bin/env bash
# Create .venv with runlake and everything the demo and the tests need (idempotent).
# torch is pinned to the CPU build that is cached on these machines (any other spec
# downloads gigabytes of CUDA wheels); it stays an optional extra of the package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[dev]"
