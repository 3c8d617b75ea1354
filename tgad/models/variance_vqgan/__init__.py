"""VarianceVQGAN: a VQGAN whose extra head predicts the per-patch variance of its latents (METHOD.md section 2).

``VarianceVQGAN`` (LightningModule) is imported lazily so ``torch_model`` and ``config`` load without Lightning.
"""

from __future__ import annotations

from tgad.models.lazy import lazy_exports

_EXPORTS = {
    "VarianceVQGAN": "lightning_model",
    "VQGANConfig": "config",
    "PRESETS": "config",
    "AugmentConfig": "augment",
    "make_views": "augment",
    "VarianceVQGANModel": "torch_model",
    "PatchDiscriminator": "torch_model",
    "SampleOutput": "torch_model",
    "load_taming_checkpoint": "taming_import",
    "TamingCheckpointError": "taming_import",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
