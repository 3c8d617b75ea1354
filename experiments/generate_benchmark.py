"""Benchmark of ``tgad generate`` on one real class: wall time per stage, peak RSS, and the grid to look at.

    python experiments/generate_benchmark.py --root /work/shared/data/mvtec_ad --category hazelnut_256 \
        --shots 1 --n 64 --preset cpu --threads 1 --allow-random-clip

Runs the CLI in a child process (as a user would), so its peak RSS is the child's alone. The ExtraSet itself
goes under ``runs/generate/`` (not committed: 64 PNGs); ``experiments/results/generate/`` gets
``benchmark.json``, a copy of the grid, the score histogram and the manifest. Target (issue 5): the whole
chain under 15 minutes on two shared CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "results" / "generate"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mvtec")
    p.add_argument("--root", default="/work/shared/data/mvtec_ad")
    p.add_argument("--category", default="hazelnut_256")
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clip-weights", default=None)
    p.add_argument("--allow-random-clip", action="store_true")
    p.add_argument("--set-dir", type=Path, default=REPO / "runs" / "generate")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    name = f"{args.category}_k{args.shots}_seed{args.seed}_{args.preset}_n{args.n}"
    set_dir = args.set_dir / name
    if set_dir.exists():
        shutil.rmtree(set_dir)  # a benchmark measures a fresh run, never a reused folder
    cmd = [sys.executable, "-m", "tgad.cli.main", "generate", "--dataset", args.dataset, "--root", args.root,
           "--category", args.category, "--shots", str(args.shots), "--seed", str(args.seed), "--n", str(args.n),
           "--preset", args.preset, "--out", str(set_dir)]  # fmt: skip
    if args.clip_weights:
        cmd += ["--clip-weights", args.clip_weights]
    if args.allow_random_clip:
        cmd.append("--allow-random-clip")
    env = {**os.environ, "TGAD_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    load_start = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tgad generate failed with exit code {proc.returncode}")
    manifest = json.loads((set_dir / "manifest.json").read_text())

    args.out.mkdir(parents=True, exist_ok=True)
    for src, dst in (("grid.png", f"grid_{name}.png"), ("scores_per_round.png", f"scores_{name}.png")):
        shutil.copyfile(set_dir / src, args.out / dst)
    shutil.copyfile(set_dir / "manifest.json", args.out / f"manifest_{name}.json")
    stage_keys = ("data", "prompt", "generator", "integrator", "final", "write")
    result = {
        "command": " ".join(["tgad", *cmd[3:]]),
        "wall_seconds": round(wall, 1),
        "under_15_min": wall < 15 * 60,
        "stage_seconds": {k: manifest["timings"].get(f"{k}_seconds") for k in stage_keys},
        "chain_seconds_in_process": manifest["timings"].get("total_seconds"),
        "peak_rss_mb_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "torch_threads": manifest["resources"]["torch_threads"],
        "malloc_mmap_threshold_env": env.get("MALLOC_MMAP_THRESHOLD_"),
        "load_average_start_end": [load_start, os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs",
        "best_prompt": manifest["best_prompt"],
        "clip_weights": manifest["clip_weights"],
        "backbone_weights": manifest["weights"]["backbone"]["describe"],
        "collapsed": manifest["collapsed"],
        "collapse": manifest["collapse"],
        "score_summary": manifest["score_summary"],
        "rounds": [
            {
                k: r[k]
                for k in (
                    "round",
                    "kept_mean",
                    "rejected_mean",
                    "threshold",
                    "changed_mean",
                    "pixel_spread",
                    "novelty_mean",
                    "seconds",
                )
            }
            | {"guidance_in_update": r["losses"].get("guidance"), "scorer": r.get("scorer")}
            for r in manifest["rounds"]
        ],  # fmt: skip
        "written_novelty_mean": sum(i["novelty"] for i in manifest["images"]) / manifest["n"],
        "written_rounds": {str(r): sum(1 for i in manifest["images"] if i["round"] == r) for r in range(4)},
        "extra_set": str(set_dir),
        "grid": str(args.out / f"grid_{name}.png"),
        "histogram": str(args.out / f"scores_{name}.png"),
    }
    (args.out / f"benchmark_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
