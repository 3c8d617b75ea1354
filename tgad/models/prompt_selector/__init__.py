"""PromptSelector: class keyword -> WordNet words -> candidate prompts -> P* by CLIP (METHOD.md section 1)."""

from tgad.models.prompt_selector.config import PRESETS, PromptSelectorConfig
from tgad.models.prompt_selector.lightning_model import PromptSelector
from tgad.models.prompt_selector.selector import (
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
