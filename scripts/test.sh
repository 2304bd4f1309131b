#!/usr/bin/env bash
# Set up (first time) and run the whole test suite, browser tests included, on the locked
# versions (RUNLAKE_DEPS/RUNLAKE_VENV as in scripts/setup.sh pick another set).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # Debian's chromium drives the real-browser tests of the dashboard and the report.
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
bash scripts/setup.sh
# Two pytest-xdist workers, each taking whole test files (module fixtures built once): much
# of the suite waits on subprocesses, servers and browsers, so two overlap even on 2 cores.
# RUNLAKE_TEST_WORKERS=0 runs in one process (then -x, --pdb ... behave as usual).
workers=${RUNLAKE_TEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
  exec "${RUNLAKE_VENV:-.venv}/bin/python" -m pytest "$@"
fi
exec "${RUNLAKE_VENV:-.venv}/bin/python" -m pytest -n "$workers" --dist loadfile "$@"
