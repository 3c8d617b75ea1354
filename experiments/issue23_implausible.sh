#!/usr/bin/env bash
# Issue 23: does a generated set help once it stays plausible? transistor_256 at k = 2, seeds 0-4, PatchCore and
# PaDiM, the three generated conditions with tau calibrated under the implausibility limit (max_implausible =
# 0.02: the largest tau whose samples keep their worst patches within the shots' own variation), against the
# control rows of experiments/results/benchmark/issue23/mvtec/transistor_k (hard-linked, not recomputed).
# Resumable: rows already written are skipped. Usage: experiments/issue23_implausible.sh [SEED...]
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=${TGAD_THREADS:-2}
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/benchmark/issue23}
ROOT=${ROOT:-../shared/data/mvtec_ad}
NAME=transistor_k2_implausible
seeds=("${@:-0 1 2 3 4}")
python3 experiments/link_control_rows.py "$OUT/mvtec/transistor_k" "$OUT/mvtec/$NAME" shots plain_aug aug_select
for seed in ${seeds[@]}; do
  "$TGAD" benchmark --dataset mvtec --root "$ROOT" --categories transistor_256 --models patchcore padim \
    --preset cpu --n-gen 64 --results-dir "$OUT" --name "$NAME" --no-wandb --no-progress --allow-random-clip \
    --shots 2 --seeds "$seed" --conditions tgad tgad_aug tgad_select --scorers defect_safe \
    --set calibrate_tau=true --set max_implausible=0.02
done
