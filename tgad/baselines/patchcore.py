"""anomalib PatchCore with a backbone whose weights ``tgad.assets`` resolved, emitting raw scores.

Raw scores (``post_processor=False``) go to ``tgad.evaluation``, which is safe for unnormalised values; no
threshold or normalisation statistic is ever fitted, on the test split or elsewhere. The registry
(``tgad.baselines.registry``, which also resolves the weights and knows each backbone's layers) builds PatchCore
through ``make_patchcore``.
"""

from __future__ import annotations

from anomalib.models import Patchcore

from tgad.baselines.coreset import use_fast_coreset
from tgad.baselines.raw import raw_model


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
    """PatchCore (call inside ``use_backbone_weights``), fast seeded coreset, no post-processing.
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
    return use_fast_coreset(model, seed=seed, bank_budget=bank_budget)
