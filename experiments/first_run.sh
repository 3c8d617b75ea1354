#!/usr/bin/env bash
# Issue 24's benchmark: the README's main job as a new user meets it. A fresh clone of this repository's HEAD,
# `make benchmark` (which creates .venv and installs everything first), wall time per stage and in total,
# the machine's load at start; results go to experiments/results/first_run/ (first_run.json, first_run.md,
# the run's summary.md and results.csv).
#
#   experiments/first_run.sh              # a fresh clone, install included (what a new user waits for)
#   REUSE_VENV=1 experiments/first_run.sh # the clone borrows this checkout's .venv (the job alone)
#
# Run it on an otherwise idle machine: it measures time, and two cores are easily shared.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-"$repo/experiments/results/first_run"}  # OUT=...: elsewhere (a trial run)
work=$(mktemp -d /tmp/tgad-first-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git -C "$repo" rev-parse HEAD)
git clone --quiet "$repo" "$work/tgad"
cd "$work/tgad"
keep=()
if [ "${REUSE_VENV:-0}" = 1 ]; then
  # the borrowed venv is never reinstalled from the clone (its editable tgad would then point into this
  # temporary folder): make treats its install stamp as up to date, and the job runs this checkout's tgad
  ln -s "$repo/.venv" .venv
  keep=(-o .venv/.tgad-installed)
fi

# The cache is fresh too: the embedded dataset, WordNet and the backbone are built as on a new machine.
export TGAD_CACHE="$work/cache" MPLCONFIGDIR="$work/mpl" WANDB_DIR="$work/wandb"
start=$(date +%s.%N)
make "${keep[@]}" install >"$work/install.log" 2>&1
installed=$(date +%s.%N)
make "${keep[@]}" benchmark BENCHMARK_ARGS="--no-progress" 2>&1 | tee "$work/benchmark.log"
finished=$(date +%s.%N)

"$repo/.venv/bin/python" "$repo/experiments/first_run_report.py" \
  --results "$work/tgad/results/embedded/cpu" --log "$work/benchmark.log" --out "$out" \
  --install-seconds "$(echo "$installed - $start" | bc)" --total-seconds "$(echo "$finished - $start" | bc)" \
  --load-start "$load_start" --commit "$commit" --reuse-venv "${REUSE_VENV:-0}"
cp "$work/benchmark.log" "$out/benchmark.log"  # the run's own account, stage by stage
