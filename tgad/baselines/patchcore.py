"""anomalib PatchCore with a backbone whose weights ``tgad.assets`` resolved, emitting raw scores.

Raw scores (``post_processor=False``) go to ``tgad.evaluation``, which is safe for unnormalised values; no
threshold or normalisation statistic is ever fitted, on the test split or elsewhere. The registry
(``tgad.baselines.registry``, which also resolves the weights and knows each backbone's layers) builds PatchCore
through ``make_patchcore``.
"""

from __future__ import annotations

from anomalib.models import Patchcore

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
    (``tgad.baselines.search``), no backbone blocks after its layers, no post-processing.
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
    return use_fast_search(use_fast_coreset(model, seed=seed, bank_budget=bank_budget))
