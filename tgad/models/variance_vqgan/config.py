"""Size and training settings of the VarianceVQGAN, with the presets ``tiny``, ``cpu`` and ``paper``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tgad.models.presets import SettingError, check_ranges, from_preset

PresetName = Literal["tiny", "cpu", "paper"]

RANGES = {  # ``check_ranges``: every number, before a layer is built
    "base_channels": "[1, inf)",
    "channel_mult": "[1, inf)",
    "num_res_blocks": "[0, inf)",
    "latent_dim": "[1, inf)",
    "codebook_size": "[1, inf)",
    "ema_decay": "[0, 1)",
    "commitment_beta": "[0, inf)",
    "dead_code_threshold": "[0, inf)",
    "disc_channels": "[1, inf)",
    "disc_layers": "[0, inf)",
    "crop_size": "[0, inf)",
    "views": "[1, inf)",
    "learning_rate": "(0, inf)",
    "disc_start": "[0, inf)",
    "disc_weight": "[0, inf)",
    "perceptual_weight": "[0, inf)",
    "nll_weight": "[0, inf)",
    "cross_shot_weight": "[0, inf)",
}


@dataclass(frozen=True)
class VQGANConfig:
    """Architecture and loss settings. Augmentation lives in :class:`~.augment.AugmentConfig`.

    The downsampling factor is ``2 ** (len(channel_mult) - 1)``: a 256 px image with four levels gives a
    32 x 32 grid of latent vectors, the "patches" whose variance the variance head predicts.
    """

    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    latent_dim: int = 32  # d: size of one latent vector and of one codebook entry
    # METHOD.md lesson: a 512-code book for one image fills with near-duplicates; 64-128 keeps codes distinct.
    codebook_size: int = 128
    ema_decay: float = 0.95  # few-shot runs are short: a slow EMA would still hold its random init
    commitment_beta: float = 0.25
    dead_code_threshold: float = 0.03  # EMA count below which a code is restarted from a live latent
    disc_channels: int = 32
    disc_layers: int = 2
    crop_size: int = 128  # training crop side (0 = whole image): the net is convolutional, crops are cheaper
    views: int = 4  # aligned augmented views per shot and step (>= 2: the variance target needs a spread)
    learning_rate: float = 4e-4
    disc_start: int = 400  # generator iterations before the adversarial term is switched on
    disc_weight: float = 0.5
    perceptual_weight: float = 1.0
    nll_weight: float = 1.0
    cross_shot_weight: float = 1.0  # share of the spread across shots (k > 1) in the variance target

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)
        if not self.channel_mult:
            raise SettingError("VQGANConfig: channel_mult needs at least one level, e.g. (1, 2, 2, 4)")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def preset(cls, name: str, **overrides) -> VQGANConfig:
        """The named preset, with any field replaced by ``overrides``."""
        return from_preset(cls, PRESETS, name, overrides)


PRESETS: dict[str, VQGANConfig] = {
    # Tests at 32 px: 8 x 8 latents, a few thousand parameters, a training step in milliseconds.
    "tiny": VQGANConfig(
        base_channels=8,
        crop_size=0,
        channel_mult=(1, 2, 2),
        latent_dim=8,
        codebook_size=64,
        disc_channels=8,
        disc_layers=2,
        learning_rate=2e-3,
        disc_start=50,
        perceptual_weight=0.1,
    ),
    # 256 px on two CPU cores: one shot fitted in a few minutes (see experiments/variance_vqgan_benchmark.py).
    "cpu": VQGANConfig(),
    # GPU size: taming's f8 layout (no attention), two residual blocks per level, wider everything.
    "paper": VQGANConfig(
        base_channels=128,
        crop_size=0,
        views=8,
        channel_mult=(1, 1, 2, 4),
        num_res_blocks=2,
        latent_dim=64,
        codebook_size=128,
        ema_decay=0.99,
        disc_channels=64,
        disc_layers=3,
        learning_rate=2e-4,
        disc_start=2000,
        disc_weight=0.8,
    ),
}
