"""PromptSelector: class keyword -> WordNet words -> candidate prompts -> P* by CLIP (METHOD.md section 1).

The config and the selection functions import plainly; only the LightningModule ``PromptSelector`` is
imported on first use (``__getattr__``): it imports Lightning, which ``tgad.recipe`` and the CLI's ``--help``
do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import PRESETS, PromptSelectorConfig
from .selector import (
    PromptSelection,
    RankedPrompt,
    build_candidates,
    rank_prompts,
    save_selection,
    select_prompt,
    shot_embedding,
)

if TYPE_CHECKING:
    from .lightning_model import PromptSelector

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


def __getattr__(name: str):
    # Lazy, as it saves seconds: after `import tgad.recipe`, lightning_model costs 9.8 s, nearly all of it
    # Lightning (python -X importtime -c 'import tgad.recipe; import tgad.models.prompt_selector.lightning_model',
    # 2 shared cores at load 6); every other name here costs about 0.02 s and is imported plainly.
    if name == "PromptSelector":
        from .lightning_model import PromptSelector

        return PromptSelector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
