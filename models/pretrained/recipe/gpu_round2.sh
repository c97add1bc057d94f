#!/usr/bin/env bash
# GPU round 2 (continue the shipped model), as run on the lent GPU machine: two back-to-back
# calls on one warm machine, because ../shared/datasets/train + train-extra are more than one
# call can carry (64 MiB). Files written under .gpu_state/ stay on the machine between calls.
#
#   call 1: models/pretrained/recipe/gpu_round2.sh bench                  carry: gpu_data/extra gpu_data/before
#           throughput before (the previous commit's bench_models, eager) and after (the real
#           training step, eager and compiled) in one run; data-loader rate; warms the compile cache
#   call 2: models/pretrained/recipe/gpu_round2.sh train MINUTES COMMIT   carry: gpu_data/train
#           continues models/pretrained/model.pt on train + train-extra with the compile mode
#           call 1 measured fastest; GPU utilisation sampled every 5 s
# gpu_data/ holds copies of ../shared/datasets/{train,train-extra} (git-ignored, never committed);
# gpu_data/before/bench_models_before.py is `git show <previous commit>:benchmarks/bench_models.py`.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
export TORCHINDUCTOR_CACHE_DIR=$PWD/.gpu_state/inductor TRITON_CACHE_DIR=$PWD/.gpu_state/triton
OUT=${OUT:-/tmp/gpu_out}
mkdir -p .gpu_state "$OUT"
case "${1:-}" in
bench)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python gpu_data/before/bench_models_before.py --json .gpu_state/bench_before.json
  python -m benchmarks.bench_models --archs qacnet --train-batch 64,32 --compile none,reduce-overhead,default \
    --budget-s 120 --json .gpu_state/bench_qacnet.json
  python -m benchmarks.bench_models --archs dncnn,fbcnn --train-batch 32 --compile none --json .gpu_state/bench_others.json
  python -m benchmarks.bench_loader gpu_data/extra --workers 7,14 --seconds 4 --json .gpu_state/loader.json
  cp .gpu_state/*.json "$OUT"/
  ;;
train)
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 >"$OUT/gpu_util.csv" &
  smi=$!
  extra=()
  for d in gpu_data/extra/DIV2K11 gpu_data/extra/Waterloo13; do [ -d "$d" ] && extra+=("$d"); done
  python -m models.pretrained.recipe.gpu_train --train gpu_data/train --extra "${extra[@]}" --init models/pretrained/model.pt \
    --plan .gpu_state/bench_qacnet.json --out "$OUT/run" --resume .gpu_state/resume.pt \
    --minutes "$2" --commit "$3" 2>&1 | grep --line-buffered -v 'it/s' | tee "$OUT/train.log"
  kill $smi
  ;;
*)
  echo "usage: $0 bench | train MINUTES COMMIT" >&2
  exit 2
  ;;
esac
