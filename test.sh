#!/usr/bin/env bash
# The test suite (CPU). Extra arguments go to pytest, e.g. ./test.sh -k metrics -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_venv.sh
ruff check .
ruff format --check .
python -m pytest -q "$@"
