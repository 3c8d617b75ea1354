"""Metrics on raw detector outputs: image/pixel AUROC (torchmetrics), AUPRO (anomalib), sPRO (MVTec LOCO).

``tgad.evaluation.scoring`` (fit a model and score it) imports anomalib's Engine; import it explicitly.
"""

from tgad.evaluation.aupro import aupro
from tgad.evaluation.auroc import image_auroc, pixel_auroc, rank_normalise
from tgad.evaluation.spro import load_defects_config, regions_from_mask_files, spro_auc, spro_curve

__all__ = [
    "aupro",
    "image_auroc",
    "load_defects_config",
    "pixel_auroc",
    "rank_normalise",
    "regions_from_mask_files",
    "spro_auc",
    "spro_curve",
]
