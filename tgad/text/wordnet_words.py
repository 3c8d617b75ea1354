"""The T words {W_1..W_T} of a class: WordNet relatives of its noun sense, plus normal-state "status" words.

Object words: lemma names of the synset, its direct hypernyms and direct hyponyms (bottle -> vessel,
carafe, flask, ...). Status words: lemmas of seed adjective senses that describe a defect-free state, and of
the senses reached from them in one hop through WordNet's similar-to, also-see and attribute links
(perfect -> ideal, mint, unblemished, perfection, ...). The seeds are synset names, not words, so each
seed has one fixed meaning ("new" as "unaffected by use", not "novel").

Order is deterministic: object words follow the relations above, status words list the seeds first and then
each seed's neighbours (sorted by synset name);
the two lists are interleaved (object, status, object, ...) so that any T gets both kinds of words.

Noise removed (a decision, recorded in the README's method notes):
- lemmas with an upper-case letter (proper names and acronyms: "Phillips_screw", "Kurdistan", "FET"),
- lemmas with a digit, and lemmas of more than two words ("moving-picture_show" counts as two),
- the object name itself ("a bottle with bottle") and duplicates (case-insensitive, first kept),
- status lemmas reached through senses unrelated to condition (``STATUS_BLOCKLIST``: "cold", "down pat").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import zip_longest

from tgad.text.keywords import wordnet

# Adjective senses that describe a normal, defect-free object (WordNet 3.0 names).
STATUS_SEEDS: tuple[str, ...] = (
    "perfect.a.01",  # complete of its kind and without defect or blemish
    "flawless.s.01",  # without a flaw
    "intact.s.04",  # undamaged in any way
    "undamaged.a.01",  # not harmed or spoiled; sound
    "unbroken.a.05",  # whole and intact; in one piece
    "unblemished.a.01",  # free from physical spots or stains
    "clean.a.01",  # free from dirt or impurities
    "smooth.a.01",  # surface free from roughness, bumps, ridges
    "new.a.06",  # unaffected by use or exposure
    "whole.a.01",  # including all components
    "sound.a.03",  # in good condition; free from defect, damage or decay
    "normal.a.01",  # conforming with a norm or standard
    "even.a.03",  # level, regular, without variation
    "uniform.a.01",  # the same in all occurrences
)
# Lemmas reached from the seeds through senses that are not about an object's condition
# ("knew it cold", "down pat", "a pluperfect verb", "the livelong day", "a modal value", ...).
STATUS_BLOCKLIST: frozenset[str] = frozenset(
    {
        "cold",
        "down",
        "mastered",
        "pluperfect",
        "utopian",
        "idyllic",
        "perfectible",
        "fast",
        "livelong",
        "full-page",
        "full-length",
        "median",
        "modal",
        "mean",
        "average",
        "sane",
        "justified",
        "lap-jointed",
        "flatbottom",
        "flatbottomed",
        "spic",
        "spick",
        "single",
        "cleanable",
        "down pat",
    }
)
MAX_WORDS_PER_LEMMA = 2


def _clean(lemma: str) -> str | None:
    """``spick-and-span`` stays; ``Allen_screw``, ``3-D``, ``moving_picture_show`` are dropped."""
    if any(ch.isupper() or ch.isdigit() for ch in lemma):
        return None
    words = lemma.replace("_", " ").split()
    if not words or len(words) > MAX_WORDS_PER_LEMMA:
        return None
    return " ".join(words)


def _lemmas(synsets: Iterable) -> list[str]:
    return [lemma for s in synsets for lemma in s.lemma_names()]


def object_words(synset_name: str) -> list[str]:
    """Raw lemma names of the synset, then its direct hypernyms, then its direct hyponyms."""
    synset = wordnet().synset(synset_name)
    hypernyms = sorted(synset.hypernyms() + synset.instance_hypernyms(), key=lambda s: s.name())
    hyponyms = sorted(synset.hyponyms() + synset.instance_hyponyms(), key=lambda s: s.name())
    return _lemmas([synset]) + _lemmas(hypernyms) + _lemmas(hyponyms)


def status_adjectives(seeds: Sequence[str] = STATUS_SEEDS) -> list[str]:
    """Raw lemma names of all seed senses, then of each seed's similar-to / also-see / attribute neighbours.

    Seeds first, so that a small T keeps the plainest words (perfect, flawless, intact, ...).
    """
    wn = wordnet()
    seed_synsets = [wn.synset(name) for name in seeds]
    out = _lemmas(seed_synsets)
    for seed in seed_synsets:
        neighbours = {s.name(): s for s in seed.similar_tos() + seed.also_sees() + seed.attributes()}
        out += [
            w
            for w in _lemmas(neighbours[k] for k in sorted(neighbours))
            if w.replace("_", " ") not in STATUS_BLOCKLIST
        ]
    return out


def _dedupe(words: Iterable[str], drop: set[str]) -> list[str]:
    seen = set(drop)
    out = []
    for raw in words:
        word = _clean(raw)
        if word is not None and word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out


def word_pools(
    synset_name: str, object_name: str | None = None, seeds: Sequence[str] = STATUS_SEEDS
) -> tuple[list[str], list[str]]:
    """The cleaned, distinct object words and status words of a synset, before interleaving and truncation."""
    synset = wordnet().synset(synset_name)
    name = object_name or synset.lemma_names()[0].replace("_", " ")
    drop = {name.lower(), name.lower().replace(" ", "")}
    objects = _dedupe(object_words(synset_name), drop)
    status = _dedupe(status_adjectives(seeds), drop | {w.lower() for w in objects})
    return objects, status


def status_words(
    synset_name: str, T: int = 64, object_name: str | None = None, seeds: Sequence[str] = STATUS_SEEDS
) -> list[str]:
    """Up to ``T`` distinct words for prompts about ``synset_name`` (object words and status words interleaved).

    Args:
        synset_name: a WordNet noun synset, e.g. ``"screw.n.04"``.
        T: how many words to keep (the paper's T).
        object_name: the object word used in prompts; dropped from the list (default: the synset's first lemma).
    """
    if T < 1:
        raise ValueError(f"num_words (T) must be >= 1, got {T}")
    objects, status = word_pools(synset_name, object_name, seeds)
    interleaved = [w for pair in zip_longest(objects, status) for w in pair if w is not None]
    return interleaved[:T]
