"""Integrator settings (METHOD.md section 3), with the presets ``tiny``, ``cpu`` and ``paper``.

``IntegratorConfig`` holds what one round does and four groups: ``update`` (the generator's optimiser steps),
``scoring`` (the scorers' weights), ``calibration`` (tau from the shots) and ``levers`` (how a sample is
perturbed). Every leaf name is unique, so the flat names a user writes (``--set tau=2``, a recipe's
``integrator: {defect_weight: 3}``) still name one setting each: :meth:`IntegratorConfig.override` and
:meth:`IntegratorConfig.flat` translate. CLIP is the prompt config's (``PromptSelectorConfig.clip_model``): the
CLIP that chose P* is the one that scores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tgad.models.presets import FlatSettings, SettingError, check_ranges
from tgad.seeds import MAX_ROUNDS

from .names import SCORERS

# The range of every number (``check_ranges``): a NaN tau once wrote eight identical copies of the shot, and a
# patch_fraction of 1.5 failed only after the generator's fit.
RANGES = {
    "rounds": f"[0, {MAX_ROUNDS}]",  # beyond it two of a run's seed streams would meet (tgad/seeds.py)
    "samples_per_round": "[1, inf)",
    "keep_fraction": "(0, 1]",
    "pass_fraction": "(0, 1]",
    "tau": "[0, inf)",  # 0: no noise, each sample the reconstruction (the levers alone vary it)
    "patch_fraction": "(0, 1]",
    "final_pool_factor": "[1, inf)",
    "update_steps": "[0, inf)",
    "learning_rate": "(0, inf)",
    "reconstruction_weight": "[0, inf)",
    "guidance_weight": "[0, inf)",
    "fidelity_weight": "[0, inf)",
    "guidance_samples": "[0, inf)",
    "combined_clip_weight": "[0, 1]",
    "fidelity_tail": "(0, 1]",
    "fidelity_views": "[1, inf)",
    "defect_weight": "[0, inf)",
    "outlier_weight": "[0, inf)",
    "defect_count": "[1, inf)",
    "max_defect_cover": "(0, 1)",
    "max_implausible": "[0, inf]",  # inf: no limit
    "target_block": "[1, inf)",
    "code_neighbors": "[1, inf)",
    "self_similar": "[0, inf)",
}


@dataclass(frozen=True)
class UpdateSettings:
    """The generator's ``update_steps`` Adam steps after each round (``loss.py``)."""

    update_steps: int = 4
    learning_rate: float = 1e-4
    reconstruction_weight: float = 1.0  # generator reconstructs the kept images
    guidance_weight: float = 1.0  # the scorer's differentiable term on fresh samples (clip_text: 1 - cos)
    fidelity_weight: float = 1.0  # generator still reconstructs the shots (no drift)
    guidance_samples: int = 4  # differentiable samples per update step for the guidance term

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)


@dataclass(frozen=True)
class ScorerSettings:
    """The scorers' weights (``scorers.py``, ``defect_safe.py``); which scorer is ``IntegratorConfig.scorer``."""

    combined_clip_weight: float = 0.5  # w in combined = w * z(clip_text) + (1 - w) * z(shot_fidelity)
    fidelity_tail: float = 0.01  # shot_fidelity: mean of the largest 1 % of patch distances
    fidelity_views: int = 8  # shot_fidelity: the shot and 7 augmented views of it in the reference bank
    defect_weight: float = 2.0  # defect_safe: weight of defect_cover (synthetic defects of the shots hidden)
    outlier_weight: float = 0.5  # defect_safe: weight of patches beyond the shots' internal radius
    defect_count: int = 8  # defect_safe: synthetic defects made from the shots

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)


@dataclass(frozen=True)
class TauCalibration:
    """Choose tau per class from the shots before the rounds (``calibration.py``)."""

    calibrate_tau: bool = False
    max_defect_cover: float = 0.1  # the largest mean defect_cover a tau may reach
    max_implausible: float = float("inf")  # the largest mean implausible a tau may reach

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)


@dataclass(frozen=True)
class Levers:
    """How a sample departs from its shot beyond the noise (``VarianceVQGANModel.sample``)."""

    target_block: int = 1  # side of the square target patches in latent positions (1: scattered positions)
    code_neighbors: int = 1  # target positions take one of this many nearest codes at random (1: the nearest)
    self_similar: int = (
        0  # target positions take the latent of one of this many most similar positions (0: off)
    )

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)

    @property
    def sample_keywords(self) -> dict[str, int]:
        """The levers as ``VarianceVQGANModel.sample`` keywords."""
        return {
            "block": self.target_block,
            "code_neighbors": self.code_neighbors,
            "self_similar": self.self_similar,
        }


@dataclass(frozen=True)
class IntegratorConfig(FlatSettings):
    """One round: draw ``samples_per_round`` images at noise ``tau``, score them (``scorer``, see ``scorers.py``),
    keep ``keep_fraction`` of them (score threshold, then diversity), then ``update`` the generator.

    Selection: the best ``pass_fraction`` by score pass (the threshold); among them greedy farthest-point in
    feature space, seeded with the shots, picks the kept set. Ranking purely by score kept near-copies of the
    shot in a prototype (METHOD.md), so the score is a gate and variety decides among what passes.
    """

    rounds: int = 3  # R
    samples_per_round: int = 32  # M
    keep_fraction: float = 0.25  # q
    pass_fraction: float = 0.5  # share of a pool that passes the score threshold (>= keep_fraction)
    tau: float = 1.0  # noise scale of the VarianceVQGAN sampler
    patch_fraction: float = 1.0  # share of latent positions perturbed per sample ("target patches")
    final_pool_factor: float = 4.0  # the final N are chosen from about factor * N candidates
    scorer: str = "auto"  # auto | clip_text | shot_fidelity | combined | defect_safe | none (scorers.py)
    update: UpdateSettings = field(default_factory=UpdateSettings)
    scoring: ScorerSettings = field(default_factory=ScorerSettings)
    calibration: TauCalibration = field(default_factory=TauCalibration)
    levers: Levers = field(default_factory=Levers)

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)
        if self.keep_fraction > self.pass_fraction:
            raise SettingError(
                f"IntegratorConfig: need keep_fraction ({self.keep_fraction}) <= pass_fraction "
                f"({self.pass_fraction}): the kept images are chosen among those that pass"
            )
        if self.scorer not in SCORERS:
            raise SettingError(f"IntegratorConfig: scorer={self.scorer!r}; choose one of {list(SCORERS)}")

    @property
    def keep(self) -> int:
        """Images kept per round (at least one)."""
        return max(1, round(self.keep_fraction * self.samples_per_round))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> IntegratorConfig:
        """The named preset with settings replaced by flat name (None values are ignored)."""
        if name not in PRESETS:
            raise ValueError(f"IntegratorConfig: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name].override(**{k: v for k, v in overrides.items() if v is not None})


PRESETS: dict[str, IntegratorConfig] = {
    # Tests at 32 px with a tiny random CLIP: strong steps, so a short real run moves the scores.
    "tiny": IntegratorConfig(
        samples_per_round=16,
        final_pool_factor=2.0,
        # a random CLIP's scores barely move: the term needs weight to show in 24 steps
        update=UpdateSettings(update_steps=8, learning_rate=5e-3, guidance_weight=5.0, guidance_samples=16),
    ),
    # 256 px on two CPU cores: METHOD.md's defaults (R=3, M=32, q=25%) and few cheap steps. The CLIP term's
    # backward through ViT-B/32 costs ~0.35 s per image on one core, hence 2 samples per step; the final 64
    # come from ~3 x 64 candidates (experiments/generate_benchmark.py). Selection and tau: the recipe the
    # committed benchmarks rank best (issue 13, experiments/results/benchmark/issue13/): ``defect_safe`` with tau
    # calibrated from the shots; at tau = 1 with ``auto`` the sets were near-copies of the shot.
    "cpu": IntegratorConfig(
        final_pool_factor=3.0,
        scorer="defect_safe",
        update=UpdateSettings(guidance_samples=2),
        calibration=TauCalibration(calibrate_tau=True),
    ),
    "paper": IntegratorConfig(update=UpdateSettings(update_steps=20, learning_rate=5e-5, guidance_samples=8)),
}
