"""Does ``defect_safe``'s ``defect_cover`` see what hides defects? (issue 23, analysis of saved pools)

``cross_shot_analysis.py`` found that ``defect_cover`` is about 0.001 for every candidate source (plain
augmentation, generated images, generated images augmented) while the validation's held-out synthetic defects
are covered two to three times more by generated images than by augmentations. This script recomputes
``defect_cover`` for the saved pools with the shots' synthetic defects drawn from another family (``v2``: thin
scratches, small missing or misplaced parts, colour spots) and, for each family, with the defect's score taken
as its largest nearest-patch distance (the method's rule) or as the mean over the patches inside its mask; and
reports, per seed, the mean cover per source and the Spearman correlation with the per-image validation
defect coverage (v1 family, held-out normals: analysis data, never the test split).

    python experiments/defect_signal.py /tmp/xshot2 experiments/results/benchmark/issue23/mvtec/transistor_k2_implausible \
        --root ../shared/data/mvtec_ad --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
import torch.nn.functional as F


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


@torch.no_grad()
def covers(defect_feats, masks, bank, cand_feats):
    """(C,) max-rule and (C,) mask-mean-rule covers of the candidates for defects (J, P, D) with patch masks
    (J, P) bool, against the shots' bank (N, D)."""
    from tgad.features.patches import nearest_distances

    d0 = nearest_distances(defect_feats, bank)  # (J, P)
    max0 = d0.amax(1)
    mean0 = torch.stack([d0[j][masks[j]].mean() for j in range(len(d0))])
    out_max, out_mean = [], []
    for feats in cand_feats:
        d1 = torch.minimum(d0, nearest_distances(defect_feats, feats))  # (J, P)
        out_max.append((1 - d1.amax(1) / max0).mean())
        out_mean.append((1 - torch.stack([d1[j][masks[j]].mean() for j in range(len(d1))]) / mean0).mean())
    return torch.stack(out_max), torch.stack(out_mean)


def main() -> None:
    from tgad.data.images import read_resized
    from tgad.features.patches import detector_features
    from tgad.features.synthetic_defects import METHOD_KINDS, V2_KINDS, make_defects
    from tgad.models.integrator.scorers import view_bank

    p = argparse.ArgumentParser()
    p.add_argument("pools")
    p.add_argument("results_dir")
    p.add_argument("--root", required=True)
    p.add_argument("--category", default="transistor_256")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--defects", type=int, default=8)
    p.add_argument("--families", nargs="+", default=["method", "v2"])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    features = detector_features()
    with open(Path(args.results_dir) / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    report = []
    for seed in args.seeds:
        row = next(
            r for r in rows if int(r["seed"]) == seed and r["shots"] == "2" and r["condition"] == "tgad"
        )
        ids = row["shot_ids"].split(";")
        shots = read_resized([Path(args.root) / args.category / "train" / "good" / s for s in ids], 256)
        pool = torch.load(Path(args.pools) / "pools" / f"seed{seed}.pt", weights_only=False)
        images = pool["candidates"].float() / 255
        cand_feats = torch.cat([features(images[i : i + 8]) for i in range(0, len(images), 8)])
        bank = view_bank(features, shots, 8, seed)
        sources = [r["source"] for r in pool["records"]]
        for family, kinds in [
            f for f in (("method", METHOD_KINDS), ("v2", V2_KINDS)) if f[0] in args.families
        ]:
            per_shot = -(-args.defects // len(shots))
            defects = make_defects(shots, per_shot, kinds, seed)
            dfeats = features(defects.images[: args.defects])  # (J, P, D)
            side = int(round(dfeats.shape[1] ** 0.5))
            # (J, H, W) pixel masks -> (J, P): a patch is inside when any of its pixels is
            pmask = F.adaptive_max_pool2d(defects.masks[: args.defects, None].float(), side).flatten(1) > 0
            cmax, cmean = covers(dfeats, pmask, bank, cand_feats)
            saved = Path(args.out) / "covers"
            saved.mkdir(parents=True, exist_ok=True)
            torch.save({"max": cmax, "mask_mean": cmean}, saved / f"{family}_seed{seed}.pt")
            for rule, values in (("max", cmax), ("mask_mean", cmean)):
                entry = {
                    "seed": seed,
                    "family": family,
                    "rule": rule,
                    "rho_vs_val_defect_cov": round(spearman(values, pool["defect_cov"]), 3),
                    "rho_vs_val_useful": round(spearman(values, pool["normal_cov"] - pool["defect_cov"]), 3),
                }
                for source in dict.fromkeys(sources):
                    m = torch.tensor([s == source for s in sources])
                    entry[f"mean_{source}"] = round(float(values[m].mean()), 5)
                report.append(entry)
                print(json.dumps(entry), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "defect_signal.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(report[0]))
        writer.writeheader()
        writer.writerows(report)


if __name__ == "__main__":
    main()
