"""Fit an anomalib model on a datamodule and score it on the test split, from raw outputs."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import torch
from anomalib.engine import Engine

from tgad.evaluation.auroc import image_auroc, pixel_auroc


@dataclass(frozen=True)
class Scores:
    image_auroc: float
    pixel_auroc: float | None
    fit_seconds: float
    test_seconds: float
    peak_rss_mb: float
    n_train: int
    n_test: int


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fit_and_score(model, datamodule, root_dir: str) -> Scores:
    """Engine.fit on the datamodule's training set, then image/pixel AUROC of raw predictions on its test set."""
    engine = Engine(
        default_root_dir=root_dir,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fitted = time.perf_counter()
    batches = engine.predict(model=model, dataloaders=datamodule.test_dataloader(), return_predictions=True)
    tested = time.perf_counter()
    scores = torch.cat([b.pred_score.reshape(-1) for b in batches])
    labels = torch.cat([b.gt_label.reshape(-1) for b in batches])
    pixel = None
    if batches[0].gt_mask is not None and batches[0].anomaly_map is not None:
        maps = torch.cat([b.anomaly_map.reshape(-1, *b.anomaly_map.shape[-2:]) for b in batches])
        masks = torch.cat([b.gt_mask.reshape(-1, *b.gt_mask.shape[-2:]) for b in batches]).bool()
        pixel = pixel_auroc(maps, masks) if masks.any() else None
    return Scores(
        image_auroc=image_auroc(scores, labels),
        pixel_auroc=pixel,
        fit_seconds=fitted - start,
        test_seconds=tested - fitted,
        peak_rss_mb=peak_rss_mb(),
        n_train=len(datamodule.train_data),
        n_test=len(labels),
    )
