"""Where a benchmark row's time goes: each row of a `tgad benchmark` command profiled on its own (cProfile).

Usage: python experiments/row_profile.py OUT.txt -- <tgad benchmark arguments>
e.g.   python experiments/row_profile.py /tmp/p.txt -- --dataset embedded --categories brick --models patchcore \
           --shots 1 --seeds 0 --conditions shots plain_aug --preset cpu --no-wandb --results-dir /tmp/r

Wraps the runner's ``compute_row`` (fit + test + validation + plots of one row) and ``make_extra`` with a
profiler each, and writes per row: wall and CPU seconds, the CPU seconds of its stages (the cumulative time of
the functions named in ``STAGES``) and its top functions by cumulative CPU time. CPU time (``process_time``)
because the machine is shared: wall time there depends on the other sessions' load, which is also recorded.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

# stage -> (file suffix, function name) whose cumulative time is the stage's
STAGES = {
    "fit (Engine.fit: bank features + coreset)": ("anomalib/engine/engine.py", "fit"),
    "test (Engine.predict: features + search + maps)": ("anomalib/engine/engine.py", "predict"),
    "  detector backbone (all passes)": ("feature_extractors/timm.py", "forward"),
    "  nearest-neighbour search (all passes)": ("patchcore/torch_model.py", "nearest_neighbors"),
    "  tgad search (all passes)": ("tgad/baselines/search.py", "nearest_patches"),
    "  anomaly maps (upsample + blur)": ("patchcore/anomaly_map.py", "compute_anomaly_map"),
    "pixel AUROC": ("tgad/evaluation/auroc.py", "pixel_auroc"),
    "AUPRO": ("tgad/evaluation/aupro.py", "aupro"),
    "validation columns": ("tgad/benchmark/defect_check.py", "columns"),
    "  validation features": ("tgad/evaluation/validation.py", "_features"),
    "  validation image scores": ("tgad/evaluation/validation.py", "image_scores"),
    "plots (anomaly-map overlays)": ("tgad/benchmark/plots.py", "save_overlays"),
    "plots (extra-set grid)": ("tgad/benchmark/plots.py", "save_extra_grid"),
}


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for stage, (suffix, function) in STAGES.items():
            if name == function and file.endswith(suffix):
                out[stage] += cumulative
    return out


def main() -> None:
    out_path, args = Path(sys.argv[1]), sys.argv[sys.argv.index("--") + 1 :]
    import tgad.benchmark.runner as runner
    from tgad.cli.main import main as tgad_main

    records: list[tuple[str, float, float, pstats.Stats]] = []

    def profiled(function, label):
        def wrapper(*a, **k):
            profile = cProfile.Profile(time.process_time)
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return profile.runcall(function, *a, **k)
            finally:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                row = a[0] if label == "row" else a[1]
                name = f"{label} {row.category} {row.condition} {row.model} k={row.shots} seed={row.seed}"
                records.append((name, wall, cpu, pstats.Stats(profile)))

        return wrapper

    runner.compute_row = profiled(runner.compute_row, "row")
    runner.make_extra = profiled(runner.make_extra, "extra set")
    load_before = os.getloadavg()
    code = tgad_main(["benchmark", *args])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    text = io.StringIO()
    text.write(f"command: tgad benchmark {' '.join(args)}\n")
    text.write(f"commit: {commit.strip()}  exit code: {code}  torch threads: {_threads()}\n")
    text.write(f"load average (1, 5, 15 min) before: {load_before}, after: {os.getloadavg()}\n\n")
    text.write("| what | wall s | CPU s |\n|---|---|---|\n")
    for name, wall, cpu, _ in records:
        text.write(f"| {name} | {wall:.1f} | {cpu:.1f} |\n")
    for name, _, cpu, stats in records:
        text.write(f"\n## {name}: {cpu:.1f} CPU s\n\n| stage | CPU s |\n|---|---|\n")
        for stage, seconds in stage_seconds(stats).items():
            if seconds > 0:
                text.write(f"| {stage} | {seconds:.2f} |\n")
        top = io.StringIO()
        stats.stream = top
        stats.sort_stats("cumulative").print_stats(25)
        lines = [line.rstrip() for line in top.getvalue().splitlines() if line.strip()]
        text.write("\n```\n" + "\n".join(lines[3:]) + "\n```\n")
    out_path.write_text(text.getvalue())
    print(text.getvalue()[:4000])


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
