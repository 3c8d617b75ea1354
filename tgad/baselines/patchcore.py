"""anomalib PatchCore with a backbone whose weights ``tgad.assets`` resolved, emitting raw scores.

Raw scores (``post_processor=False``) go to ``tgad.evaluation``, which is safe for unnormalised values; no
threshold or normalisation statistic is ever fitted, on the test split or elsewhere. The registry
(``tgad.baselines.registry``) builds PatchCore through ``make_patchcore``; ``build_patchcore`` is the
stand-alone shortcut that also resolves the weights.
"""

from __future__ import annotations

from anomalib.models import Patchcore

from tgad.assets import ResolvedWeights, use_backbone_weights
from tgad.baselines.coreset import use_fast_coreset
from tgad.baselines.raw import raw_model

# Feature layers of the backbones tgad resolves offline (stride 8 and 16, as ResNet's layer2/layer3).
DEFAULT_LAYERS = {
    "tf_efficientnet_lite0": ["blocks.2", "blocks.4"],
    "resnet18": ["layer2", "layer3"],
    "wide_resnet50_2": ["layer2", "layer3"],
}


def make_patchcore(
    backbone: str,
    layers: list[str] | None,
    pre_trained: bool,
    image_size: int = 256,
    coreset_sampling_ratio: float = 0.1,
    num_neighbors: int = 9,
    seed: int = 0,
    bank_budget: int | None = None,
) -> Patchcore:
    """PatchCore (call inside ``use_backbone_weights``), fast seeded coreset, no post-processing.
    ``bank_budget``: the bank rule of ``tgad.baselines.coreset`` (None: anomalib's fixed ratio)."""
    model = raw_model(
        Patchcore,
        image_size,
        backbone=backbone,
        layers=layers or DEFAULT_LAYERS.get(backbone, ["layer2", "layer3"]),
        pre_trained=pre_trained,
        coreset_sampling_ratio=coreset_sampling_ratio,
        num_neighbors=num_neighbors,
    )
    return use_fast_coreset(model, seed=seed, bank_budget=bank_budget)


def build_patchcore(
    backbone: str = "tf_efficientnet_lite0",
    layers: list[str] | None = None,
    image_size: int = 256,
    coreset_sampling_ratio: float = 0.1,
    num_neighbors: int = 9,
    seed: int = 0,
    allow_random_backbone: bool = False,
) -> tuple[Patchcore, ResolvedWeights]:
    """PatchCore over ``backbone`` (real weights or an AssetError), fast seeded coreset, no post-processing."""
    with use_backbone_weights(backbone, allow_random=allow_random_backbone) as weights:
        model = make_patchcore(
            backbone, layers, not weights.is_random, image_size, coreset_sampling_ratio, num_neighbors, seed
        )
    return model, weights
