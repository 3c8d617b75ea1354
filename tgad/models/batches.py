"""A batch's images, whatever the loop hands a LightningModule: a tensor (tests, scripts), an anomalib/tgad
batch (``.image``, and ``.gt_label`` for ``normal_only``) or a tuple whose first item is the images. The
VarianceVQGAN and the Integrator read their shots through it."""

from __future__ import annotations

from typing import Any

import torch


def batch_images(batch: Any, normal_only: bool = False) -> torch.Tensor:
    """(B, 3, H, W) images of ``batch``; ``normal_only``: those with ``gt_label == 0`` (all without labels)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if not hasattr(batch, "image"):
        return batch[0]
    labels = getattr(batch, "gt_label", None)
    if not normal_only or labels is None:
        return batch.image
    return batch.image[labels.to(batch.image.device).view(-1) == 0]
