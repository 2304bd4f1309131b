#!/usr/bin/env bash
# Create a venv with runlake and everything the demo and the tests need (idempotent).
#
#   RUNLAKE_DEPS=lock    (default) install exactly the versions in requirements/lock.txt,
#                        the set CI tested; an existing venv is moved onto them.
#   RUNLAKE_DEPS=newest  the newest releases pyproject.toml's ranges allow (CI's second run:
#                        a new release that breaks runlake turns CI red before users meet it).
#   RUNLAKE_VENV=DIR     the venv folder (default .venv).
#
# torch is pinned to the CPU build that lies on these machines (any other spec downloads
# gigabytes of CUDA wheels); it stays an optional extra of the package. Refreshing the
# lock: bash scripts/lock.sh (docs/dependencies.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${RUNLAKE_VENV:-.venv}
DEPS=${RUNLAKE_DEPS:-lock}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
case "$DEPS" in
  lock)
    "$VENV/bin/python" -m pip install -q -c requirements/lock.txt "torch==2.13.0" -e ".[dev]" ;;
  newest)
    "$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager \
      "torch==2.13.0" -e ".[dev]" ;;
  *)
    echo "RUNLAKE_DEPS must be 'lock' or 'newest', got '$DEPS'" >&2; exit 2 ;;
esac 2> >(grep -v -e "is ignored: it is neither" -e "BuildBackendWarning" >&2)
