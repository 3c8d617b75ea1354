"""Size and training settings of the VarianceVQGAN (the architecture, then the groups ``training`` and ``loss``),
with the presets ``tiny``, ``cpu`` and ``paper``, and the taming-transformers layouts ``taming_f16_1024`` (imports
``vqgan_imagenet_f16_1024``) and ``taming_tiny`` (tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tgad.models.presets import FlatSettings, SettingError, check_ranges, from_preset

PresetName = Literal["tiny", "cpu", "paper", "taming_tiny", "taming_f16_1024"]
Architecture = Literal["tgad", "taming"]
TAMING_GROUPS = 32  # taming's Normalize: GroupNorm(32) everywhere, so every width must be a multiple of 32

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
class VQGANTraining:
    """How a fit runs: what one step sees, the optimiser, when the discriminator joins, how the codebook learns."""

    crop_size: int = 128  # training crop side (0 = whole image): the net is convolutional, crops are cheaper
    views: int = 4  # aligned augmented views per shot and step (>= 2: the variance target needs a spread)
    # k > 1: align the shots to shot 0 before the cross-shot spread is taken: none | rigid | auto (a rigid fit
    # only where it clearly beats the identity; tgad/features/registration.py)
    register_shots: str = "auto"
    learning_rate: float = 4e-4
    disc_start: int = 400  # generator iterations before the adversarial term is switched on
    ema_decay: float = 0.95  # few-shot runs are short: a slow EMA would still hold its random init
    dead_code_threshold: float = 0.03  # EMA count below which a code is restarted from a live latent

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)
        if self.register_shots not in ("none", "rigid", "auto"):
            raise ValueError(
                f"VQGANConfig: register_shots={self.register_shots!r}; set it to none, rigid or auto"
            )


@dataclass(frozen=True)
class VQGANLoss:
    """Weights of the generator's loss terms (``loss.py``) and the quantiser's commitment term."""

    nll_weight: float = 1.0
    perceptual_weight: float = 1.0
    disc_weight: float = 0.5
    cross_shot_weight: float = 1.0  # share of the spread across shots (k > 1) in the variance target
    commitment_beta: float = 0.25

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)


@dataclass(frozen=True)
class VQGANConfig(FlatSettings):
    """The architecture, with the fit's settings in two groups: ``training`` (:class:`VQGANTraining`) and
    ``loss`` (:class:`VQGANLoss`). Augmentation lives in :class:`~.augment.AugmentConfig`.

    Every leaf name is unique, so a setting keeps its flat name wherever a user writes one (a recipe's
    ``vqgan: {disc_start: 0}``, ``VQGANConfig.preset("tiny", crop_size=16)``): :meth:`flat` and
    :meth:`override` translate; a LightningCLI YAML and a checkpoint spell the groups nested.

    The downsampling factor is ``2 ** (len(channel_mult) - 1)``: a 256 px image with four levels gives a
    32 x 32 grid of latent vectors, the "patches" whose variance the variance head predicts.

    ``architecture="taming"`` builds taming-transformers' encoder/decoder (``taming_layout.py``) and its BatchNorm
    PatchGAN, so a taming ``VQModel`` checkpoint loads as is (``taming_import.py``). Its names map as
    ``ch`` = base_channels, ``ch_mult`` = channel_mult, ``embed_dim`` = latent_dim, ``n_embed`` =
    codebook_size, ``z_channels`` = z_channels, ``disc_ndf`` = disc_channels, ``disc_num_layers`` =
    disc_layers; ``attn_resolutions`` [16] at ``resolution`` 256 is level 4 (256 / 2**4 = 16): attn_levels (4,).
    """

    base_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    latent_dim: int = 32  # d: size of one latent vector and of one codebook entry
    # METHOD.md lesson: a 512-code book for one image fills with near-duplicates; 64-128 keeps codes distinct.
    codebook_size: int = 128
    disc_channels: int = 32
    disc_layers: int = 2
    architecture: Architecture = "tgad"
    z_channels: int = 0  # taming only: encoder output width before quant_conv (0 = latent_dim)
    attn_levels: tuple[int, ...] = ()  # taming only: levels (0 = full resolution) with self-attention blocks
    training: VQGANTraining = field(default_factory=VQGANTraining)
    loss: VQGANLoss = field(default_factory=VQGANLoss)

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)
        if not self.channel_mult:
            raise SettingError("VQGANConfig: channel_mult needs at least one level, e.g. (1, 2, 2, 4)")
        if self.architecture not in ("tgad", "taming"):
            raise ValueError(
                f"VQGANConfig: architecture must be 'tgad' or 'taming', got {self.architecture!r}"
            )
        if self.architecture == "taming":
            widths = {self.base_channels * m for m in self.channel_mult}
            if any(w % TAMING_GROUPS for w in widths):
                raise ValueError(
                    f"VQGANConfig: architecture 'taming' normalises in {TAMING_GROUPS} groups, so every "
                    f"base_channels x channel_mult must be a multiple of {TAMING_GROUPS} (got {sorted(widths)})"
                )
            bad = [lv for lv in self.attn_levels if not 0 <= lv < len(self.channel_mult)]
            if bad:
                raise ValueError(
                    f"VQGANConfig: attn_levels {bad} outside the {len(self.channel_mult)} levels of channel_mult"
                )

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def encoder_channels(self) -> int:
        """Width of the encoder's output before the projection to the codebook (taming's ``z_channels``)."""
        return self.z_channels or self.latent_dim

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VQGANConfig:
        """The named preset, with settings replaced by flat name (``override``)."""
        return from_preset(cls, PRESETS, name, overrides)


PRESETS: dict[str, VQGANConfig] = {
    # Tests at 32 px: 8 x 8 latents, a few thousand parameters, a training step in milliseconds.
    "tiny": VQGANConfig(
        base_channels=8,
        channel_mult=(1, 2, 2),
        latent_dim=8,
        codebook_size=64,
        disc_channels=8,
        disc_layers=2,
        training=VQGANTraining(crop_size=0, learning_rate=2e-3, disc_start=50),
        loss=VQGANLoss(perceptual_weight=0.1),
    ),
    # 256 px on two CPU cores: one shot fitted in a few minutes (see experiments/variance_vqgan_benchmark.py).
    "cpu": VQGANConfig(),
    # GPU size: taming's f8 layout (no attention), two residual blocks per level, wider everything.
    "paper": VQGANConfig(
        base_channels=128,
        channel_mult=(1, 1, 2, 4),
        num_res_blocks=2,
        latent_dim=64,
        codebook_size=128,
        disc_channels=64,
        disc_layers=3,
        training=VQGANTraining(crop_size=0, views=8, learning_rate=2e-4, disc_start=2000, ema_decay=0.99),
        loss=VQGANLoss(disc_weight=0.8),
    ),
    # taming-transformers' vqgan_imagenet_f16_1024 (ImageNet, 256 px -> 16 x 16 codes of 1024): the layout its
    # model.ckpt/last.ckpt loads into; the training settings are the paper preset's.
    "taming_f16_1024": VQGANConfig(
        architecture="taming",
        base_channels=128,
        channel_mult=(1, 1, 2, 2, 4),
        num_res_blocks=2,
        attn_levels=(4,),
        latent_dim=256,
        z_channels=256,
        codebook_size=1024,
        disc_channels=64,
        disc_layers=2,
        training=VQGANTraining(crop_size=0, views=8, learning_rate=2e-4, disc_start=2000, ema_decay=0.99),
        loss=VQGANLoss(disc_weight=0.8),
    ),
    # The same layout at test size (32 px -> 8 x 8 codes, attention at the coarsest level): tests write a
    # checkpoint in taming's key layout and import it in well under a second.
    "taming_tiny": VQGANConfig(
        architecture="taming",
        base_channels=32,
        channel_mult=(1, 1, 2),
        num_res_blocks=1,
        attn_levels=(2,),
        latent_dim=8,
        z_channels=16,
        codebook_size=64,
        disc_channels=32,
        disc_layers=2,
        training=VQGANTraining(crop_size=0, learning_rate=2e-3, disc_start=50),
        loss=VQGANLoss(perceptual_weight=0.1),
    ),
}
