#!/usr/bin/env bash
# Issue 23 on the embedded categories the issue names (grass, gravel: textures with graded defects, built offline
# from scikit-image's bundled images): k = 2 shots, PatchCore and PaDiM, cpu preset (defect_safe, tau calibrated
# from the shots, 300 iterations), 64 extra images, every condition on the same two shots, seed by seed, plus one
# full-shot row per category for "gap closed". No prior here: a leave-one-category-out prior on the embedded root
# would be fitted on the one or two other textures, and one fit costs about an hour on this machine.
# Resumable: re-run. Usage: experiments/issue23_embedded.sh [seeds...]   ($TGAD: the tgad command; $OUT: results)
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=${TGAD_THREADS:-2}
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/benchmark/issue23}
SEEDS=("${@:-0 1 2}")
COMMON=(--dataset embedded --categories grass gravel --models patchcore padim --preset cpu --n-gen 64
        --results-dir "$OUT" --name embedded_k --no-wandb --no-progress --allow-random-clip)
"$TGAD" benchmark "${COMMON[@]}" --shots full --seeds 0 --conditions shots
for seed in ${SEEDS[@]}; do "$TGAD" benchmark "${COMMON[@]}" --shots 2 --seeds "$seed"; done
