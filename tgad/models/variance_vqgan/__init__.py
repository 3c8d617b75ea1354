"""VarianceVQGAN: a VQGAN whose extra head predicts the per-patch variance of its latents (METHOD.md section 2).

Everything imports plainly: ``tgad.recipe`` loads the Integrator package and with it Lightning, so a lazy
LightningModule saves nothing (measured: 0.02 s after ``import tgad.recipe``).
"""

from __future__ import annotations

from .augment import AugmentConfig, make_views
from .config import PRESETS, VQGANConfig, VQGANLoss, VQGANTraining
from .lightning_model import VarianceVQGAN
from .taming_import import TamingCheckpointError, load_taming_checkpoint
from .torch_model import PatchDiscriminator, SampleOutput, VarianceVQGANModel

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "PatchDiscriminator",
    "SampleOutput",
    "TamingCheckpointError",
    "VQGANConfig",
    "VQGANLoss",
    "VQGANTraining",
    "VarianceVQGAN",
    "VarianceVQGANModel",
    "load_taming_checkpoint",
    "make_views",
]
