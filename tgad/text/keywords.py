"""Dataset category -> object name -> WordNet noun synset, from a table kept as data (``class_synsets.json``).

Why an explicit sense per class: WordNet's first sense is often the wrong object (``screw.n.01`` is a prison
guard, ``nut.n.01`` a seed, ``carpet`` is listed under ``rug.n.01``). Choices worth knowing:

- ``grid`` -> ``net.n.06`` (an open fabric of wire): MVTec's grid is a metal mesh, not a drawn pattern.
- ``metal_nut`` -> ``nut.n.03`` (the threaded block), object name "metal nut" as in the paper's figure.
- LOCO classes use their container or part: ``breakfast_box`` -> ``box.n.01``, ``screw_bag`` -> ``bag.n.01``,
  ``splicing_connectors`` -> ``connection.n.03`` (whose lemmas include "connector").
- BTAD names its three products only by number (01, 02, 03) and does not say what they are, so tgad maps
  them to neutral industrial-artifact senses: 01 -> ``component.n.03``, 02 -> ``surface.n.01``,
  03 -> ``plate.n.02``. These are placeholders; pass ``keyword=`` when the product is known.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from importlib import resources
from typing import Literal, NamedTuple

from tgad.assets.wordnet import ensure_wordnet

log = logging.getLogger(__name__)
_SYNSET_NAME = re.compile(r"^[\w.'-]+\.n\.\d{2}$")
_SIZE_SUFFIX = re.compile(r"_\d+$")


class KeywordError(ValueError):
    """A class name or keyword that maps to no WordNet noun sense; the message says what to pass instead."""


class KeywordSense(NamedTuple):
    """The object word used in prompts and the WordNet noun synset its status words come from."""

    object_name: str
    synset: str
    category: str | None
    source: Literal["table", "keyword", "category"]


@functools.cache
def class_table() -> dict[str, dict[str, dict[str, str]]]:
    """``{dataset: {category: {"object": ..., "synset": ...}}}`` as shipped in ``class_synsets.json``."""
    text = resources.files("tgad.text").joinpath("class_synsets.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def known_categories(dataset: str | None = None) -> list[str]:
    """Every category of the table (of one dataset when given), in table order."""
    table = class_table()
    datasets = [dataset] if dataset else list(table)
    return [cat for ds in datasets for cat in table[ds]]


def normalise_category(category: str) -> str:
    """``Hazelnut_256`` -> ``hazelnut``: lower case, a trailing ``_<digits>`` size suffix stripped."""
    return _SIZE_SUFFIX.sub("", category.strip().lower())


@functools.cache
def wordnet():
    """nltk's WordNet reader, made available offline by :func:`tgad.assets.wordnet.ensure_wordnet`."""
    ensure_wordnet()
    # lazy: nltk.corpus would add 1.5-2.4 s to every start-up, as tgad.text loads with the CLI (measured after
    # `import tgad.cli.main` with -X importtime and perf_counter on the shared 2-core machine)
    from nltk.corpus import wordnet as wn

    wn.ensure_loaded()
    return wn


def _table_entry(name: str) -> tuple[str, dict[str, str]] | None:
    """Find ``name`` as a category or object name anywhere in the table."""
    key = name.strip().lower().replace(" ", "_")
    for entries in class_table().values():
        for category, entry in entries.items():
            if key in (category, entry["object"].replace(" ", "_")):
                return category, entry
    return None


def _check_synset(name: str, where: str) -> str:
    from nltk.corpus.reader.wordnet import WordNetError  # lazy, as in wordnet()

    try:
        synset = wordnet().synset(name)
    except (WordNetError, ValueError) as err:
        raise KeywordError(f"{where}: {name!r} is not a WordNet 3.0 synset ({err})") from None
    if synset.pos() != "n":
        raise KeywordError(f"{where}: {name!r} is not a noun synset; use a name like 'nut.n.03'")
    return synset.name()


def resolve_keyword(category: str | None = None, keyword: str | None = None) -> KeywordSense:
    """The object name and noun synset for a category, or for a user keyword (which wins when given).

    A keyword may be a word ("metal nut"; a word in the table gets the table's sense), or a synset name
    ("nut.n.03"). Other words get WordNet's most frequent noun sense. A category the table lacks is its own
    keyword when WordNet knows its name as a noun (``source="category"``, logged as a warning: the first sense
    may be the wrong object, so pass ``keyword`` when it is).

    Raises:
        ValueError: unknown category without keyword, or a keyword with no WordNet noun sense.
    """
    cat = normalise_category(category) if category else None
    if keyword:
        keyword = keyword.strip()
        if _SYNSET_NAME.match(keyword):
            synset = _check_synset(keyword, "keyword")
            entry = _table_entry(cat) if cat else None
            obj = entry[1]["object"] if entry else wordnet().synset(synset).lemma_names()[0].replace("_", " ")
            return KeywordSense(obj, synset, cat, "keyword")
        if found := _table_entry(keyword):
            return KeywordSense(keyword.replace("_", " "), found[1]["synset"], cat, "keyword")
        senses = wordnet().synsets(keyword.lower().replace(" ", "_").replace("-", "_"), pos="n")
        if not senses:
            raise KeywordError(
                f"keyword {keyword!r} has no WordNet noun sense; pass another noun or a synset name like 'nut.n.03'"
            )
        return KeywordSense(keyword.replace("_", " "), senses[0].name(), cat, "keyword")
    if cat is None:
        raise KeywordError("PromptSelector needs a category or a keyword; set `category:` or `keyword:`")
    for entries in class_table().values():
        if cat in entries:
            entry = entries[cat]
            return KeywordSense(
                entry["object"], _check_synset(entry["synset"], "class_synsets.json"), cat, "table"
            )
    word = cat.replace("-", "_")
    senses = wordnet().synsets(word, pos="n")
    if not senses:
        raise KeywordError(
            f"category {category!r} is neither in tgad/text/class_synsets.json nor a WordNet noun; set "
            f"`keyword:` / --keywords {category}=WORD (e.g. metal nut)"
        )
    sense = KeywordSense(word.replace("_", " "), senses[0].name(), cat, "category")
    log.warning(
        "category %r is not in tgad's class table: using its name as the object word, WordNet sense %s (%s); "
        "pass a keyword if that is the wrong object",
        category,
        sense.synset,
        senses[0].definition(),
    )
    return sense
