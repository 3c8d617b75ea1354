"""Does "moving toward the other shot" predict covering unseen normals? (issue 23, k >= 2 selection)

With k >= 2 shots the difference between the shots is real normal variation. A candidate made from shot A
whose patches come close to the patches of shot B that A lacks has moved along that variation; the hypothesis
is that such candidates also cover *unseen* normals better than candidates chosen by ``defect_safe`` alone.

This script measures it on committed k = 2 rows' pools, before anything is built into the method: for each
seed it rebuilds ``tgad_select``'s candidate pool (plain augmentation of the shots plus a generated set and its
augmented images), scores every candidate by ``defect_safe`` and by ``cross_cover`` (below), and compares
both with each candidate's coverage of the held-out training normals of the validation (analysis data, never
the test split). Then it simulates the selection with ``defect_safe + w * cross_cover`` for several ``w`` and
reports the validation columns of each selected set.

``cross_cover`` of a candidate from shot s: for every other shot t, the relative drop of the mean distance of
t's patches to s's patches once the candidate's patches join s's (0: nothing of t is approached).

    python experiments/cross_shot_analysis.py experiments/results/benchmark/issue23/mvtec/transistor_k2_implausible \
        --root ../shared/data/mvtec_ad --category transistor_256 --shots 2 --seeds 0 1 2 3 4 --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


@torch.no_grad()
def cross_cover(cand: torch.Tensor, sources: torch.Tensor, shot_feats: torch.Tensor) -> torch.Tensor:
    """(C,) candidates' (C, P, D) patches, their source shot (C,), the shots' (k, P, D) patches."""
    from tgad.features.patches import nearest_distances

    k = len(shot_feats)
    base = {}  # (s, t) -> (P,) distance of t's patches to s's
    for s in range(k):
        for t in range(k):
            if s != t:
                base[s, t] = nearest_distances(shot_feats[t][None], shot_feats[s])[0]
    out = torch.zeros(len(cand))
    for i in range(len(cand)):
        s = int(sources[i])
        drops = []
        for t in range(k):
            if t == s:
                continue
            d1 = torch.minimum(base[s, t], nearest_distances(shot_feats[t][None], cand[i])[0])
            drops.append(1 - d1.mean() / base[s, t].mean())
        out[i] = torch.stack(drops).mean()
    return out


def main() -> None:
    from pool_analysis import (
        cached_validator,
        read_rows,
        shot_images,
        single_image_covers,
        spearman,
        tgad_row,
        write_csv,
        zscore,
    )

    from tgad.features.patches import detector_features
    from tgad.generate.select import SelectConfig, _candidates, select_candidates
    from tgad.models.integrator.selection import select_diverse

    p = argparse.ArgumentParser()
    p.add_argument("results_dir")
    p.add_argument("--root", required=True)
    p.add_argument("--category", default="transistor_256")
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.manual_seed(0)
    results = Path(args.results_dir)
    rows = read_rows(results)
    features = detector_features()
    out_rows, summary = [], []
    for seed in args.seeds:
        row = tgad_row(rows, seed, args.shots)
        shot_ids = row["shot_ids"].split(";")
        shots = shot_images(Path(args.root), args.category, shot_ids)
        generated = results / row["extra_set"]
        validator = cached_validator(features, results, args.category, args.shots, seed)
        config = SelectConfig()
        candidates, records = _candidates(shots, shot_ids, args.n, seed, config, generated, 256)
        _, parts = select_candidates(shots, candidates, args.n, config, seed)
        cand_feats = torch.cat([features(candidates[i : i + 8]) for i in range(0, len(candidates), 8)])
        shot_feats = features(shots)
        sources = torch.tensor([shot_ids.index(r["source_shot"]) for r in records])
        cross = cross_cover(cand_feats, sources, shot_feats)
        ncov, dcov = single_image_covers(validator, cand_feats)
        useful = ncov - dcov
        vectors, anchors = cand_feats.mean(1), shot_feats.mean(1)  # the selection's diversity features
        cache = Path(args.out) / "pools"
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "candidates": (candidates * 255).round().to(torch.uint8),
                "records": records,
                "parts": parts,
                "cross": cross,
                "normal_cov": ncov,
                "defect_cov": dcov,
                "vectors": vectors,
                "anchors": anchors,
            },
            cache / f"seed{seed}.pt",
        )
        corr = {
            f"{name}_vs_{target}": spearman(values, tv)
            for name, values in [
                ("defect_safe", parts["defect_safe"]),
                ("novelty", parts["novelty"]),
                ("cross", cross),
            ]
            for target, tv in [("normal_cov", ncov), ("useful", useful)]
        }
        by_source = {}
        for src in ("augment", "generated", "generated_aug"):
            m = torch.tensor([r["source"] == src for r in records])
            if m.any():
                by_source[src] = {
                    "n": int(m.sum()),
                    "cross": float(cross[m].mean()),
                    "normal_cov": float(ncov[m].mean()),
                    "defect_cov": float(dcov[m].mean()),
                }
        print(f"seed {seed}: {json.dumps(corr)}\n  {json.dumps(by_source)}", flush=True)
        for w in args.weights:  # the pool's two scores in common units, so w = 1 weighs them alike
            score = zscore(parts["defect_safe"]) + w * zscore(cross)
            kept = select_diverse(score, vectors, args.n, config.pass_fraction, anchors).kept
            cols = validator.evaluate(candidates[kept])
            kept_sources = [records[i]["source"] for i in kept.tolist()]
            rec = {
                "seed": seed,
                "w": w,
                **{k: round(float(v), 5) for k, v in cols.items()},
                "kept_generated": sum(s != "augment" for s in kept_sources),
                **{f"corr_{k}": round(v, 3) for k, v in corr.items()},
            }
            out_rows.append(rec)
            print(
                f"  w={w}: normal_cov {cols['val_normal_cov']:.4f} defect_cov {cols['val_defect_cov']:.4f} "
                f"auroc {cols['val_auroc']:.4f} gauss {cols['val_auroc_gaussian']:.4f} gen {rec['kept_generated']}",
                flush=True,
            )
        summary.append({"seed": seed, "corr": corr, "by_source": by_source})
    out = Path(args.out)
    write_csv(out / "selection.csv", out_rows)
    (out / "correlations.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
