#!/usr/bin/env bash
# The whole pipeline, offline, on the CPU, on scikit-image's bundled photos:
# download(sample) -> test sets at QF 10..90 -> train -> evaluate -> report -> register/promote.
# Leaves a registered champion model, reports/report.html and a working app.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_venv.sh
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "quickstart.sh needs the git checkout (DVC records the pipeline's state next to it)" >&2
  exit 1
fi
if ! git diff --quiet HEAD -- params.yaml 2>/dev/null; then
  echo "params.yaml differs from the committed quickstart configuration: \`git checkout params.yaml\` first (or run \`dvc repro\` yourself)" >&2
  exit 1
fi
start=$(date +%s)
dvc repro
python -m scripts.summary --seconds $(( $(date +%s) - start ))
