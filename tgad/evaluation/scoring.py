"""Fit an anomalib model on a datamodule and score it on the test split, from raw outputs.

Image AUROC, pixel AUROC, AUPRO and (for MVTec LOCO) sPRO are computed from raw scores and maps: nothing is
normalised or thresholded with statistics of the test split. Peak memory is measured per fit (the process
high-water mark is reset first where Linux allows), so rows run one after another in one process each get
their own number.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from anomalib.callbacks.checkpoint import ModelCheckpoint
from anomalib.engine import Engine

from tgad.evaluation.aupro import aupro
from tgad.evaluation.auroc import image_auroc, pixel_auroc
from tgad.evaluation.spro import load_defects_config, regions_from_mask_files, spro_auc
from tgad.hardware import Hardware

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    image_auroc: float
    pixel_auroc: float | None
    fit_seconds: float
    test_seconds: float
    peak_rss_mb: float
    n_train: int
    n_test: int
    aupro: float | None = None
    spro: float | None = None


class Example(NamedTuple):
    """One test image with its prediction, for anomaly-map overlays."""

    path: str  # the image file (the batch's image is normalised by the model's pre-processor)
    anomaly_map: torch.Tensor  # (H, W) raw
    mask: torch.Tensor | None  # (H, W) bool
    label: int
    score: float


@dataclass
class Evaluation:
    scores: Scores
    examples: list[Example] = field(default_factory=list)


def reset_peak_rss() -> None:
    """Reset the kernel's per-process RSS high-water mark (Linux ``clear_refs``); a no-op elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory since the last ``reset_peak_rss`` (Linux), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _no_checkpoint(root_dir: str) -> ModelCheckpoint:
    # anomalib adds a checkpoint callback unless one is given; a benchmark keeps no model files.
    return ModelCheckpoint(dirpath=Path(root_dir) / "checkpoints", save_top_k=0, save_last=False)


def _pick_examples(batches, n: int) -> list[Example]:
    """The first good and the first ``n - 1`` defective test images, in test order."""
    out: list[Example] = []
    want = {0: 1, 1: max(n - 1, 0)}
    for batch in batches:
        for i in range(len(batch.gt_label)):
            label = int(batch.gt_label[i])
            if want.get(label, 0) <= 0 or batch.anomaly_map is None:
                continue
            want[label] -= 1
            mask = (
                batch.gt_mask[i].reshape(batch.gt_mask.shape[-2:]).bool()
                if batch.gt_mask is not None
                else None
            )
            anomaly_map = batch.anomaly_map[i].reshape(batch.anomaly_map.shape[-2:]).detach().clone()
            out.append(
                Example(
                    str(batch.image_path[i]),
                    anomaly_map,
                    mask,
                    label,
                    float(batch.pred_score.reshape(-1)[i]),
                )
            )
    return out


def _spro(datamodule, maps: torch.Tensor, labels: torch.Tensor, paths: list[str]) -> float | None:
    """sPRO for MVTec LOCO categories (those with ``defects_config.json``), else None."""
    config = Path(getattr(datamodule, "category_dir", "")) / "defects_config.json"
    if getattr(datamodule, "dataset_name", "") != "loco" or not config.is_file():
        return None
    samples = datamodule.test_data.samples
    mask_paths = dict(zip(samples.image_path.astype(str), samples.mask_paths, strict=True))
    files = [mask_paths.get(p, ()) if int(label) == 1 else () for p, label in zip(paths, labels, strict=True)]
    try:
        regions = regions_from_mask_files(files, load_defects_config(config))
    except ValueError as err:  # the other metrics stay valid; the row records no sPRO
        log.warning("no sPRO for %s: %s", datamodule.category, err)
        return None
    return spro_auc(maps, labels, regions) if regions else None


def evaluate(
    model,
    datamodule,
    root_dir: str,
    trainer_kwargs: dict[str, Any] | None = None,
    n_examples: int = 0,
    hardware: Hardware | None = None,
) -> Evaluation:
    """Engine.fit on the datamodule's training set, then every metric on raw predictions of its test set.

    Args:
        trainer_kwargs: extra ``Engine`` (Lightning Trainer) arguments, e.g. ``max_steps`` from the registry.
        n_examples: how many test predictions (one good image, the rest defective) to keep for plots.
        hardware: where the detector runs (default: the CPU); always one device in float32, so the scores are
            those of the published detectors whatever the generator used.
    """
    engine = Engine(
        default_root_dir=root_dir,
        accelerator=(hardware or Hardware("cpu")).resolved().accelerator,
        devices=1,
        precision="32-true",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[_no_checkpoint(root_dir)],
        **(trainer_kwargs or {}),
    )
    reset_peak_rss()
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fitted = time.perf_counter()
    batches = engine.predict(model=model, dataloaders=datamodule.test_dataloader(), return_predictions=True)
    tested = time.perf_counter()
    scores = torch.cat([b.pred_score.reshape(-1) for b in batches])
    labels = torch.cat([b.gt_label.reshape(-1) for b in batches])
    paths = [str(p) for b in batches for p in b.image_path]
    pixel = region = saturated = None
    if batches[0].gt_mask is not None and batches[0].anomaly_map is not None:
        maps = torch.cat([b.anomaly_map.reshape(-1, *b.anomaly_map.shape[-2:]) for b in batches])  # (N, H, W)
        masks = torch.cat([b.gt_mask.reshape(-1, *b.gt_mask.shape[-2:]) for b in batches]).bool()
        if masks.any():
            pixel = pixel_auroc(maps, masks)
            region = aupro(maps, masks)
        saturated = _spro(datamodule, maps, labels, paths)
    result = Scores(
        image_auroc=image_auroc(scores, labels),
        pixel_auroc=pixel,
        fit_seconds=fitted - start,
        test_seconds=tested - fitted,
        peak_rss_mb=peak_rss_mb(),
        n_train=len(datamodule.train_data),
        n_test=len(labels),
        aupro=region,
        spro=saturated,
    )
    return Evaluation(result, _pick_examples(batches, n_examples) if n_examples > 0 else [])


def fit_and_score(model, datamodule, root_dir: str, trainer_kwargs: dict[str, Any] | None = None) -> Scores:
    """``evaluate`` without examples: just the scores."""
    return evaluate(model, datamodule, root_dir, trainer_kwargs).scores
