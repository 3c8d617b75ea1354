"""Integrator: R rounds of {sample, score (CLIP(image, P*) and/or shot fidelity), keep with diversity,
update} over a fitted VarianceVQGAN, then the final N images (METHOD.md section 3).

``Integrator`` (LightningModule) is imported lazily so the pure parts load without Lightning.
"""

from __future__ import annotations

from tgad.models.lazy import lazy_exports

_EXPORTS = {
    "Integrator": "lightning_model",
    "RoundRecord": "records",
    "FinalSet": "records",
    "choose_final": "records",
    "IntegratorConfig": "config",
    "PRESETS": "config",
    "Selection": "selection",
    "PoolCheck": "selection",
    "check_pool": "selection",
    "clip_scores": "selection",
    "farthest_point": "selection",
    "quantize_uint8": "selection",
    "select_diverse": "selection",
    "Pool": "torch_model",
    "differentiable_samples": "torch_model",
    "draw_pool": "torch_model",
    "feature_vectors": "torch_model",
    "load_generator_state": "torch_model",
    "integrator_loss": "loss",
    "SCORERS": "names",
    "Scorer": "scorers",
    "ShotFidelity": "scorers",
    "ClipText": "scorers",
    "PatchFeatures": "scorers",
    "resolve_scorer": "scorers",
    "random_choice": "scorers",
    "IntegratorLossOutput": "loss",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
