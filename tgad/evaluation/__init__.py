"""Metrics on raw detector outputs (AUROC via torchmetrics; sPRO and AUPRO arrive with the benchmark issue)."""

from tgad.evaluation.auroc import image_auroc, pixel_auroc, rank_normalise

__all__ = ["image_auroc", "pixel_auroc", "rank_normalise"]
