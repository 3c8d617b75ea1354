"""Text side of tgad: class -> WordNet sense table, WordNet words, prompt templates, CLIP embeddings."""

from tgad.text.clip_embed import encode_images, encode_text, model_fingerprint
from tgad.text.keywords import (
    KeywordSense,
    class_table,
    known_categories,
    normalise_category,
    resolve_keyword,
)
from tgad.text.templates import DEFAULT_TEMPLATE, TEMPLATES, Candidate, candidate_prompts
from tgad.text.wordnet_words import STATUS_SEEDS, status_words

__all__ = [
    "DEFAULT_TEMPLATE",
    "STATUS_SEEDS",
    "TEMPLATES",
    "Candidate",
    "KeywordSense",
    "candidate_prompts",
    "class_table",
    "encode_images",
    "encode_text",
    "known_categories",
    "model_fingerprint",
    "normalise_category",
    "resolve_keyword",
    "status_words",
]
