#!/usr/bin/env bash
# Issue 23 benchmark: several real shots on the full MVTec AD transistor class (transistor_256: 213 train/good,
# 100 test images), PatchCore and PaDiM, cpu preset (defect_safe, tau calibrated from the shots, 300 iterations),
# 64 extra images, every condition with the same k shots, plus one full-shot row so "gap closed" can be read.
# Order: k = 2 (the issue's target) seed by seed, the full-shot row, k = 2 with the leave-one-category-out prior
# (the generator starts from a VarianceVQGAN fitted once on the root's other categories: hazelnut_256 here), then
# k = 1 with and without the prior seed by seed, then k = 4. The controls (shots, plain_aug, aug_select) carry prior `none`
# and are shared by both. Resumable: re-run.
# Usage: experiments/issue23_benchmark.sh   ($TGAD: the tgad command; $OUT: the results root)
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=${TGAD_THREADS:-2}
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/benchmark/issue23}
ROOT=${ROOT:-../shared/data/mvtec_ad}
COMMON=(--dataset mvtec --root "$ROOT" --categories transistor_256 --models patchcore padim --preset cpu --n-gen 64
        --results-dir "$OUT" --name transistor_k --no-wandb --no-progress --allow-random-clip)
for seed in 0 1 2 3 4; do "$TGAD" benchmark "${COMMON[@]}" --shots 2 --seeds $seed; done
"$TGAD" benchmark "${COMMON[@]}" --shots full --seeds 0 --conditions shots
for seed in 0 1 2 3 4; do "$TGAD" benchmark "${COMMON[@]}" --shots 2 --seeds $seed --prior other_categories; done
for seed in 0 1 2 3 4; do
    "$TGAD" benchmark "${COMMON[@]}" --shots 1 --seeds $seed
    "$TGAD" benchmark "${COMMON[@]}" --shots 1 --seeds $seed --prior other_categories
done
for seed in 0 1 2; do "$TGAD" benchmark "${COMMON[@]}" --shots 4 --seeds $seed; done
