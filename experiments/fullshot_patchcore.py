"""Full-shot (and k-shot) PatchCore on a dataset's categories, with the offline ImageNet backbone.

Writes one JSON per run and a markdown table under experiments/results/ (atomically; finished categories are
reused on a re-run). Run: `make benchmark` (embedded dataset) or
`python experiments/fullshot_patchcore.py --dataset mvtec --root ../shared/data/mvtec_ad --categories hazelnut_256`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import anomalib
import torch
from rich.console import Console
from rich.progress import track

import tgad
from tgad.assets import atomic_file
from tgad.baselines.patchcore import build_patchcore
from tgad.data import DATAMODULES
from tgad.data.embedded_builder import EMBEDDED_CATEGORIES
from tgad.evaluation.scoring import fit_and_score

console = Console()


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(dataset: str, root: str | None, category: str, shots: int | None, seed: int, args) -> dict:
    torch.manual_seed(seed)
    dm = DATAMODULES[dataset](
        root=root,
        category=category,
        shots=shots,
        shot_seed=seed,
        image_size=args.image_size,
        train_batch_size=8,
        eval_batch_size=8,
    )
    dm.prepare_data()
    dm.setup()
    model, weights = build_patchcore(
        args.backbone, image_size=args.image_size, coreset_sampling_ratio=args.coreset, seed=seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        scores = fit_and_score(model, dm, tmp)
    return {
        **dm.provenance(),
        "model": "patchcore",
        "backbone": args.backbone,
        "backbone_weights": weights.describe(),
        "coreset_sampling_ratio": args.coreset,
        "memory_bank": int(model.model.memory_bank.shape[0]),
        "seed": seed,
        **scores.__dict__,
        "torch_threads": torch.get_num_threads(),
        "tgad": tgad.__version__,
        "anomalib": anomalib.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="embedded", choices=sorted(DATAMODULES))
    parser.add_argument("--root", default=None)
    parser.add_argument("--categories", nargs="*", default=None)
    parser.add_argument("--shots", type=int, default=None, help="None = full train set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--coreset", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TGAD_THREADS", "2")))
    parser.add_argument("--out", default="experiments/results/patchcore")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    categories = args.categories or (list(EMBEDDED_CATEGORIES) if args.dataset == "embedded" else None)
    if not categories:
        parser.error("--categories is required for real datasets")
    shots_tag = "full" if args.shots is None else f"{args.shots}shot"
    out = Path(args.out) / f"{args.dataset}_{shots_tag}_seed{args.seed}"
    rows = []
    for category in track(categories, description=f"PatchCore {args.dataset} {shots_tag}", console=console):
        path = out / f"{category}.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        row = run_one(args.dataset, args.root, category, args.shots, args.seed, args)
        with atomic_file(path) as handle:
            json.dump(row, handle, indent=2)
        rows.append(row)
    lines = [
        f"# PatchCore ({args.backbone}), {args.dataset}, shots={shots_tag}, seed={args.seed}",
        "",
        "| category | n_train | image AUROC | pixel AUROC | memory bank | fit s | test s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pix = "-" if r["pixel_auroc"] is None else f"{r['pixel_auroc']:.4f}"
        lines.append(
            f"| {r['category']} | {r['n_train']} | {r['image_auroc']:.4f} | {pix} | {r['memory_bank']} | "
            f"{r['fit_seconds']:.1f} | {r['test_seconds']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"Backbone weights: {rows[0]['backbone_weights']}; torch threads {rows[0]['torch_threads']}; "
        f"tgad {rows[0]['tgad']}, anomalib {rows[0]['anomalib']}, torch {rows[0]['torch']}, "
        f"commit {rows[0]['git_commit']}.",
    ]
    with atomic_file(out / "summary.md") as handle:
        handle.write("\n".join(lines) + "\n")
    console.print("\n".join(lines))
    console.print(f"written to {out}")


if __name__ == "__main__":
    main()
