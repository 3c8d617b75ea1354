"""The ``paper`` preset through the product's own command on a GPU: ``tgad generate --accelerator gpu`` on one
class, and its throughput (VarianceVQGAN fit iterations per second, Integrator rounds, final images per
second, wall time, peak GPU memory). For when a GPU machine is lent (the ``device`` tool); on a machine
without one it stops in the preflight with one line.

    python experiments/gpu_throughput.py [--dataset embedded --category brick] [--devices 1]
        [--precision auto] [--iterations 5000] [--out experiments/results/gpu_throughput]

Writes ``<out>/<preset>_<category>_x<devices>_<precision>.json`` and ``.md`` (atomically), and the ExtraSet
under ``<out>/sets/``. CLIP: ``--clip-weights`` or, offline, random weights (said so in the output).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import tgad
from tgad.assets.cache import atomic_file
from tgad.generate import load_manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--root", default=None)
    parser.add_argument("--category", default="brick")
    parser.add_argument("--preset", default="paper", choices=["tiny", "cpu", "paper"])
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--iterations", type=int, default=None, help="VarianceVQGAN iterations (preset's)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--clip-weights", default=None)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/gpu_throughput"))
    args = parser.parse_args()
    name = f"{args.preset}_{args.category}_x{args.devices}_{args.precision}"
    ext_set = args.out / "sets" / name
    command = [
        sys.executable, "-m", "tgad.cli.main", "generate", "--dataset", args.dataset, "--category", args.category,
        "--preset", args.preset, "--n", str(args.n), "--out", str(ext_set), "--accelerator", args.accelerator,
        "--devices", str(args.devices), "--precision", args.precision, "--scorer", "defect_safe",
    ]  # fmt: skip
    command += ["--root", args.root] if args.root else []
    command += ["--vqgan-iterations", str(args.iterations)] if args.iterations else []
    command += ["--clip-weights", args.clip_weights] if args.clip_weights else ["--allow-random-clip"]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    done = subprocess.run(command, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: tgad generate failed (exit {done.returncode}); command: {' '.join(command)}")
    manifest = load_manifest(ext_set)
    timings = manifest["timings"]
    iterations = manifest["config"]["vqgan_iterations"]
    result = {
        "command": " ".join(command),
        "wall_seconds": round(wall, 1),
        "timings": timings,
        "vqgan_iterations": iterations,
        "vqgan_iterations_per_second": round(iterations / max(timings["generator_seconds"], 1e-9), 2),
        "final_images_per_second": round(args.n / max(timings["final_seconds"], 1e-9), 2),
        "hardware": manifest["resources"]["hardware"],
        "gpu": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "peak_rss_mb": manifest["resources"]["peak_rss_mb"],
        "clip_weights": manifest["clip_weights"],
        "random_clip": manifest.get("random_clip", False),
        "tgad": tgad.__version__,
        "torch": torch.__version__,
        "machine": platform.node(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / f"{name}.json") as handle:
        handle.write(json.dumps(result, indent=2))
    lines = [
        f"# tgad generate, preset {args.preset}, {args.dataset}/{args.category}, {result['hardware']}",
        "",
        f"GPU: {', '.join(result['gpu']) or 'none'}; CLIP {result['clip_weights']}"
        + (" (RANDOM weights)" if result["random_clip"] else ""),
        "",
        "| wall (s) | VarianceVQGAN it/s | fit (s) | Integrator (s) | final images/s | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
        f"| {result['wall_seconds']} | {result['vqgan_iterations_per_second']} | {timings['generator_seconds']:.1f} "
        f"| {timings['integrator_seconds']:.1f} | {result['final_images_per_second']} | {result['peak_rss_mb']} |",
        "",
        f"Command: `{result['command']}`",
    ]
    with atomic_file(args.out / f"{name}.md") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
