#!/usr/bin/env bash
# Issue 13 benchmark: the fair 1-shot protocol (PatchCore keeps every patch up to 131,072 rows), the synthetic-
# defect validation columns, and the selected-candidates conditions, on the shared hazelnut_256 class and the
# embedded brick / grass / gravel, PatchCore, cpu preset, 64 extra images. Resumable: re-run to continue.
# Usage: experiments/issue13_benchmark.sh PART   (PART: hazelnut_brick | grass_gravel; run the two at once)
# ($TGAD: the tgad command, $OUT: the results root; defaults ./.venv/bin/tgad and the folder below)
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=1
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/benchmark/issue13}
COMMON=(--shots 1 --models patchcore --preset cpu --n-gen 64 --results-dir "$OUT" --name fair_k1 --no-wandb
        --no-progress --allow-random-clip)
CHEAP=(--conditions shots plain_aug aug_select --seeds 0 1 2 3 4)
# the generator: defect_safe selection and update, tau calibrated from the shot, 300 VarianceVQGAN iterations
GEN=(--conditions tgad tgad_aug tgad_select --scorers defect_safe --set calibrate_tau=true --vqgan-iterations 300)
case "${1:?PART}" in
  hazelnut_brick)
    "$TGAD" benchmark --dataset mvtec --root ../shared/data/mvtec_ad --categories hazelnut_256 "${COMMON[@]}" "${CHEAP[@]}"
    "$TGAD" benchmark --dataset embedded --categories brick "${COMMON[@]}" "${CHEAP[@]}"
    for seed in 0 1 2 3 4; do
      "$TGAD" benchmark --dataset mvtec --root ../shared/data/mvtec_ad --categories hazelnut_256 "${COMMON[@]}" "${GEN[@]}" --seeds $seed
      "$TGAD" benchmark --dataset embedded --categories brick "${COMMON[@]}" "${GEN[@]}" --seeds $seed
    done ;;
  grass_gravel)
    "$TGAD" benchmark --dataset embedded --categories grass gravel "${COMMON[@]}" "${CHEAP[@]}"
    for seed in 0 1 2 3 4; do
      "$TGAD" benchmark --dataset embedded --categories grass gravel "${COMMON[@]}" "${GEN[@]}" --seeds $seed
    done ;;
esac
