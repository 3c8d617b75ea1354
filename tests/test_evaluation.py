"""AUROC on raw scores, and the whole fit -> predict -> AUROC path on a clearly separable fixture."""

from __future__ import annotations

import pytest
import torch

from tgad.baselines.coreset import FastKCenterGreedy
from tgad.evaluation import image_auroc, pixel_auroc, rank_normalise


def test_raw_distances_keep_their_order():
    """Raw PatchCore-like distances (10-60) give the exact AUROC, not the sigmoid-saturated 0.5."""
    normal = torch.linspace(10.0, 20.0, 20)
    defect = torch.linspace(30.0, 60.0, 10)
    scores, labels = torch.cat([normal, defect]), torch.cat([torch.zeros(20), torch.ones(10)])
    assert image_auroc(scores, labels) == 1.0
    assert image_auroc(-scores, labels) == 0.0
    # half the defects inside the normal range: 5 of 10 defects tie-free below the top normal
    mixed = torch.cat([normal, torch.linspace(10.5, 12.5, 5), torch.linspace(30.0, 40.0, 5)])
    manual = sum(float((d > normal).float().mean()) for d in mixed[20:]) / 10
    assert image_auroc(mixed, labels) == pytest.approx(manual)


def test_rank_normalise_is_monotonic_with_ties():
    ranks = rank_normalise(torch.tensor([5.0, 1.0, 5.0, 9.0]))
    assert ranks.tolist() == pytest.approx([0.5, 0.0, 0.5, 1.0])


def test_pixel_auroc_resizes_maps_to_masks():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[1, :4, :4] = True
    maps = torch.zeros(2, 4, 4)
    maps[1, :2, :2] = 50.0
    assert pixel_auroc(maps, masks) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="defective pixels"):
        pixel_auroc(maps, torch.zeros_like(masks))


def test_fast_coreset_matches_the_greedy_definition():
    torch.manual_seed(0)
    points = torch.randn(300, 4, 1, 1)  # 4-d features: no random projection, exact distances
    sampler = FastKCenterGreedy(points, sampling_ratio=0.05, seed=3)
    chosen = sampler.select_coreset_idxs()
    flat = points.reshape(300, -1)
    # replay k-center greedy naively from the same first centre
    expected = [chosen[0]]
    dist = torch.cdist(flat, flat[expected]).min(dim=1).values
    while len(expected) < len(chosen):
        expected.append(int(torch.argmax(dist)))
        dist = torch.minimum(dist, torch.cdist(flat, flat[[expected[-1]]]).squeeze(1))
    assert chosen == expected
    assert FastKCenterGreedy(points, 0.05, seed=3).select_coreset_idxs() == chosen


def test_patchcore_separates_an_obvious_fixture(mvtec_root, tmp_path):
    """Guard for the whole scoring path: pretrained PatchCore, real shots, obvious defects -> AUROC 1.0."""
    from tgad.baselines.registry import build_model
    from tgad.data import MVTecAD
    from tgad.evaluation.scoring import fit_and_score

    dm = MVTecAD(
        root=str(mvtec_root), category="widget", shots=2, image_size=64, train_batch_size=4, eval_batch_size=8
    )
    dm.setup()
    built = build_model("patchcore", image_size=64, preset="tiny")
    model, weights = built.model, built.weights
    assert weights.source in ("package", "cache") and not weights.is_random
    scores = fit_and_score(model, dm, str(tmp_path))
    assert scores.image_auroc == 1.0
    assert scores.pixel_auroc is not None and scores.pixel_auroc > 0.9
    assert scores.n_train == 2 and scores.n_test == 6
