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
import json
from pathlib import Path

import torch


def main() -> None:
    from pool_analysis import read_rows, shot_images, spearman, tgad_row, write_csv

    from tgad.features.patches import detector_features
    from tgad.features.synthetic_defects import METHOD_KINDS, V2_KINDS
    from tgad.models.integrator.defect_safe import DefectSafe
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
    rows = read_rows(Path(args.results_dir))
    report = []
    for seed in args.seeds:
        ids = tgad_row(rows, seed, 2)["shot_ids"].split(";")
        shots = shot_images(Path(args.root), args.category, ids)
        pool = torch.load(Path(args.pools) / "pools" / f"seed{seed}.pt", weights_only=False)
        images = pool["candidates"].float() / 255
        cand_feats = torch.cat([features(images[i : i + 8]) for i in range(0, len(images), 8)])
        bank = view_bank(features, shots, 8, seed)
        sources = [r["source"] for r in pool["records"]]
        for family, kinds in [
            f for f in (("method", METHOD_KINDS), ("v2", V2_KINDS)) if f[0] in args.families
        ]:
            # the method's two cover rules on this family's defects of the shots: defect_cover (each defect's
            # largest patch distance) and region_cover (the mean over its own patches)
            safe = DefectSafe(features, bank, shots, args.defects, seed=seed, kinds=kinds)
            cmax = (1 - safe.defect_scores_with(cand_feats) / safe.defect_scores[:, None]).mean(0)
            cmean = safe.region_covers(cand_feats)
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
    write_csv(Path(args.out) / "defect_signal.csv", report)


if __name__ == "__main__":
    main()
