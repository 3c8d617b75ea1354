"""anomalib PatchCore with a backbone whose weights ``tgad.assets`` resolved, emitting raw scores.

Raw scores (``post_processor=False``) go to ``tgad.evaluation``, which is safe for unnormalised values; no
threshold or normalisation statistic is ever fitted, on the test split or elsewhere. The registry
(``tgad.baselines.registry``, which also resolves the weights and knows each backbone's layers) builds PatchCore
through ``make_patchcore``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anomalib.models import Patchcore
from anomalib.models.components.filters import GaussianBlur2d
from torch import nn

from tgad.assets.backbones import drop_unused_blocks
from tgad.baselines.coreset import use_fast_coreset
from tgad.baselines.raw import raw_model
from tgad.baselines.search import use_fast_search


def make_patchcore(
    backbone: str,
    layers: list[str],
    pre_trained: bool,
    image_size: int = 256,
    coreset_sampling_ratio: float = 0.1,
    num_neighbors: int = 9,
    seed: int = 0,
    bank_budget: int | None = None,
) -> Patchcore:
    """PatchCore (call inside ``use_backbone_weights``), fast seeded coreset, blocked exact nearest-patch search
    (``tgad.baselines.search``), no backbone blocks after its layers, a separable map blur, no post-processing.
    ``bank_budget``: the bank rule of ``tgad.baselines.coreset`` (None: anomalib's fixed ratio)."""
    model = raw_model(
        Patchcore,
        image_size,
        backbone=backbone,
        layers=layers,
        pre_trained=pre_trained,
        coreset_sampling_ratio=coreset_sampling_ratio,
        num_neighbors=num_neighbors,
    )
    # the same maps, without the backbone blocks after them
    drop_unused_blocks(model.model.feature_extractor.feature_extractor)
    return use_separable_blur(use_fast_search(use_fast_coreset(model, seed=seed, bank_budget=bank_budget)))


class SeparableBlur(nn.Module):
    """anomalib's ``GaussianBlur2d`` ("same" size, its border mode) as two 1-D convolutions.

    Its 2-D kernel is the outer product of one normalised 1-D Gaussian with itself, so blurring the columns then
    the rows gives the same map up to float rounding, with 2k instead of k^2 products per pixel (k = 33 for
    PatchCore's sigma of 4: a tenth of a row's time went to the blur).
    """

    def __init__(self, blur: GaussianBlur2d) -> None:
        super().__init__()
        kernel = blur.kernel[:, 0]  # (C, 1, kh, kw) -> (C, kh, kw)
        self.channels, self.padding, self.border = blur.channels, blur.padding_shape, blur.border_type
        self.register_buffer("column", kernel.sum(2)[:, None, :, None].clone())  # (C, 1, kh, 1)
        self.register_buffer("row", kernel.sum(1)[:, None, None, :].clone())  # (C, 1, 1, kw)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        padded = F.pad(maps, self.padding, mode=self.border)
        columns = F.conv2d(padded, self.column, groups=self.channels)
        return F.conv2d(columns, self.row, groups=self.channels)  # (B, C, H, W), the input's size


def use_separable_blur(patchcore: Patchcore) -> Patchcore:
    """Blur PatchCore's anomaly maps with ``SeparableBlur`` (anomalib's blur, in two passes)."""
    generator = patchcore.model.anomaly_map_generator
    if generator.blur.padding == "same":
        generator.blur = SeparableBlur(generator.blur)
    return patchcore
