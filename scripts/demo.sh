#!/usr/bin/env bash
# Set up (first time) and run the demo: real CPU training runs on scikit-learn's digits,
# logged with runlake, ingested into ./runlake-data/runlake.duckdb, analysed and summarised.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/runlake demo "$@"
