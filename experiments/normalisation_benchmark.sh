#!/usr/bin/env bash
# Input normalisation of the detector's backbone: the `shots` and `plain_aug` rows of the issue-13 protocol
# (PatchCore 1-shot, cpu preset, 64 extra images, seeds 0-4) with the weights' own normalisation, to compare with
# the committed ImageNet-normalised rows of experiments/results/benchmark/issue13 (same shots, same seeds; the
# old rows were reproduced bit for bit before the change). Resumable: re-run to continue.
# Then: python experiments/normalisation_check.py  (the BatchNorm check and the comparison table)
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=1
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/normalisation}
COMMON=(--shots 1 --models patchcore --preset cpu --n-gen 64 --results-dir "$OUT" --name fair_k1 --no-wandb
        --no-progress --allow-random-clip --conditions shots plain_aug --seeds 0 1 2 3 4)
"$TGAD" benchmark --dataset mvtec --root ../shared/data/mvtec_ad --categories hazelnut_256 "${COMMON[@]}"
"$TGAD" benchmark --dataset embedded --categories brick grass gravel "${COMMON[@]}"
