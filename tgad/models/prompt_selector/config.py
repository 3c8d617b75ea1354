"""PromptSelector settings, with presets: ``tiny`` (tests: a 3.4 M-parameter CLIP that has no weights, so
random weights are allowed and marked), ``cpu`` and ``paper`` (ViT-B/32 with OpenAI's weights; the paper does
not name its CLIP variant, B/32 is CLIP's common default)."""

from __future__ import annotations

from dataclasses import dataclass

from tgad.assets.clip import TINY_CLIP
from tgad.models.presets import check_ranges, from_preset
from tgad.text.templates import DEFAULT_TEMPLATE, TEMPLATES


@dataclass(frozen=True)
class PromptSelectorConfig:
    num_words: int = 64  # T, the number of WordNet words per class
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    clip_model: str = "ViT-B-32"
    clip_weights: str | None = None  # a checkpoint file or an open_clip tag; None = "openai"
    allow_random_clip: bool = False
    text_batch_size: int = 256

    def __post_init__(self) -> None:
        check_ranges(self, {"num_words": "[1, inf)", "text_batch_size": "[1, inf)"})
        if not self.templates:
            raise ValueError("templates must hold at least one template with {object} and {word}")

    @classmethod
    def preset(cls, name: str, **overrides) -> PromptSelectorConfig:
        """The named preset, with any field replaced by ``overrides``."""
        return from_preset(cls, PRESETS, name, overrides)


PRESETS: dict[str, PromptSelectorConfig] = {
    "tiny": PromptSelectorConfig(
        num_words=16, clip_model=TINY_CLIP, allow_random_clip=True, text_batch_size=64
    ),
    "cpu": PromptSelectorConfig(templates=TEMPLATES["all"]),
    "paper": PromptSelectorConfig(templates=TEMPLATES["paper"]),
}
