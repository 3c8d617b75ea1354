"""Which input normalisation the packaged EfficientNet-Lite0 weights expect, and what feeding it moves.

1. BatchNorm check: photographs (scikit-image's bundled ones) and the shots' class images go through the stem
   normalised with ImageNet's statistics and with the weights' recorded ones; the first BatchNorm's running
   variance is what the stem produced on the training inputs, so the normalisation whose activations match it
   is the one the weights were trained with.
2. Detector rows: the `shots` and `plain_aug` rows of ``experiments/normalisation_benchmark.sh`` (the weights'
   normalisation) against the committed ImageNet-normalised rows of the issue-13 benchmark (same protocol,
   same shots, same seeds; those rows were reproduced bit for bit by the code before the change).

Usage: python experiments/normalisation_check.py [--out experiments/results/normalisation/README.md]
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
NEW = ROOT / "experiments/results/normalisation"
OLD = ROOT / "experiments/results/benchmark/issue13"
METRICS = ("image_auroc", "pixel_auroc", "aupro", "val_auroc", "val_normal_cov", "val_defect_cov")


def batchnorm_table() -> list[str]:
    import skimage.data

    from tgad.assets import create_backbone
    from tgad.assets.weights import IMAGENET_MEAN, IMAGENET_STD
    from tgad.baselines.efficient_ad import PENALTY_PHOTOS

    model, weights = create_backbone()
    photos = []
    for name in PENALTY_PHOTOS:
        array = np.asarray(getattr(skimage.data, name)())
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        image = torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1)[None]
        photos.append(F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True))
    x = torch.cat(photos)  # (P, 3, 224, 224)
    lines = [
        f"Backbone {weights.describe()}, {len(x)} scikit-image photographs at 224 px. Width = median over the 32",
        "stem channels of log(batch variance / bn1.running_var); 0 means the training inputs' width.",
        "",
        "| normalisation | mean | std | width | top-1 of chelsea (285 = Egyptian cat), p |",
        "|---|---|---|---|---|",
    ]
    for label, mean, std in (
        ("ImageNet (anomalib's pre-processor, tgad before)", IMAGENET_MEAN, IMAGENET_STD),
        ("recorded with the weights (timm's config)", weights.mean, weights.std),
    ):
        normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            stem = model.conv_stem(normalised)
            width = float((stem.var(dim=(0, 2, 3)) / model.bn1.running_var).log().median())
            cat = normalised[PENALTY_PHOTOS.index("chelsea")][None]
            probs = model(cat).softmax(-1)[0]
        lines.append(
            f"| {label} | {tuple(mean)} | {tuple(std)} | {width:+.2f} | "
            f"{int(probs.argmax())}, {float(probs.max()):.2f} |"
        )
    return lines


CONDITIONS = ("shots", "plain_aug", "aug_select", "tgad", "tgad_aug", "tgad_select")


def _rows(folder: Path) -> dict[tuple, dict]:
    """(category, condition, seed) -> row of the ``fair_k1`` runs under ``folder`` (generated sets: defect_safe)."""
    rows = {}
    for path in folder.glob("*/fair_k1/results.csv"):
        for r in csv.DictReader(path.open()):
            if (
                r["condition"] in CONDITIONS
                and r["scorer"] in ("", "defect_safe")
                and r["model"] == "patchcore"
            ):
                rows[(r["category"], r["condition"], r["seed"])] = r
    return rows


def _cell(a: list[float], b: list[float]) -> str:
    d = [y - x for x, y in zip(a, b, strict=True)]
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    return f"{statistics.fmean(a):.3f} -> {statistics.fmean(b):.3f} ({statistics.fmean(d):+.3f} ± {sd:.3f})"


def detector_table() -> list[str]:
    new, old = _rows(NEW), _rows(OLD)
    keys = sorted(set(new) & set(old))
    if not keys:
        return ["(no rows yet: run experiments/normalisation_benchmark.sh)"]
    for key in keys:
        assert new[key]["shot_ids"] == old[key]["shot_ids"], key  # same shots, or the comparison is void
    categories = sorted({k[0] for k in keys})
    lines = [
        f"{len(keys)} paired rows (category, condition, seed); PatchCore 1-shot, cpu preset, 256 px, 64 extra",
        "images; generated sets: defect_safe, calibrated tau, 300 VarianceVQGAN iterations. Each cell: ImageNet ->",
        "the weights' normalisation, mean over the seeds both runs have (paired difference mean ± std over",
        "seeds). The `mean` rows average the categories per seed, over the seeds every category has.",
        "",
        "| category | condition | seeds | " + " | ".join(METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for category in [*categories, "mean"]:
        for condition in CONDITIONS:
            members = categories if category == "mean" else [category]
            seeds = sorted(
                {k[2] for k in keys if k[1] == condition}
                & set.intersection(*({k[2] for k in keys if k[:2] == (c, condition)} for c in members))
            )
            if not seeds:
                continue
            cells = []
            for metric in METRICS:
                a = [statistics.fmean(float(old[(c, condition, s)][metric]) for c in members) for s in seeds]
                b = [statistics.fmean(float(new[(c, condition, s)][metric]) for c in members) for s in seeds]
                cells.append(_cell(a, b))
            name = "**mean**" if category == "mean" else category
            lines.append(f"| {name} | {condition} | {' '.join(seeds)} | " + " | ".join(cells) + " |")
    return lines + ["", *delta_table(new, old, categories)]


def delta_table(new: dict, old: dict, categories: list[str]) -> list[str]:
    """Image AUROC of each condition minus plain_aug's, paired by category and seed, before and after."""
    lines = [
        "Image AUROC minus `plain_aug`'s (same category and seed; `mean`: over categories per seed), mean ± std",
        "over the seeds every category in the row has for both conditions, in both runs:",
        "",
        "| category | condition | seeds | ImageNet | weights' normalisation |",
        "|---|---|---|---|---|",
    ]
    for category in [*categories, "mean"]:
        members = categories if category == "mean" else [category]
        for condition in CONDITIONS:
            if condition == "plain_aug":
                continue
            have = [
                {k[2] for k in rows if k[:2] == (c, condition)}
                & {k[2] for k in rows if k[:2] == (c, "plain_aug")}
                for rows in (new, old)
                for c in members
            ]
            seeds = sorted(set.intersection(*have))
            if not seeds:
                continue
            cells = []
            for rows in (old, new):
                d = [
                    statistics.fmean(
                        float(rows[(c, condition, s)]["image_auroc"])
                        - float(rows[(c, "plain_aug", s)]["image_auroc"])
                        for c in members
                    )
                    for s in seeds
                ]
                sd = statistics.stdev(d) if len(d) > 1 else 0.0
                cells.append(f"{statistics.fmean(d):+.3f} ± {sd:.3f}")
            name = "**mean**" if category == "mean" else category
            lines.append(f"| {name} | {condition} | {' '.join(seeds)} | {cells[0]} | {cells[1]} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=NEW / "README.md")
    args = parser.parse_args()
    text = [
        "# Input normalisation of the EfficientNet-Lite0 backbone",
        "",
        "Written by `python experiments/normalisation_check.py` after `experiments/normalisation_benchmark.sh`",
        "(embedded brick/grass/gravel and the shared MVTec AD hazelnut_256; CLIP is random and unused by defect_safe).",
        "",
        "Provenance: every row carries its commit. The `shots`/`plain_aug` rows were run from 11d051d, a snapshot",
        "of the working tree whose detector, augmentation and validation code is that of 646e05a (the commit that",
        "made the change); `aug_select` and the generator conditions from 4d2ee37. Dataset, class, shot IDs, seed,",
        "weights (backbone `tf_efficientnet_lite0:cache:1433548b`, CLIP `ViT-B-32:RANDOM`) and versions are in",
        "each `results.csv`; the ImageNet rows are `experiments/results/benchmark/issue13/*/fair_k1/results.csv`.",
        "",
        "## 1. Which normalisation the weights were trained with",
        "",
        *batchnorm_table(),
        "",
        "## 2. What feeding it moves (detector rows)",
        "",
        *detector_table(),
        "",
    ]
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(text))
    tmp.replace(args.out)
    print("\n".join(text))


if __name__ == "__main__":
    main()
