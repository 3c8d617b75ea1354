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


def _rows(folder: Path) -> dict[tuple, dict]:
    rows = {}
    for path in folder.glob("*/fair_k1/results.csv"):
        for r in csv.DictReader(path.open()):
            if r["condition"] in ("shots", "plain_aug"):
                rows[(r["category"], r["condition"], r["seed"])] = r
    return rows


def detector_table() -> list[str]:
    new, old = _rows(NEW), _rows(OLD)
    keys = sorted(set(new) & set(old))
    if not keys:
        return ["(no rows yet: run experiments/normalisation_benchmark.sh)"]
    for key in keys:
        assert new[key]["shot_ids"] == old[key]["shot_ids"], key  # same shots, or the comparison is void
    categories = sorted({k[0] for k in keys})
    lines = [
        f"{len(keys)} paired rows (category, condition, seed); PatchCore 1-shot, cpu preset, 256 px. Each cell:",
        "ImageNet -> weights' normalisation, mean over seeds (paired difference mean ± std over seeds).",
        "",
        "| category | condition | n | " + " | ".join(METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for category in [*categories, "mean"]:
        for condition in ("shots", "plain_aug"):
            pairs = [k for k in keys if k[1] == condition and (category == "mean" or k[0] == category)]
            if not pairs:
                continue
            cells = []
            for metric in METRICS:
                if category == "mean":  # per seed, the mean over categories
                    seeds = sorted({k[2] for k in pairs})
                    a = [statistics.fmean(float(old[k][metric]) for k in pairs if k[2] == s) for s in seeds]
                    b = [statistics.fmean(float(new[k][metric]) for k in pairs if k[2] == s) for s in seeds]
                else:
                    a = [float(old[k][metric]) for k in pairs]
                    b = [float(new[k][metric]) for k in pairs]
                d = [y - x for x, y in zip(a, b, strict=True)]
                sd = statistics.stdev(d) if len(d) > 1 else 0.0
                cells.append(
                    f"{statistics.fmean(a):.3f} -> {statistics.fmean(b):.3f} ({statistics.fmean(d):+.3f} ± {sd:.3f})"
                )
            name = "**mean**" if category == "mean" else category
            lines.append(f"| {name} | {condition} | {len(pairs)} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=NEW / "README.md")
    args = parser.parse_args()
    text = [
        "# Input normalisation of the EfficientNet-Lite0 backbone",
        "",
        "Written by `python experiments/normalisation_check.py` after `experiments/normalisation_benchmark.sh`",
        "(embedded brick/grass/gravel and the shared MVTec AD hazelnut_256, seeds 0-4, random CLIP unused here).",
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
