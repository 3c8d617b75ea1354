#!/usr/bin/env bash
# Issue 13, second generator configuration: tau calibrated from the shot with the implausibility limit
# (max_implausible = 0.02: the largest tau whose samples show, on average over their worst 5 % of patches,
# almost nothing beyond the shot's own patch variation), everything else as experiments/issue13_benchmark.sh.
# The conditions without the generator (shots, plain_aug, aug_select) and the VarianceVQGAN fits do not depend
# on this setting: they are linked from that run's folder (fair_k1) instead of recomputed.
# Usage: experiments/issue13_implausible.sh "SEEDS" CLASS...   (CLASS: hazelnut_256 | brick | grass | gravel)
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=1
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/benchmark/issue13}
NAME=fair_k1_implausible
seeds=(${1:?SEEDS}); shift
for category in "$@"; do
  if [ "$category" = hazelnut_256 ]; then data=(--dataset mvtec --root ../shared/data/mvtec_ad); ds=mvtec
  else data=(--dataset embedded); ds=embedded; fi
  python3 experiments/link_control_rows.py "$OUT/$ds/fair_k1" "$OUT/$ds/$NAME" shots plain_aug aug_select
  for seed in "${seeds[@]}"; do
    "$TGAD" benchmark "${data[@]}" --categories "$category" --shots 1 --models patchcore --preset cpu --n-gen 64 \
      --results-dir "$OUT" --name "$NAME" --no-wandb --no-progress --allow-random-clip \
      --conditions tgad tgad_aug tgad_select --scorers defect_safe --vqgan-iterations 300 \
      --set calibrate_tau=true --set max_implausible=0.02 --seeds "$seed"
  done
done
