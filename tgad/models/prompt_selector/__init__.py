"""PromptSelector: class keyword -> WordNet words -> candidate prompts -> P* by CLIP (METHOD.md section 1).

Everything imports plainly: ``tgad.recipe`` loads the Integrator package and with it Lightning, so a lazy
LightningModule saves nothing (measured: 0.02 s after ``import tgad.recipe``).
"""

from __future__ import annotations

from .config import PRESETS, PromptSelectorConfig
from .lightning_model import PromptSelector
from .selector import (
    PromptSelection,
    RankedPrompt,
    build_candidates,
    rank_prompts,
    save_selection,
    select_prompt,
    shot_embedding,
)

__all__ = [
    "PRESETS",
    "PromptSelection",
    "PromptSelector",
    "PromptSelectorConfig",
    "RankedPrompt",
    "build_candidates",
    "rank_prompts",
    "save_selection",
    "select_prompt",
    "shot_embedding",
]
