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
import csv
from pathlib import Path

import torch

RULES = {
    "defect_safe": lambda p, c: p["novelty"] - 0.5 * p["implausible"] - 2.0 * p["defect_cover"],
    "novelty": lambda p, c: p["novelty"],
    "novelty_implausible": lambda p, c: p["novelty"] - 0.5 * p["implausible"],
    "defect_weight_0.5": lambda p, c: p["novelty"] - 0.5 * p["implausible"] - 0.5 * p["defect_cover"],
    # the defect term made to matter: z-scores over the pool, the cover taken as the mean over each synthetic
    # defect's own patches (``defect_signal.py``); w = weight of the defect z-score
    "z_mask_mean_w1": ("z", 1.0),
    "z_mask_mean_w2": ("z", 2.0),
    "z_mask_mean_w4": ("z", 4.0),
    "plain_first_n": None,  # the first n augmentation candidates: exactly plain_aug's set
}


def _z(values: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """z-scores over the eligible candidates."""
    return (values - values[eligible].mean()) / values[eligible].std().clamp_min(1e-12)


def main() -> None:
    from tgad.evaluation.validation import ExtraSetValidator, ValidationSettings
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
        state_file = (
            Path(args.results_dir)
            / "extra_sets"
            / "validation"
            / f"shots_{args.category}_k{args.shots}_seed{seed}.pt"
        )
        validator = ExtraSetValidator.from_state(
            features, torch.load(state_file, weights_only=True)["state"], ValidationSettings()
        )
        images = pool["candidates"].float() / 255
        records = pool["records"]
        augment = torch.tensor([r["source"] == "augment" for r in records])
        for pool_name, eligible in (("all", torch.ones_like(augment)), ("augment", augment)):
            for rule, score_of in RULES.items():
                if args.rules and rule not in args.rules:
                    continue
                if rule == "plain_first_n":
                    if pool_name != "augment":
                        continue
                    kept = torch.arange(args.n)
                elif isinstance(score_of, tuple):
                    cover = torch.load(Path(args.covers) / f"method_seed{seed}.pt")["mask_mean"]
                    base = pool["parts"]["novelty"] - 0.5 * pool["parts"]["implausible"]
                    scores = _z(base, eligible) - score_of[1] * _z(cover, eligible)
                    kept = select_diverse(
                        scores, pool["vectors"], args.n, 0.5, pool["anchors"], eligible=eligible
                    ).kept
                else:
                    scores = score_of(pool["parts"], pool["cross"])
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "selection_rules.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
