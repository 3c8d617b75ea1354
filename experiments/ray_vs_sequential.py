"""The embedded ``make benchmark`` run sequentially and with ``--executor ray`` on this machine: wall time, peak
memory of the whole process tree (driver, Ray's processes and workers) and whether the rows match.

Three runs, each in its own results folder (nothing is shared, so each makes every ExtraSet):
``sequential`` as ``make benchmark`` runs it (torch uses every core inside one row), ``ray`` (one task per
core, one torch thread each) and ``sequential_1thread`` (TGAD_THREADS=1: the same thread count per row as a
Ray task, so its rows must equal Ray's bit for bit; with more threads floating-point sums are ordered
differently and metrics move in the 6th decimal). A finished run is not repeated (its measurement is kept in
``runs.json``); the comparison is rewritten each time.

Usage: python experiments/ray_vs_sequential.py --preset tiny [--seeds 0] [--categories brick grass gravel]
       [--out experiments/results/ray_vs_sequential/tiny]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import tgad
from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import row_key

RUN_COLUMNS = {"date", "git_commit", "extra_seconds", "fit_seconds", "test_seconds", "peak_rss_mb"}


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants (from /proc), in MB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 2**20


RUNS = {  # run name -> (executor, TGAD_THREADS or None for unset)
    "sequential": ("sequential", None),
    "ray": ("ray", None),
    "sequential_1thread": ("sequential", "1"),
}


def run(name: str, args: argparse.Namespace, out: Path) -> dict:
    executor, threads = RUNS[name]
    env = {k: v for k, v in os.environ.items() if k != "TGAD_THREADS"} | (
        {"TGAD_THREADS": threads} if threads else {}
    )
    command = [
        sys.executable, "-m", "tgad.cli.main", "benchmark", "--dataset", "embedded",
        "--categories", *args.categories, "--seeds", *map(str, args.seeds), "--preset", args.preset,
        "--n-gen", str(args.n_gen), "--results-dir", str(out / name), "--no-wandb", "--no-progress",
        "--allow-random-clip", "--executor", executor,
    ]  # fmt: skip
    start, peak = time.perf_counter(), 0.0
    log = open(out / f"{name}.log", "w")  # noqa: SIM115 (open while the child runs)
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    while child.poll() is None:
        peak = max(peak, tree_rss_mb(child.pid))
        time.sleep(0.25)
    log.close()
    if child.returncode != 0:
        sys.exit(f"error: {name} run failed (exit {child.returncode}); see {out / f'{name}.log'}")
    return {
        "executor": executor,
        "torch_threads": "1 per task" if executor == "ray" else threads or "all cores",
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_tree_rss_mb": round(peak),
    }


def rows(folder: Path) -> dict[tuple, dict]:
    with open(next(folder.glob("*/*/results.csv")), newline="") as handle:
        return {row_key(r): r for r in csv.DictReader(handle)}


def compare(reference: dict[tuple, dict], other: dict[tuple, dict]) -> str:
    """'identical' or what differs: missing rows, differing columns and the largest metric difference."""
    if set(reference) != set(other):
        return f"DIFFERENT row keys ({len(set(reference) ^ set(other))} not in both)"
    columns = {
        c for key in reference for c in reference[key] if reference[key][c] != other[key][c]
    } - RUN_COLUMNS
    if not columns:
        return f"identical ({len(reference)} rows; every column but {', '.join(sorted(RUN_COLUMNS))})"
    largest = 0.0
    for key in reference:
        for column in columns - {"torch_threads"}:
            try:
                largest = max(largest, abs(float(reference[key][column]) - float(other[key][column])))
            except ValueError:
                continue
    return f"columns {', '.join(sorted(columns))} differ; largest metric difference {largest:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", choices=["tiny", "cpu"])
    parser.add_argument("--categories", nargs="+", default=["brick", "grass", "gravel"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--n-gen", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path("experiments/results/ray_vs_sequential") / args.preset
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    for name in RUNS:
        if name not in runs:
            print(f"running {name} ...", flush=True)
            runs[name] = run(name, args, out)
            with atomic_file(runs_path) as handle:
                handle.write(json.dumps(runs, indent=2))
    found = {name: rows(out / name) for name in RUNS}
    lines = [
        f"# `make benchmark` (embedded, preset {args.preset}): sequential vs `--executor ray`",
        "",
        f"Command: `python experiments/ray_vs_sequential.py --preset {args.preset} --seeds "
        f"{' '.join(map(str, args.seeds))} --categories {' '.join(args.categories)} --n-gen {args.n_gen}`",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, no GPU, nothing else running; tgad "
        f"{tgad.__version__}, torch {torch.__version__}, CLIP RANDOM (no package ships real weights). Each run "
        "made its own ExtraSets.",
        "",
        "| run | executor | torch threads per row | wall (s) | peak memory of the process tree (MB) | rows |",
        "|---|---|---|---|---|---|",
    ]
    for name, measured in runs.items():
        lines.append(
            f"| {name} | {measured['executor']} | {measured['torch_threads']} "
            f"| {measured['wall_s']} | {measured['peak_tree_rss_mb']} | {len(found[name])} |"
        )
    lines += [
        "",
        f"Speed-up of ray over sequential: {runs['sequential']['wall_s'] / runs['ray']['wall_s']:.2f}x.",
        "",
    ]
    for reference in ("sequential_1thread", "sequential"):
        lines.append(f"Rows of ray vs {reference}: {compare(found[reference], found['ray'])}")
    lines.append("")
    with atomic_file(out / "comparison.md") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
