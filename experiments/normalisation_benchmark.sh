#!/usr/bin/env bash
# The issue-13 protocol (PatchCore 1-shot, cpu preset, 64 extra images, seeds 0-4; experiments/issue13_benchmark.sh)
# re-run with every backbone fed the input normalisation its weights record (tgad 646e05a and later), to compare
# with the committed ImageNet-normalised rows of experiments/results/benchmark/issue13 (same shots, same seeds;
# the old rows were reproduced bit for bit by the code before the change). Resumable: re-run to continue.
# Usage: experiments/normalisation_benchmark.sh [cheap|generated|all] [hazelnut|embedded|both]
#        ($SEEDS: the seeds of the generated conditions, default 0 1 2 3 4)
# then:  python experiments/normalisation_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=8388608 HF_HUB_OFFLINE=1 WANDB_MODE=offline PYTHONHASHSEED=0 TGAD_THREADS=${TGAD_THREADS:-1}
TGAD=${TGAD:-./.venv/bin/tgad}
OUT=${OUT:-experiments/results/normalisation}
COMMON=(--shots 1 --models patchcore --preset cpu --n-gen 64 --results-dir "$OUT" --name fair_k1 --no-wandb
        --no-progress --allow-random-clip)
CHEAP=(--conditions shots plain_aug aug_select --seeds 0 1 2 3 4)
# the generator: defect_safe selection and update, tau calibrated from the shot, 300 VarianceVQGAN iterations
GEN=(--conditions tgad tgad_aug tgad_select --scorers defect_safe --set calibrate_tau=true --vqgan-iterations 300)
HAZELNUT=(--dataset mvtec --root ../shared/data/mvtec_ad --categories hazelnut_256)
EMBEDDED=(--dataset embedded --categories brick grass gravel)
if [[ "${1:-all}" != generated ]]; then
  [[ "${2:-both}" == embedded ]] || "$TGAD" benchmark "${HAZELNUT[@]}" "${COMMON[@]}" "${CHEAP[@]}"
  [[ "${2:-both}" == hazelnut ]] || "$TGAD" benchmark "${EMBEDDED[@]}" "${COMMON[@]}" "${CHEAP[@]}"
fi
if [[ "${1:-all}" != cheap ]]; then
  for seed in ${SEEDS:-0 1 2 3 4}; do
    [[ "${2:-both}" == embedded ]] || "$TGAD" benchmark "${HAZELNUT[@]}" "${COMMON[@]}" "${GEN[@]}" --seeds $seed
    [[ "${2:-both}" == hazelnut ]] || "$TGAD" benchmark "${EMBEDDED[@]}" "${COMMON[@]}" "${GEN[@]}" --seeds $seed
  done
fi
