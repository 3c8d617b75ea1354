"""sPRO, the saturated per-region overlap of MVTec LOCO AD (Bergmann et al., IJCV 2022); anomalib has none.

For a binary prediction P and ground-truth regions A_1..A_m, each with a saturation area s_i,
    sPRO(P) = 1/m * sum_i min(|A_i & P| / s_i, 1),
so a region counts as fully found once s_i of its pixels are flagged (a logical anomaly such as a missing
part need not be covered entirely). Sweeping the threshold of an anomaly map gives the sPRO curve over the
false positive rate; the metric is the area under it up to ``fpr_limit`` (LOCO's headline: 0.05), divided by
the limit. Following the dataset's evaluation, the false positive rate is measured on the defect-free test
images only. s_i comes from the category's ``defects_config.json``: every ground-truth PNG holds one defect
whose pixel value names its entry; ``relative_saturation`` means s_i = threshold * |A_i|, otherwise s_i is an
absolute pixel count, capped at |A_i|.

Regions are evaluated at their native resolution (the anomaly map is bilinearly upsampled to the mask), so
saturation thresholds apply as the dataset defines them and no small region vanishes in a downsampling;
false positives are counted on the maps as predicted. The curve is exact: one sort, no threshold grid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class DefectSpec:
    name: str
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool


class Region(NamedTuple):
    image_index: int  # which test image
    mask: torch.Tensor  # (H, W) bool at the mask file's resolution
    saturation: float  # s_i in pixels of ``mask``


def load_defects_config(path: str | Path) -> dict[int, DefectSpec]:
    """``defects_config.json`` of a LOCO category, keyed by pixel value."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the LOCO defects config ({err}); sPRO needs it") from err
    out = {}
    for entry in entries:
        spec = DefectSpec(
            str(entry["defect_name"]),
            int(entry["pixel_value"]),
            float(entry["saturation_threshold"]),
            bool(entry["relative_saturation"]),
        )
        out[spec.pixel_value] = spec
    return out


def saturation_area(spec: DefectSpec, area: int) -> float:
    """s_i for a region of ``area`` pixels."""
    if spec.relative_saturation:
        return spec.saturation_threshold * area
    return min(spec.saturation_threshold, float(area))


def regions_from_mask_files(
    mask_files: Sequence[Sequence[str | Path]], defects: Mapping[int, DefectSpec]
) -> list[Region]:
    """One region per (mask file, nonzero pixel value); ``mask_files[k]`` are the files of test image k."""
    regions = []
    for index, files in enumerate(mask_files):
        for file in files:
            array = np.asarray(Image.open(file))
            array = array.reshape(array.shape[0], array.shape[1], -1).max(axis=2)  # (H, W[, C]) -> (H, W)
            for value in np.unique(array[array > 0]).tolist():
                if value not in defects:
                    raise ValueError(
                        f"{file}: pixel value {value} has no entry in defects_config.json; sPRO cannot "
                        "know its saturation threshold (check the config belongs to this category)"
                    )
                mask = torch.from_numpy(array == value)
                regions.append(Region(index, mask, saturation_area(defects[value], int(mask.sum()))))
    return regions


def _region_entries(maps: torch.Tensor, regions: Sequence[Region]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of every region pixel and the sPRO increment it brings when its threshold is passed."""
    scores, increments = [], []
    for region in regions:
        height, width = region.mask.shape
        score_map = maps[region.image_index]
        if score_map.shape != (height, width):
            score_map = torch.nn.functional.interpolate(
                score_map[None, None].double(), size=(height, width), mode="bilinear", align_corners=False
            )[0, 0]  # (h, w) -> (H, W)
        values = score_map[region.mask].double().sort(descending=True).values  # (n_i,)
        rank = torch.arange(1, values.numel() + 1, dtype=torch.float64)
        s = max(region.saturation, 1e-12)
        # the k-th best pixel adds (min(k, s) - min(k-1, s)) / s: cumulated, min(count / s, 1)
        increments.append((rank.clamp(max=s) - (rank - 1).clamp(max=s)) / s)
        scores.append(values)
    return torch.cat(scores), torch.cat(increments)


def spro_curve(
    maps: torch.Tensor, labels: torch.Tensor, regions: Sequence[Region]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fpr, spro) over all thresholds, increasing, starting at (0, 0).

    Args:
        maps: (N, h, w) anomaly maps of the test images (raw values are fine: only their order matters).
        labels: (N,) 1 for defective images; false positives are counted on the images with label 0.
        regions: the ground-truth regions of the defective images.
    """
    good = maps[labels.reshape(-1) == 0].reshape(-1).double()
    if good.numel() == 0:
        raise ValueError("sPRO needs defect-free test images to measure false positives")
    if not regions:
        raise ValueError("sPRO needs at least one ground-truth region")
    region_scores, region_inc = _region_entries(maps, regions)
    scores = torch.cat([good, region_scores])
    fp_inc = torch.cat([torch.full_like(good, 1.0 / good.numel()), torch.zeros_like(region_scores)])
    spro_inc = torch.cat([torch.zeros_like(good), region_inc / len(regions)])
    order = torch.argsort(scores, descending=True, stable=True)
    scores, fpr, spro = scores[order], fp_inc[order].cumsum(0), spro_inc[order].cumsum(0)
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[:-1] != scores[1:]  # evaluate at the end of each group of tied scores
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr[last].clamp(max=1.0)]), torch.cat([zero, spro[last].clamp(max=1.0)])


def area_under_curve(fpr: torch.Tensor, tpr: torch.Tensor, fpr_limit: float) -> float:
    """Trapezoid area under (fpr, tpr) from 0 to ``fpr_limit`` (interpolated there), divided by the limit."""
    inside = fpr <= fpr_limit
    x, y = fpr[inside], tpr[inside]
    if x[-1] < fpr_limit and inside.sum() < fpr.numel():
        i = int(inside.sum())  # first point beyond the limit
        y_lim = tpr[i - 1] + (tpr[i] - tpr[i - 1]) * (fpr_limit - fpr[i - 1]) / (fpr[i] - fpr[i - 1])
        x, y = torch.cat([x, x.new_tensor([fpr_limit])]), torch.cat([y, y_lim.reshape(1)])
    return float(torch.trapezoid(y, x) / fpr_limit)


def spro_auc(
    maps: torch.Tensor, labels: torch.Tensor, regions: Sequence[Region], fpr_limit: float = 0.05
) -> float:
    """Area under the sPRO curve up to ``fpr_limit``, normalised to [0, 1]."""
    fpr, spro = spro_curve(maps, labels, regions)
    return area_under_curve(fpr, spro, fpr_limit)
