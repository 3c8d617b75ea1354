"""VarianceVQGAN: a VQGAN whose extra head predicts the per-patch variance of its latents (METHOD.md section 2).

The configs and torch models import plainly; only the LightningModule ``VarianceVQGAN`` is imported on first
use (``__getattr__``): it imports Lightning, which ``tgad.recipe`` and the CLI's ``--help`` do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .augment import AugmentConfig, make_views
from .config import PRESETS, VQGANConfig, VQGANLoss, VQGANTraining
from .taming_import import TamingCheckpointError, load_taming_checkpoint
from .torch_model import PatchDiscriminator, SampleOutput, VarianceVQGANModel

if TYPE_CHECKING:
    from .lightning_model import VarianceVQGAN

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


def __getattr__(name: str):
    # Lazy, as it saves seconds: after `import tgad.recipe`, lightning_model costs 11.8 s, nearly all of it
    # Lightning (python -X importtime -c 'import tgad.recipe; import tgad.models.variance_vqgan.lightning_model',
    # 2 shared cores at load 6); every other name here costs about 0.02 s and is imported plainly.
    if name == "VarianceVQGAN":
        from .lightning_model import VarianceVQGAN

        return VarianceVQGAN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
