"""VarianceVQGAN: a VQGAN whose extra head predicts the per-patch variance of its latents (METHOD.md section 2).

``VarianceVQGAN`` (LightningModule) is imported lazily so ``torch_model`` and ``config`` load without Lightning.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "VarianceVQGAN": "lightning_model",
    "VQGANConfig": "config",
    "PRESETS": "config",
    "AugmentConfig": "augment",
    "make_views": "augment",
    "VarianceVQGANModel": "torch_model",
    "PatchDiscriminator": "torch_model",
    "SampleOutput": "torch_model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
