"""AUPRO (area under the per-region overlap curve, MVTec AD) with anomalib's metric, on raw anomaly maps.

anomalib 2.7's AUPRO builds the PRO curve from one sort of the predictions (no threshold grid, no sigmoid),
so raw, unnormalised maps give the same value as any monotonic rescaling of them; a test checks that.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from anomalib.metrics import AUPRO


def aupro(maps: torch.Tensor, masks: torch.Tensor, fpr_limit: float = 0.3) -> float:
    """AUPRO of anomaly maps (N, H, W) against boolean masks (N, H, W), up to ``fpr_limit``, in [0, 1].

    Regions are the connected components of the masks; false positives are all non-defective pixels.
    """
    if maps.shape[-2:] != masks.shape[-2:]:
        maps = torch.nn.functional.interpolate(
            maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=masks.shape[-2:], mode="bilinear"
        )[:, 0]  # (N, 1, h, w) -> (N, H, W)
    if not masks.any():
        raise ValueError("AUPRO needs defective pixels in the test masks")
    metric = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=fpr_limit)
    metric.update(SimpleNamespace(anomaly_map=maps.reshape(masks.shape).double(), gt_mask=masks.int()))
    return float(metric.compute())
