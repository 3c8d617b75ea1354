"""Which selection score picks the extra set the validation likes best? (issue 23, analysis of saved pools)

Reads the candidate pools ``cross_shot_analysis.py`` saved (``<out>/pools/seed<S>.pt``: the candidates, their
``defect_safe`` parts, ``cross_cover``), selects ``n`` images from each with several scores (the same gate and
farthest-point diversity as ``tgad.generate.select``), from the whole pool (``tgad_select``'s) and from its
augmentation candidates only (``aug_select``'s), and writes the validation columns of every selected set.

    python experiments/selection_rules.py /tmp/xshot2 experiments/results/benchmark/issue23/mvtec/transistor_k2_implausible \
        --category transistor_256 --shots 2 --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from pool_analysis import cached_validator, write_csv, zscore


def _region_z(weight: float):
    """The defect term made to matter: z-scores over the eligible pool, the cover taken as the mean over each
    synthetic defect's own patches (``defect_signal.py``); ``weight`` on the defect z-score."""
    return lambda p, cover, among: (
        zscore(p["novelty"] - 0.5 * p["implausible"], among) - weight * zscore(cover, among)
    )


# rule -> score(parts, region cover, eligible); None: the first n augmentation candidates, plain_aug's set
RULES = {
    "defect_safe": lambda p, cover, among: p["novelty"] - 0.5 * p["implausible"] - 2.0 * p["defect_cover"],
    "novelty": lambda p, cover, among: p["novelty"],
    "novelty_implausible": lambda p, cover, among: p["novelty"] - 0.5 * p["implausible"],
    "defect_weight_0.5": lambda p, cover, among: (
        p["novelty"] - 0.5 * p["implausible"] - 0.5 * p["defect_cover"]
    ),
    "z_mask_mean_w1": _region_z(1.0),
    "z_mask_mean_w2": _region_z(2.0),
    "z_mask_mean_w4": _region_z(4.0),
    "plain_first_n": None,
}


def main() -> None:
    from tgad.features.patches import detector_features
    from tgad.models.integrator.selection import select_diverse

    p = argparse.ArgumentParser()
    p.add_argument("pools")
    p.add_argument("results_dir")
    p.add_argument("--category", default="transistor_256")
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--covers", default=None, help="defect_signal.py's covers/ folder")
    p.add_argument("--rules", nargs="+", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    features = detector_features()
    rows = []
    for seed in args.seeds:
        pool = torch.load(Path(args.pools) / "pools" / f"seed{seed}.pt", weights_only=False)
        validator = cached_validator(features, Path(args.results_dir), args.category, args.shots, seed)
        cover = torch.load(Path(args.covers) / f"method_seed{seed}.pt")["mask_mean"] if args.covers else None
        images = pool["candidates"].float() / 255
        records = pool["records"]
        augment = torch.tensor([r["source"] == "augment" for r in records])
        for pool_name, eligible in (("all", torch.ones_like(augment)), ("augment", augment)):
            for rule, score_of in RULES.items():
                if args.rules and rule not in args.rules:
                    continue
                if score_of is None:
                    if pool_name != "augment":
                        continue
                    kept = torch.arange(args.n)
                else:
                    scores = score_of(pool["parts"], cover, eligible)
                    kept = select_diverse(
                        scores, pool["vectors"], args.n, 0.5, pool["anchors"], eligible=eligible
                    ).kept
                cols = validator.evaluate(images[kept])
                generated = sum(records[i]["source"] != "augment" for i in kept.tolist())
                row = {"seed": seed, "pool": pool_name, "rule": rule, "kept_generated": generated}
                row |= {k: round(float(v), 5) for k, v in cols.items()}
                rows.append(row)
                print(
                    f"seed {seed} {pool_name:8s} {rule:20s} normal {cols['val_normal_cov']:.4f} defect "
                    f"{cols['val_defect_cov']:.4f} auroc {cols['val_auroc']:.4f} gauss "
                    f"{cols['val_auroc_gaussian']:.4f} gen {generated}",
                    flush=True,
                )
    write_csv(Path(args.out) / "selection_rules.csv", rows)


if __name__ == "__main__":
    main()
