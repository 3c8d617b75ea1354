"""PromptSelector: class keyword -> WordNet words -> candidate prompts -> P* by CLIP (METHOD.md section 1).

Imported lazily, as the Integrator's package, so that its config loads without Lightning (``tgad.recipe``
and the CLI's ``--help`` read it).
"""

from __future__ import annotations

from tgad.models.lazy import lazy_exports

_EXPORTS = {
    "PRESETS": "config",
    "PromptSelectorConfig": "config",
    "PromptSelector": "lightning_model",
    "PromptSelection": "selector",
    "RankedPrompt": "selector",
    "build_candidates": "selector",
    "rank_prompts": "selector",
    "save_selection": "selector",
    "select_prompt": "selector",
    "shot_embedding": "selector",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
