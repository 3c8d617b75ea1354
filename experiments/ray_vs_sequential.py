"""The embedded ``make benchmark`` run sequentially and with ``--executor ray`` on this machine: wall time, peak
memory of the whole process tree (driver, Ray's processes and workers) and whether the rows match.

Each run gets its own results folder (nothing is shared, so both make every ExtraSet). A finished run is not
repeated (its measurement is kept in ``runs.json``); the comparison is rewritten each time.

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


def run(executor: str, args: argparse.Namespace, out: Path) -> dict:
    command = [
        sys.executable, "-m", "tgad.cli.main", "benchmark", "--dataset", "embedded",
        "--categories", *args.categories, "--seeds", *map(str, args.seeds), "--preset", args.preset,
        "--n-gen", str(args.n_gen), "--results-dir", str(out / executor), "--no-wandb", "--no-progress",
        "--allow-random-clip", "--executor", executor,
    ]  # fmt: skip
    start, peak = time.perf_counter(), 0.0
    log = open(out / f"{executor}.log", "w")  # noqa: SIM115 (open while the child runs)
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    while child.poll() is None:
        peak = max(peak, tree_rss_mb(child.pid))
        time.sleep(0.25)
    log.close()
    if child.returncode != 0:
        sys.exit(f"error: {executor} run failed (exit {child.returncode}); see {out / f'{executor}.log'}")
    return {
        "executor": executor,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_tree_rss_mb": round(peak),
    }


def rows(folder: Path) -> dict[tuple, dict]:
    with open(next(folder.glob("*/*/results.csv")), newline="") as handle:
        return {row_key(r): r for r in csv.DictReader(handle)}


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
    for executor in ("sequential", "ray"):
        if executor not in runs:
            print(f"running {executor} ...", flush=True)
            runs[executor] = run(executor, args, out)
            with atomic_file(runs_path) as handle:
                handle.write(json.dumps(runs, indent=2))
    seq, ray = rows(out / "sequential"), rows(out / "ray")
    mismatched = [
        key for key in seq
        if key not in ray or any(seq[key][c] != ray[key][c] for c in seq[key] if c not in RUN_COLUMNS)
    ]  # fmt: skip
    same = not mismatched and set(seq) == set(ray)
    speedup = runs["sequential"]["wall_s"] / runs["ray"]["wall_s"]
    lines = [
        f"# `make benchmark` (embedded, preset {args.preset}): sequential vs `--executor ray`",
        "",
        f"Command: `python experiments/ray_vs_sequential.py --preset {args.preset} --seeds "
        f"{' '.join(map(str, args.seeds))} --categories {' '.join(args.categories)} --n-gen {args.n_gen}`",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, no GPU; TGAD_THREADS="
        f"{os.environ.get('TGAD_THREADS', 'unset')}; tgad {tgad.__version__}, torch {torch.__version__}, "
        f"CLIP RANDOM (no package ships real weights). Each run made its own ExtraSets.",
        "",
        "| executor | wall (s) | peak memory of the process tree (MB) | rows |",
        "|---|---|---|---|",
        f"| sequential | {runs['sequential']['wall_s']} | {runs['sequential']['peak_tree_rss_mb']} | {len(seq)} |",
        f"| ray (local, {os.cpu_count()} CPUs) | {runs['ray']['wall_s']} | {runs['ray']['peak_tree_rss_mb']} | "
        f"{len(ray)} |",
        "",
        f"Speed-up {speedup:.2f}x. Rows: {'identical' if same else 'DIFFERENT'} (every column but "
        f"{', '.join(sorted(RUN_COLUMNS))}){'' if same else f'; mismatched keys: {mismatched}'}.",
    ]
    with atomic_file(out / "comparison.md") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
