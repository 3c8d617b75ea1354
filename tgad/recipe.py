"""One recipe: every setting of a generation and of the benchmark around it, from a preset name plus overrides.

Before it, a preset's numbers had seven homes that disagreed (the three model configs, the chain's table, the
benchmark's table, the registry and ``conf/``). Now:

- the three model configs keep their own named presets (``VQGANConfig``, ``IntegratorConfig``,
  ``PromptSelectorConfig``): each is the architecture of one model, handed whole to its LightningModule (the
  chain passes ``recipe.vqgan`` / ``recipe.prompt`` as they are) and spelled whole in ``conf/``;
- ``Recipe`` adds what belongs to a whole run (image sides, the generator fit's iterations, batch sizes) and
  holds the three resolved configs, so a run reads one object, built once, written to the manifest as YAML;
- the detectors' step budgets stay with each detector in ``tgad.baselines.registry`` (they differ per model),
  indexed by ``Recipe.preset``; ``PRESETS`` here is the one list of preset names.

``tests/test_recipe.py`` proves every ``conf/**/*.yaml`` instantiates its classes and agrees with the recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tgad.data.images import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from tgad.models.integrator.config import IntegratorConfig
from tgad.models.presets import check_ranges, flatten, from_preset
from tgad.models.prompt_selector.config import PromptSelectorConfig
from tgad.models.variance_vqgan.config import VQGANConfig

PRIOR_NONE, PRIOR_OTHER = "none", "other_categories"
RUN_RANGES = {
    "generator_image_size": f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]",
    "detector_image_size": f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}]",
    "vqgan_iterations": "[1, inf)",
    "train_batch_size": "[1, inf)",
    "eval_batch_size": "[1, inf)",
    "vqgan_plateau": "[0, 1)",
}


@dataclass(frozen=True)
class RunSettings:
    """What a preset fixes beyond the three models."""

    # Side of the shots as the generator sees them and of the images it writes. The detector reads every
    # training image (shots and extra ones alike) at its own ``detector_image_size``; at ``tiny`` the 32 px
    # generator keeps the tests fast and its images are resized like any other file.
    generator_image_size: int
    detector_image_size: int
    vqgan_iterations: int  # generator + discriminator steps of the VarianceVQGAN fit (2 optimiser steps each)
    train_batch_size: int  # detector fit
    eval_batch_size: int  # detector test and validation
    # The fit stops early once its smoothed reconstruction loss improves by less than this (relative) per 25
    # iterations, twice running (``variance_vqgan/plateau.py``); 0 runs all ``vqgan_iterations``.
    vqgan_plateau: float = 0.0
    # Where the generator fit starts (``tgad/generate/prior.py``): ``none`` (random weights: pure k-shot),
    # ``other_categories`` (a VarianceVQGAN fitted once on the train/good images of the dataset's other
    # categories: the "auxiliary normal data" protocol), or the path of a VarianceVQGAN weight file or of a
    # taming-transformers VQGAN checkpoint (its architecture replaces the preset's: tgad/generate/prior.py).
    prior: str = PRIOR_NONE
    prior_iterations: int = 1000  # iterations of the other-categories prior fit (once per excluded category)
    prior_batch_size: int = (
        4  # corpus images per prior iteration (each gives ``views`` views, as a shot does)
    )

    def __post_init__(self) -> None:
        if self.prior not in (PRIOR_NONE, PRIOR_OTHER) and not Path(self.prior).expanduser().is_file():
            raise ValueError(
                f"prior {self.prior!r}: not a file; use none, {PRIOR_OTHER} or the path of a VarianceVQGAN "
                "weight file (a cached fit or prior) or of a taming-transformers VQGAN checkpoint"
            )
        if self.prior_iterations < 1 or self.prior_batch_size < 1:
            raise ValueError(
                f"prior_iterations ({self.prior_iterations}) and prior_batch_size ({self.prior_batch_size}) "
                "must be >= 1"
            )
        check_ranges(self, RUN_RANGES)


RUN_PRESETS: dict[str, RunSettings] = {
    "tiny": RunSettings(
        32, 64, vqgan_iterations=60, train_batch_size=8, eval_batch_size=8, prior_iterations=20
    ),
    # 300 iterations: issue 13's measured recipe (600 cost twice as long and ranked no better)
    "cpu": RunSettings(256, 256, vqgan_iterations=300, train_batch_size=8, eval_batch_size=8),
    "paper": RunSettings(
        256, 256, vqgan_iterations=5000, train_batch_size=32, eval_batch_size=32, prior_iterations=10000
    ),
}
PRESETS = tuple(RUN_PRESETS)


@dataclass(frozen=True)
class Recipe:
    """A resolved preset: run settings plus the three model configs. Build it with :meth:`build`."""

    preset: str
    run: RunSettings
    vqgan: VQGANConfig
    integrator: IntegratorConfig
    prompt: PromptSelectorConfig

    @classmethod
    def build(
        cls,
        preset: str = "cpu",
        *,
        run: Mapping[str, Any] | None = None,
        vqgan: Mapping[str, Any] | None = None,
        integrator: Mapping[str, Any] | None = None,
        prompt: Mapping[str, Any] | None = None,
    ) -> Recipe:
        """``preset`` with field overrides per part (None values are ignored); an unknown name is a ValueError."""

        def given(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
            return {k: v for k, v in (overrides or {}).items() if v is not None}

        if preset not in RUN_PRESETS:
            raise ValueError(f"--preset {preset!r}: choose one of {list(PRESETS)}")
        return cls(
            preset=preset,
            run=from_preset(RunSettings, RUN_PRESETS, preset, given(run)),
            vqgan=VQGANConfig.preset(preset, **given(vqgan)),
            integrator=IntegratorConfig.preset(preset, **given(integrator)),
            prompt=PromptSelectorConfig.preset(preset, **given(prompt)),
        )

    def overrides(self) -> dict[str, dict[str, Any]]:
        """The fields that differ from the plain preset, per part: what a user changed."""
        plain = Recipe.build(self.preset)
        changed: dict[str, dict[str, Any]] = {}
        for part in ("run", "vqgan", "integrator", "prompt"):
            mine, base = flatten(getattr(self, part)), flatten(getattr(plain, part))
            diff = {k: v for k, v in mine.items() if v != base[k]}
            if diff:
                changed[part] = diff
        return changed

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.overrides()}

    def to_yaml(self) -> str:
        """The preset name and the overrides: ``Recipe.from_yaml`` rebuilds the same recipe."""
        return yaml.safe_dump(_plain(self.to_dict()), sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> Recipe:
        data = yaml.safe_load(text) or {}
        unknown = set(data) - {"preset", "run", "vqgan", "integrator", "prompt"}
        if unknown:
            raise ValueError(
                f"recipe YAML: unknown key(s) {sorted(unknown)}; use preset, run, vqgan, integrator, prompt"
            )
        parts = {k: _tuples(v) for k, v in data.items() if k != "preset"}
        return cls.build(data.get("preset", "cpu"), **parts)


def _plain(value: Any) -> Any:
    """Tuples as lists, so ``yaml.safe_dump`` writes plain YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuples(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Lists read from YAML back as the tuples the frozen configs hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
