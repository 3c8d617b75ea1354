"""Image and pixel AUROC with torchmetrics, safe for raw (unnormalised) detector scores.

torchmetrics applies a sigmoid to predictions outside [0, 1]; raw PatchCore distances (~10-60) then all
saturate to 1.0 in float32 and AUROC collapses to ~0.5. AUROC depends only on the order of the scores, so we
map them to their (tie-averaged) ranks in [0, 1] first: exact, monotonic, and fitted on nothing. Pixel AUROC
(millions of values) takes the same area as the Mann-Whitney statistic from one sort instead of three.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_auroc


def rank_normalise(scores: torch.Tensor) -> torch.Tensor:
    """Ranks of ``scores`` scaled to [0, 1], equal scores sharing their average rank (float64)."""
    flat = scores.reshape(-1).double()
    uniq, inverse, counts = torch.unique(flat, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # last 1-based rank of each unique value
    average = ends - (counts.double() - 1.0) / 2.0
    ranks = average[inverse]
    return ((ranks - 1.0) / max(flat.numel() - 1, 1)).reshape(scores.shape)


def image_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """AUROC of per-image anomaly scores (N,) against labels (N,) with 1 = defective."""
    labels = labels.reshape(-1).long()
    if labels.min() == labels.max():
        raise ValueError("image AUROC needs both normal and defective test images")
    return float(binary_auroc(rank_normalise(scores.reshape(-1)), labels))


def pixel_auroc(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """AUROC of anomaly maps (N, H, W) against boolean masks (N, H, W) over all pixels."""
    if maps.shape[-2:] != masks.shape[-2:]:
        maps = torch.nn.functional.interpolate(
            maps.reshape(-1, 1, *maps.shape[-2:]).float(),
            size=masks.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
    target = masks.reshape(-1).bool()
    if target.all() or not target.any():
        raise ValueError("pixel AUROC needs defective pixels in the test masks")
    return mann_whitney_auroc(maps.reshape(-1), target)


def mann_whitney_auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The area under the ROC curve of ``scores`` (n,) for boolean ``positive`` (n,), as the probability that a
    positive scores above a negative (ties count half): torchmetrics' trapezoidal area, from one sort."""
    values, order = scores.sort()
    _, counts = torch.unique_consecutive(values, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1.0) / 2.0).repeat_interleave(counts)  # 1-based, ties averaged
    hits = positive[order]
    n_pos = float(hits.sum())
    n_neg = float(len(hits)) - n_pos
    return float((ranks[hits].sum() - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
