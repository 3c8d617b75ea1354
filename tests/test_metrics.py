"""AUPRO and sPRO against curves computed by hand on tiny maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tgad.evaluation import aupro, load_defects_config, regions_from_mask_files, spro_auc, spro_curve
from tgad.evaluation.spro import Region


def test_aupro_by_hand():
    """One region of 2 pixels, 6 background pixels. Descending: R 0.9, B 0.8, R 0.5, B 0.1 x5.

    PRO curve: (0, 0) (0, .5) (1/6, .5) (1/6, 1) (1, 1): area to FPR 1 = 1/12 + 5/6; to 0.3 = 1/12 + (0.3 - 1/6).
    """
    masks = torch.zeros(1, 2, 4, dtype=torch.bool)
    masks[0, 0, :2] = True
    maps = torch.tensor([[[0.9, 0.5, 0.8, 0.1], [0.1, 0.1, 0.1, 0.1]]])
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(1 / 12 + 5 / 6, abs=1e-6)
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx((1 / 12 + 0.3 - 1 / 6) / 0.3, abs=1e-6)
    raw = 40.0 + 25.0 * maps  # raw PatchCore-like distances: same order, same AUPRO
    assert aupro(raw, masks, fpr_limit=0.3) == pytest.approx(aupro(maps, masks, fpr_limit=0.3), abs=1e-6)


def test_aupro_averages_connected_components():
    """Two components, one found at once and one tied with the whole background: (0, .5) then (1, 1)."""
    masks = torch.zeros(1, 3, 5, dtype=torch.bool)
    masks[0, 0, 0:2] = True
    masks[0, 2, 3:5] = True
    maps = torch.zeros(1, 3, 5)
    maps[0, 0, 0:2] = 1.0
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx((0.5 + 1.0) / 2, abs=1e-6)


GOOD = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
DEFECT = torch.tensor([[0.35, 0.35], [0.05, 0.05]])


def test_spro_by_hand():
    """Good pixels 0.1-0.4 (FPR steps of 1/4); one 4-pixel region with two pixels at 0.35, two at 0.05.

    Saturation 2 px: sPRO reaches 1 at threshold 0.35 (FPR 1/4): area to FPR 1 = 3/4, to 0.5 = 0.25 / 0.5.
    Saturation 4 px (relative 1.0): sPRO 0.5 from FPR 1/4 on, 1 only at FPR 1: area 0.375.
    """
    maps, labels, region = (
        torch.stack([GOOD, DEFECT]),
        torch.tensor([0, 1]),
        torch.ones(2, 2, dtype=torch.bool),
    )
    fpr, spro = spro_curve(maps, labels, [Region(1, region, 2.0)])
    assert fpr.tolist() == pytest.approx([0, 0.25, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert spro.tolist() == pytest.approx([0, 0, 1, 1, 1, 1, 1])
    assert spro_auc(maps, labels, [Region(1, region, 2.0)], fpr_limit=1.0) == pytest.approx(0.75)
    assert spro_auc(maps, labels, [Region(1, region, 2.0)], fpr_limit=0.5) == pytest.approx(0.5)
    assert spro_auc(maps, labels, [Region(1, region, 4.0)], fpr_limit=1.0) == pytest.approx(0.375)
    # two regions average: the saturated one (1 from FPR 1/4) and one never above any good pixel
    low = torch.zeros(2, 2, dtype=torch.bool)
    low[1] = True  # the two 0.05 pixels
    both = [Region(1, region, 2.0), Region(1, low, 2.0)]
    assert spro_auc(maps, labels, both, fpr_limit=1.0) == pytest.approx(0.75 / 2)


def test_spro_counts_false_positives_on_good_images_only():
    """High scores on the normal part of a defective image do not count as false positives (LOCO)."""
    defect = torch.tensor([[0.9, 0.99], [0.05, 0.05]])  # 0.99 is outside the region
    region = torch.tensor([[True, False], [False, False]])
    maps, labels = torch.stack([GOOD, defect]), torch.tensor([0, 1])
    assert spro_auc(maps, labels, [Region(1, region, 1.0)], fpr_limit=0.05) == pytest.approx(1.0)


def test_spro_regions_from_loco_masks(tmp_path):
    """Pixel values name the defect; relative thresholds scale with the area, absolute ones are capped by it."""
    config = [
        {
            "defect_name": "missing",
            "pixel_value": 255,
            "saturation_threshold": 0.5,
            "relative_saturation": True,
        },
        {
            "defect_name": "extra",
            "pixel_value": 100,
            "saturation_threshold": 500,
            "relative_saturation": False,
        },
    ]
    (tmp_path / "defects_config.json").write_text(json.dumps(config))
    mask_a = np.zeros((8, 8), np.uint8)
    mask_a[:2, :4] = 255  # 8 px, relative 0.5 -> s = 4
    mask_b = np.zeros((8, 8), np.uint8)
    mask_b[6:, 6:] = 100  # 4 px, absolute 500 capped -> s = 4
    Image.fromarray(mask_a).save(tmp_path / "000.png")
    Image.fromarray(mask_b).save(tmp_path / "001.png")
    defects = load_defects_config(tmp_path / "defects_config.json")
    regions = regions_from_mask_files([(), (tmp_path / "000.png", tmp_path / "001.png")], defects)
    assert [(r.image_index, int(r.mask.sum()), r.saturation) for r in regions] == [(1, 8, 4.0), (1, 4, 4.0)]
    # maps at half the mask resolution are upsampled onto the regions
    maps = torch.zeros(2, 4, 4)
    maps[1] = 1.0
    assert spro_auc(maps, torch.tensor([0, 1]), regions) == pytest.approx(1.0)
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "002.png")
    with pytest.raises(ValueError, match="pixel value 7 has no entry"):
        regions_from_mask_files([(tmp_path / "002.png",)], defects)


def test_scoring_reports_spro_on_loco(loco_root, tmp_path):
    """The LOCO path end to end: PatchCore on the fixture, sPRO from its defects_config.json."""
    from tgad.baselines.registry import build_model
    from tgad.data import LOCO
    from tgad.evaluation.scoring import fit_and_score

    config = [
        {
            "defect_name": "square",
            "pixel_value": 255,
            "saturation_threshold": 1.0,
            "relative_saturation": True,
        }
    ]
    (loco_root / "juice_bottle" / "defects_config.json").write_text(json.dumps(config))
    dm = LOCO(root=str(loco_root), category="juice_bottle", shots=2, image_size=64, eval_batch_size=8)
    dm.setup()
    built = build_model("patchcore", image_size=64, preset="tiny", bank_budget=1024)
    scores = fit_and_score(built.model, dm, str(tmp_path), built.trainer_kwargs)
    assert scores.image_auroc == 1.0
    assert scores.spro is not None and 0.5 < scores.spro <= 1.0 and 0.0 <= scores.aupro <= 1.0
