#!/usr/bin/env bash
# Issue 13 lever ablation: the generator condition of experiments/issue13_benchmark.sh (defect_safe, tau
# calibrated from the shot, 300 VarianceVQGAN iterations) with one lever changed, seed 0, every class, the
# `tgad` condition alone. Each lever gets its own results folder beside fair_k1; the rows without the generator
# and the VarianceVQGAN fits are linked from fair_k1 (experiments/link_control_rows.py), not recomputed.
#   fair_k1_selfsim:   self_similar=4 patch_fraction=0.5 (half the positions take a self-similar latent)
#   fair_k1_block:     target_block=4 patch_fraction=0.25 (fewer, larger target patches)
#   fair_k1_neighbors: code_neighbors=4 (one of the 4 nearest codes at each target position)
# The calibration lever (max_implausible=0.02) is experiments/issue13_implausible.sh.
# Usage: experiments/issue13_levers.sh [LEVER...]   ($TGAD, $OUT as in issue13_benchmark.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=1
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/benchmark/issue13}
declare -A LEVERS=(
  [selfsim]="--set self_similar=4 --set patch_fraction=0.5"
  [block]="--set target_block=4 --set patch_fraction=0.25"
  [neighbors]="--set code_neighbors=4"
)
for lever in "${@:-selfsim block neighbors}"; do
  for lever_name in $lever; do
    for category in hazelnut_256 brick grass gravel; do
      if [ "$category" = hazelnut_256 ]; then data=(--dataset mvtec --root ../shared/data/mvtec_ad); ds=mvtec
      else data=(--dataset embedded); ds=embedded; fi
      python3 experiments/link_control_rows.py "$OUT/$ds/fair_k1" "$OUT/$ds/fair_k1_$lever_name" shots plain_aug
      # shellcheck disable=SC2086
      "$TGAD" benchmark "${data[@]}" --categories "$category" --shots 1 --models patchcore --preset cpu \
        --n-gen 64 --results-dir "$OUT" --name "fair_k1_$lever_name" --no-wandb --no-progress --allow-random-clip \
        --conditions tgad --scorers defect_safe --vqgan-iterations 300 --set calibrate_tau=true \
        ${LEVERS[$lever_name]} --seeds 0
    done
  done
done
