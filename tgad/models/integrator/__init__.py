"""Integrator: R rounds of {sample, score (CLIP(image, P*) and/or shot fidelity), keep with diversity,
update} over a fitted VarianceVQGAN, then the final N images (METHOD.md section 3).

Plain imports: ``tgad.cli.main`` loads torch and Lightning anyway (via ``tgad.recipe`` it loads this package
too); the rest of the package costs it about 0.2 s of 15-19 s (``python -X importtime -c 'import
tgad.cli.main'``, two loaded CPU cores), so no lazy export saves start-up time here.
"""

from __future__ import annotations

from .config import PRESETS, IntegratorConfig
from .lightning_model import Integrator
from .loss import integrator_loss
from .names import SCORERS
from .records import FinalSet, RoundRecord
from .scorers import ClipText, PatchFeatures, Scorer, ShotFidelity, random_choice, resolve_scorer
from .selection import PoolCheck, Selection, check_pool, farthest_point, select_diverse
from .torch_model import Pool, differentiable_samples, draw_pool, load_generator_state

__all__ = [
    "PRESETS",
    "SCORERS",
    "ClipText",
    "FinalSet",
    "Integrator",
    "IntegratorConfig",
    "PatchFeatures",
    "Pool",
    "PoolCheck",
    "RoundRecord",
    "Scorer",
    "Selection",
    "ShotFidelity",
    "check_pool",
    "differentiable_samples",
    "draw_pool",
    "farthest_point",
    "integrator_loss",
    "load_generator_state",
    "random_choice",
    "resolve_scorer",
    "select_diverse",
]
