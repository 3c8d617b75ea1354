"""Prompt templates (data) and the candidate prompts built from an object name and its words.

The paper combines the object name W_o with each word W_t ("a Metal-nut with metallical"); tgad's default
template is that form. The photo-style templates follow CLIP's zero-shot prompt style.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

DEFAULT_TEMPLATE = "a {object} with {word}"
PHOTO_TEMPLATES: tuple[str, ...] = (
    "a photo of a {object} with {word}",
    "a photo of a {word} {object}",
    "a close-up photo of a {word} {object}",
    "an industrial photo of a {word} {object}",
)
TEMPLATES: dict[str, tuple[str, ...]] = {
    "paper": (DEFAULT_TEMPLATE,),
    "photo": PHOTO_TEMPLATES,
    "all": (DEFAULT_TEMPLATE, *PHOTO_TEMPLATES),
}

# "a intact" -> "an intact"; words whose vowel sounds like a consonant keep "a".
_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])(?!uni|use|usu|uti|eu|one|once)")


class Candidate(NamedTuple):
    prompt: str
    word: str
    template: str


def check_template(template: str) -> str:
    """Raise a one-line ValueError unless ``template`` has exactly the fields {object} and {word}."""
    fields = set(re.findall(r"{(\w*)}", template))
    if fields != {"object", "word"}:
        raise ValueError(
            f"prompt template {template!r} must contain {{object}} and {{word}} and no other field"
        )
    return template


def fill(template: str, object_name: str, word: str) -> str:
    """One prompt, with "a"/"an" fixed before the inserted words."""
    return _A_BEFORE_VOWEL.sub(r"\1n ", template.format(object=object_name, word=word))


def candidate_prompts(
    object_name: str, words: Sequence[str], templates: Sequence[str] = (DEFAULT_TEMPLATE,)
) -> list[Candidate]:
    """Every (template, word) prompt, template-major in the given order, duplicate prompts dropped."""
    if not words:
        raise ValueError(f"no words to build prompts for {object_name!r}")
    if not templates:
        raise ValueError("no prompt templates given")
    seen: set[str] = set()
    out = []
    for template in map(check_template, templates):
        for word in words:
            prompt = fill(template, object_name, word)
            if prompt not in seen:
                seen.add(prompt)
                out.append(Candidate(prompt, word, template))
    return out
